import Testing
@testable import RelayCore

/// The registry's per-connection arrays: a dictionary's answers by handle index, growing only
/// for a value, counting what is held.
@Suite struct HandleSlotsTests {
    @Test func answersAsADictionaryByIndex() {
        var t = HandleSlots<String>()
        let a = ConnHandle(index: 0, sequence: 1), b = ConnHandle(index: 5, sequence: 2)
        #expect(t[a] == nil && t[b] == nil && t.count == 0)
        t[b] = "b"
        #expect(t[b] == "b" && t[a] == nil && t.count == 1)
        t[a] = "a"
        t[a] = "a2"  // replaced, still two
        #expect(t[a] == "a2" && t.count == 2)
        #expect(t.removeValue(forKey: b) == "b" && t[b] == nil && t.count == 1)
        #expect(t.removeValue(forKey: b) == nil && t.count == 1)
        t[ConnHandle(index: 1_000, sequence: 3)] = nil  // clearing past the end neither grows nor counts
        #expect(t[ConnHandle(index: 1_000, sequence: 3)] == nil && t.count == 1)
    }

    @Test func handlesPackIndexAndSequence() {
        let h = ConnHandle(index: 0xAB_CDEF, sequence: 7)
        #expect(h.index == 0xAB_CDEF && h.raw == 7 << 24 | 0xAB_CDEF)
        #expect(ConnHandle(index: 3, sequence: 1) != ConnHandle(index: 3, sequence: 2))
        #expect(ConnHandle(3).index == 3)
    }
}
