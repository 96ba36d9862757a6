import Testing
@testable import RelayCore
@testable import Relaying

/// A server-id's phone table: one phone inline, more in a dictionary, the same answers either way.
@Suite struct SlotPhonesTests {
    @Test func behavesAsADictionaryThroughOneAndManyPhones() {
        var t = SlotPhones()
        #expect(t.isEmpty && t[1] == nil && t.handles.isEmpty)
        t[1] = ConnHandle(10)
        #expect(t.count == 1 && t[1] == ConnHandle(10) && t[2] == nil)
        t[1] = ConnHandle(11)  // same key: replaced, still one
        #expect(t.count == 1 && t[1] == ConnHandle(11))
        t[2] = ConnHandle(20)
        t[3] = ConnHandle(30)
        #expect(t.count == 3 && t[1] == ConnHandle(11) && t[2] == ConnHandle(20) && t[3] == ConnHandle(30))
        #expect(Set(t.handles) == [ConnHandle(11), ConnHandle(20), ConnHandle(30)])
        t[2] = nil
        t[9] = nil  // absent: nothing happens
        #expect(t.count == 2 && t[2] == nil)
        t[1] = nil
        t[3] = nil
        #expect(t.isEmpty && t[3] == nil)
        t[4] = ConnHandle(40)
        t[4] = nil
        #expect(t.isEmpty)
        t[5] = ConnHandle(50)
        t[6] = ConnHandle(60)
        t.removeAll()
        #expect(t.isEmpty && t[5] == nil)
    }
}
