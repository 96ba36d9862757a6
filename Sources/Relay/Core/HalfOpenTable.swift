/// Connections accepted but not yet upgraded, under two caps (docs/operations.md, "Admission limits"):
/// `limit` in all (`--max-half-open`) and `perKeyLimit` per client (`--max-half-open-per-ip`).
/// Room for a newcomer is made by evicting, over the per-client cap, that client's oldest; over
/// the global cap, the oldest connection of the client holding the most — the globally oldest
/// when its client is among those holding the most. So one address (or one IPv6 /64) that floods
/// idle connections evicts its own, not a phone that is slow to send its request; among equal
/// holders (every client holds one) the order is first in, first out.
///
/// Every operation is O(1) amortized, never a scan of the table: first-in-first-out queues of
/// entry objects with lazy deletion (a removed entry stays queued, dead and holding no
/// connection, until it reaches the head or the queue is compacted once dead entries outnumber
/// live ones); and clients bucketed by how many connections they hold — counts move by one, so
/// the largest bucket is found by stepping at most once. An accept hashes its client key twice
/// and its connection once, plus one connection hash per eviction.
package struct HalfOpenTable<Element: AnyObject> {
    private final class Entry {
        /// nil once removed: the entry is dead wherever it is still queued.
        var element: Element?
        var group: Group
        init(_ element: Element, _ group: Group) {
            self.element = element
            self.group = group
        }
    }
    private final class Group {
        let key: ClientKey
        var queue: [Entry] = []
        var head = 0
        var count = 0
        var slot = 0      // index in buckets[count]
        init(_ key: ClientKey) { self.key = key }
        func holds(_ e: Entry) -> Bool { e.element != nil && e.group === self }
    }

    package let limit: Int
    package let perKeyLimit: Int
    private var entries: [ObjectIdentifier: Entry] = [:]
    private var order: [Entry] = []
    private var orderHead = 0
    private var groups: [ClientKey: Group] = [:]
    /// buckets[n]: the clients holding n connections (index 0 unused).
    private var buckets: [[Group]] = [[]]
    private var largest = 0

    package init(limit: Int, perKeyLimit: Int) {
        self.limit = limit
        self.perKeyLimit = perKeyLimit
    }

    package var count: Int { entries.count }
    package var elements: [Element] { entries.values.compactMap(\.element) }
    package func contains(_ e: Element) -> Bool { entries[ObjectIdentifier(e)] != nil }
    package func count(of key: ClientKey) -> Int { groups[key]?.count ?? 0 }
    /// Queue slots held, live or dead: bounded by a small multiple of `count` (tests).
    package var storedRefs: Int { order.count - orderHead + groups.values.reduce(0) { $0 + $1.queue.count - $1.head } }

    /// Evicts what must go before one more connection of `key` is inserted, and returns it
    /// (already removed) for the caller to close. `.unattributed` has no per-client cap.
    package mutating func makeRoom(for key: ClientKey) -> [Element] {
        makeRoomInClient(key) + makeRoomInAll()
    }

    /// `makeRoom`'s first step: `key`'s oldest, while it holds its cap.
    package mutating func makeRoomInClient(_ key: ClientKey) -> [Element] {
        var evicted: [Element] = []
        if key != .unattributed, let g = groups[key] {
            while g.count >= perKeyLimit, let e = popOldest(of: g) { evicted.append(e) }
        }
        return evicted
    }

    /// `makeRoom`'s second step: victims of the global cap (`popVictim`), while the table is full.
    package mutating func makeRoomInAll() -> [Element] {
        var evicted: [Element] = []
        while entries.count >= limit, let e = popVictim() { evicted.append(e) }
        return evicted
    }

    package mutating func insert(_ e: Element, key: ClientKey) {
        let entry = Entry(e, group(key))
        let previous = entries.updateValue(entry, forKey: ObjectIdentifier(e))
        precondition(previous == nil, "half-open connection inserted twice")
        order.append(entry)
        join(entry)
        if order.count - orderHead > 2 * entries.count + 64 { compactOrder() }
    }

    /// The connection's client became known (the PROXY v2 source): it counts there from now on,
    /// evicting that client's oldest when it is at its cap. Its place in the global order stays.
    package mutating func rekey(_ e: Element, to key: ClientKey) -> [Element] {
        guard let entry = entries[ObjectIdentifier(e)], entry.group.key != key else { return [] }
        leave(entry.group)
        var evicted: [Element] = []
        if key != .unattributed, let g = groups[key] {
            while g.count >= perKeyLimit, let x = popOldest(of: g) { evicted.append(x) }
        }
        entry.group = group(key)  // after the evictions, which may have emptied and dropped it
        join(entry)
        return evicted
    }

    package mutating func remove(_ e: Element) {
        guard let entry = entries.removeValue(forKey: ObjectIdentifier(e)) else { return }
        entry.element = nil
        leave(entry.group)
        // Upgrades remove entries without inserting: compact here too — down to nothing once
        // the table is empty — or the dead entries of a storm (and the groups they name) would
        // stay queued while the relay idles (docs/benchmarks.md, M1).
        if order.count - orderHead > (entries.isEmpty ? 0 : 2 * entries.count + 64) { compactOrder() }
    }

    // MARK: victims

    /// Over the global cap: the globally oldest if its client holds as many as anyone, else
    /// the oldest of a client holding the most.
    private mutating func popVictim() -> Element? {
        while orderHead < order.count {
            let entry = order[orderHead]
            guard let e = entry.element else {
                orderHead += 1
                continue
            }
            if entry.group.count == largest {
                orderHead += 1
                remove(e)
                return e
            }
            return popOldest(of: buckets[largest].last!)
        }
        return nil
    }

    private mutating func popOldest(of g: Group) -> Element? {
        while g.head < g.queue.count {
            let entry = g.queue[g.head]
            g.head += 1
            if g.holds(entry), let e = entry.element {
                remove(e)
                return e
            }
        }
        return nil
    }

    // MARK: groups and buckets

    private mutating func group(_ key: ClientKey) -> Group {
        if let g = groups[key] { return g }
        let g = Group(key)
        groups[key] = g
        return g
    }

    private mutating func join(_ entry: Entry) {
        let g = entry.group
        if g.count > 0 { unbucket(g) }
        g.count += 1
        g.queue.append(entry)
        if g.queue.count - g.head > 2 * g.count + 16 {
            g.queue = g.queue[g.head...].filter(g.holds)
            g.head = 0
        }
        bucket(g)
        largest = max(largest, g.count)
    }

    private mutating func leave(_ g: Group) {
        unbucket(g)
        g.count -= 1
        if g.count > 0 {
            bucket(g)
        } else {
            // Gone from the table: dead entries still queued elsewhere may point here, so drop
            // the queue (and its references to them) now.
            groups[g.key] = nil
            g.queue = []
            g.head = 0
        }
        while largest > 0 && buckets[largest].isEmpty { largest -= 1 }
    }

    private mutating func bucket(_ g: Group) {
        while buckets.count <= g.count { buckets.append([]) }
        g.slot = buckets[g.count].count
        buckets[g.count].append(g)
    }

    /// Swap-remove; the group moved into the hole gets its new slot.
    private mutating func unbucket(_ g: Group) {
        let last = buckets[g.count].removeLast()
        if last !== g {
            buckets[g.count][g.slot] = last
            last.slot = g.slot
        }
    }

    private mutating func compactOrder() {
        order = order[orderHead...].filter { $0.element != nil }
        orderHead = 0
    }
}
