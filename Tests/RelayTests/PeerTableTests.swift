import Testing
@testable import RelayCore
@testable import Relaying

/// The service's slab of records: handles are never given twice, a removed record's handle
/// finds nothing even after its slot is reused, and slots are reused.
@Suite struct PeerTableTests {
    final class Record: HandleOwner {
        let handle: ConnHandle
        init(_ handle: ConnHandle) { self.handle = handle }
    }

    @Test func handlesAreUniqueAndStaleOnesFindNothing() {
        var table = PeerTable<Record>()
        let a = table.insert(Record.init), b = table.insert(Record.init)
        #expect(a.handle != b.handle)
        #expect(table[a.handle] === a && table[b.handle] === b && table.count == 2)
        table.remove(a.handle)
        #expect(table[a.handle] == nil && table.count == 1)
        let c = table.insert(Record.init)  // takes a's slot
        #expect(c.handle != a.handle && c.handle != b.handle)
        #expect(table[a.handle] == nil && table[c.handle] === c)
        table.remove(a.handle)  // a stale handle removes nothing
        #expect(table[c.handle] === c && table.count == 2)
        #expect(table[ConnHandle(0)] == nil && table[ConnHandle(.max)] == nil)
    }

    @Test func slotsAreReusedAndEveryHandleStaysUnique() {
        var table = PeerTable<Record>()
        var seen = Set<UInt64>()
        var live: [Record] = []
        for round in 0..<50 {
            for _ in 0..<20 {
                let r = table.insert(Record.init)
                #expect(seen.insert(r.handle.raw).inserted)
                live.append(r)
            }
            for r in live where r.handle.raw % 3 != UInt64(round % 3) { table.remove(r.handle) }
            live.removeAll { table[$0.handle] == nil }
            #expect(table.count == live.count && Set(table.values.map(\.handle.raw)) == Set(live.map(\.handle.raw)))
        }
        for r in live { table.remove(r.handle) }
        #expect(table.isEmpty && table.values.isEmpty)
        // Records that come and go one at a time share one slot: the index part repeats, the
        // handle never does.
        var indices = Set<UInt64>()
        for _ in 0..<100 {
            let r = table.insert(Record.init)
            #expect(seen.insert(r.handle.raw).inserted)
            indices.insert(r.handle.raw & 0xFF_FFFF)
            table.remove(r.handle)
        }
        #expect(indices.count == 1)
    }
}
