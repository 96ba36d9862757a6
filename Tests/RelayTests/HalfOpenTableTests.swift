import Testing
@testable import RelayCore

/// The half-open caps' eviction order (docs/operations.md, "Admission limits"), on plain objects.
@Suite struct HalfOpenTableTests {
    final class Conn: CustomStringConvertible {
        let name: String
        init(_ name: String) { self.name = name }
        var description: String { name }
    }

    let a = ClientKey(ip: "192.0.2.1")!, b = ClientKey(ip: "192.0.2.2")!, c = ClientKey(ip: "192.0.2.3")!

    /// Inserts after making room, as RelayService.accept does; returns the evicted names.
    @discardableResult
    func admit(_ t: inout HalfOpenTable<Conn>, _ name: String, _ key: ClientKey) -> (Conn, [String]) {
        let evicted = t.makeRoom(for: key).map(\.name)
        let conn = Conn(name)
        t.insert(conn, key: key)
        return (conn, evicted)
    }

    @Test func perClientCapEvictsThatClientsOldest() {
        var t = HalfOpenTable<Conn>(limit: 100, perKeyLimit: 2)
        admit(&t, "a1", a)
        admit(&t, "b1", b)
        admit(&t, "a2", a)
        #expect(admit(&t, "a3", a).1 == ["a1"])
        #expect(admit(&t, "a4", a).1 == ["a2"])
        #expect(t.count(of: a) == 2 && t.count(of: b) == 1 && t.count == 3)
    }

    @Test func globalCapEvictsFromTheLargestHolder() {
        var t = HalfOpenTable<Conn>(limit: 4, perKeyLimit: 10)
        admit(&t, "b1", b)          // the oldest of all, but b holds only one
        admit(&t, "a1", a)
        admit(&t, "a2", a)
        admit(&t, "a3", a)
        #expect(admit(&t, "c1", c).1 == ["a1"])
        #expect(admit(&t, "c2", c).1 == ["a2"])
        // Now a, b and c hold 1, 1, 2: c is the largest.
        #expect(admit(&t, "b2", b).1 == ["c1"])
        #expect(t.count == 4)
    }

    @Test func amongEqualHoldersTheOldestGoesFirst() {
        var t = HalfOpenTable<Conn>(limit: 3, perKeyLimit: 10)
        admit(&t, "a1", a)
        admit(&t, "b1", b)
        admit(&t, "c1", c)
        #expect(admit(&t, "d1", ClientKey(ip: "192.0.2.4")!).1 == ["a1"])
        #expect(admit(&t, "e1", ClientKey(ip: "192.0.2.5")!).1 == ["b1"])
    }

    @Test func removedConnectionsAreNeitherCountedNorEvicted() {
        var t = HalfOpenTable<Conn>(limit: 3, perKeyLimit: 10)
        let (a1, _) = admit(&t, "a1", a)
        admit(&t, "a2", a)
        admit(&t, "b1", b)
        t.remove(a1)                 // upgraded
        #expect(!t.contains(a1) && t.count(of: a) == 1)
        #expect(admit(&t, "c1", c).1 == [])
        #expect(admit(&t, "c2", c).1 == ["a2"])   // all hold one; a2 is the oldest live
    }

    @Test func unattributedHasNoPerClientCapAndRekeyMovesToTheClient() {
        var t = HalfOpenTable<Conn>(limit: 100, perKeyLimit: 2)
        let pending = (0..<5).map { admit(&t, "p\($0)", .unattributed).0 }
        #expect(t.count(of: .unattributed) == 5)
        let first = t.rekey(pending[0], to: a).map(\.name), second = t.rekey(pending[1], to: a).map(\.name)
        #expect(first == [] && second == [])
        // The third for `a` evicts a's oldest, which is p0.
        let third = t.rekey(pending[2], to: a).map(\.name)
        #expect(third == ["p0"])
        #expect(t.count(of: a) == 2 && t.count(of: .unattributed) == 2 && t.count == 4)
    }

    @Test func capOfOneReplacesTheClientsOnlyConnection() {
        var t = HalfOpenTable<Conn>(limit: 10, perKeyLimit: 1)
        admit(&t, "a1", a)
        #expect(admit(&t, "a2", a).1 == ["a1"])
        let (p, _) = admit(&t, "p", .unattributed)
        let evicted = t.rekey(p, to: a).map(\.name)
        #expect(evicted == ["a2"])
        #expect(t.count(of: a) == 1 && t.contains(p))
        #expect(admit(&t, "a3", a).1 == ["p"])
        t.remove(t.elements[0])
        #expect(t.count == 0 && t.count(of: a) == 0 && t.storedRefs <= 4)
    }

    @Test func rekeyedConnectionKeepsItsPlaceInTheGlobalOrder() {
        var t = HalfOpenTable<Conn>(limit: 3, perKeyLimit: 10)
        let (p, _) = admit(&t, "p", .unattributed)
        admit(&t, "b1", b)
        admit(&t, "c1", c)
        _ = t.rekey(p, to: a)
        #expect(admit(&t, "d1", ClientKey(ip: "192.0.2.4")!).1 == ["p"])
    }

    /// One client flooding far past both caps: the table never exceeds its limit, the others
    /// stay, and the queues' dead slots stay bounded (no growth with the flood's length).
    @Test func floodFromOneClientEvictsOnlyItsOwn() {
        var t = HalfOpenTable<Conn>(limit: 64, perKeyLimit: 8)
        let others = (1...40).map { admit(&t, "phone\($0)", ClientKey(ip: "198.51.100.\($0)")!).0 }
        for i in 0..<100_000 {
            let flooder = ClientKey(ip: "203.0.113.\(i % 16)")!
            let evicted = admit(&t, "f\(i)", flooder).1
            #expect(evicted.allSatisfy { $0.hasPrefix("f") }, "flood evicted \(evicted)")
            if i % 1000 == 0 { #expect(t.storedRefs <= 4 * t.count + 64 + 16 * 17) }
        }
        #expect(others.allSatisfy { t.contains($0) })
        #expect(t.count == 64)
    }

    /// Connections that upgrade leave by `remove` alone, never followed by an insert: once the
    /// last one goes, no entry is kept for them (an idle relay held the storm's dead entries).
    @Test func removingEveryConnectionKeepsNoDeadEntries() {
        var t = HalfOpenTable<Conn>(limit: 1_000, perKeyLimit: 1_000)
        let conns = (0..<300).map { admit(&t, "c\($0)", ClientKey(ip: "198.51.100.\($0 % 7)")!).0 }
        for conn in conns { t.remove(conn) }
        #expect(t.count == 0 && t.storedRefs == 0)
    }
}
