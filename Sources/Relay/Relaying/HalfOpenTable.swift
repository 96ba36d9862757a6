/// Connections accepted but not yet upgraded, under two caps (docs/operations.md, "Admission limits"):
/// `limit` in all (`--max-half-open`) and `perKeyLimit` per client (`--max-half-open-per-ip`).
/// Room for a newcomer is made by evicting, over the per-client cap, that client's oldest; over
/// the global cap, the oldest connection of the client holding the most — the globally oldest
/// when its client is among those holding the most. So one address (or one IPv6 /64) that floods
/// idle connections evicts its own, never a phone that is slow to send its request; among equal
/// holders (every client holds one) the order is first in, first out.
///
/// Every operation is O(1) amortized, never a scan of the table: first-in-first-out queues with
/// lazy deletion (an entry is live while its serial matches), compacted once dead entries
/// outnumber live ones; and clients bucketed by how many connections they hold — counts move by
/// one, so the largest bucket is found by stepping at most once.
struct HalfOpenTable<Element: AnyObject> {
    private struct Entry {
        let element: Element
        var key: ClientKey
        let serial: UInt64
    }
    private struct Ref {
        let id: ObjectIdentifier
        let serial: UInt64
    }
    private struct Group {
        var queue: [Ref] = []
        var head = 0
        var count = 0
        var slot = 0      // index in buckets[count]
    }

    let limit: Int
    let perKeyLimit: Int
    private var entries: [ObjectIdentifier: Entry] = [:]
    private var order: [Ref] = []
    private var orderHead = 0
    private var groups: [ClientKey: Group] = [:]
    /// buckets[n]: the clients holding n connections (index 0 unused).
    private var buckets: [[ClientKey]] = [[]]
    private var largest = 0
    private var nextSerial: UInt64 = 0

    init(limit: Int, perKeyLimit: Int) {
        self.limit = limit
        self.perKeyLimit = perKeyLimit
    }

    var count: Int { entries.count }
    var elements: [Element] { entries.values.map(\.element) }
    func contains(_ e: Element) -> Bool { entries[ObjectIdentifier(e)] != nil }
    func count(of key: ClientKey) -> Int { groups[key]?.count ?? 0 }
    /// Queue slots held, live or not: bounded by a small multiple of `count` (tests).
    var storedRefs: Int { order.count - orderHead + groups.values.reduce(0) { $0 + $1.queue.count - $1.head } }

    /// Evicts what must go before one more connection of `key` is inserted, and returns it
    /// (already removed) for the caller to close. `.unattributed` has no per-client cap.
    mutating func makeRoom(for key: ClientKey) -> [Element] {
        var evicted: [Element] = []
        if key != .unattributed {
            while count(of: key) >= perKeyLimit, let e = popOldest(of: key) { evicted.append(e) }
        }
        while entries.count >= limit, let e = popVictim() { evicted.append(e) }
        return evicted
    }

    mutating func insert(_ e: Element, key: ClientKey) {
        let id = ObjectIdentifier(e)
        precondition(entries[id] == nil, "half-open connection inserted twice")
        nextSerial += 1
        entries[id] = Entry(element: e, key: key, serial: nextSerial)
        order.append(Ref(id: id, serial: nextSerial))
        join(key, Ref(id: id, serial: nextSerial))
        if order.count - orderHead > 2 * entries.count + 64 { compactOrder() }
    }

    /// The connection's client became known (the PROXY v2 source): it counts there from now on,
    /// evicting that client's oldest when it is at its cap. Its place in the global order stays.
    mutating func rekey(_ e: Element, to key: ClientKey) -> [Element] {
        let id = ObjectIdentifier(e)
        guard let entry = entries[id], entry.key != key else { return [] }
        leave(entry.key)
        entries[id]!.key = key
        var evicted: [Element] = []
        if key != .unattributed {
            while count(of: key) >= perKeyLimit, let x = popOldest(of: key) { evicted.append(x) }
        }
        join(key, Ref(id: id, serial: entry.serial))
        return evicted
    }

    mutating func remove(_ e: Element) {
        guard let entry = entries.removeValue(forKey: ObjectIdentifier(e)) else { return }
        leave(entry.key)
    }

    // MARK: victims

    /// Over the global cap: the globally oldest if its client holds as many as anyone, else
    /// the oldest of a client holding the most.
    private mutating func popVictim() -> Element? {
        while orderHead < order.count {
            let ref = order[orderHead]
            guard let entry = entries[ref.id], entry.serial == ref.serial else {
                orderHead += 1
                continue
            }
            if count(of: entry.key) == largest {
                orderHead += 1
                remove(entry.element)
                return entry.element
            }
            return popOldest(of: buckets[largest].last!)
        }
        return nil
    }

    private mutating func popOldest(of key: ClientKey) -> Element? {
        guard var g = groups[key] else { return nil }
        while g.head < g.queue.count {
            let ref = g.queue[g.head]
            g.head += 1
            if let entry = entries[ref.id], entry.serial == ref.serial, entry.key == key {
                groups[key]!.head = g.head
                remove(entry.element)
                return entry.element
            }
        }
        groups[key]!.head = g.head
        return nil
    }

    // MARK: groups and buckets

    private mutating func join(_ key: ClientKey, _ ref: Ref) {
        var g = groups.removeValue(forKey: key) ?? Group()
        if g.count > 0 { unbucket(key, count: g.count, slot: g.slot) }
        g.count += 1
        g.queue.append(ref)
        if g.queue.count - g.head > 2 * g.count + 16 { compact(&g, key) }
        g.slot = bucket(key, count: g.count)
        groups[key] = g
        largest = max(largest, g.count)
    }

    private mutating func leave(_ key: ClientKey) {
        guard var g = groups.removeValue(forKey: key) else { return }
        unbucket(key, count: g.count, slot: g.slot)
        g.count -= 1
        if g.count > 0 {
            g.slot = bucket(key, count: g.count)
            groups[key] = g
        }
        while largest > 0 && buckets[largest].isEmpty { largest -= 1 }
    }

    private mutating func bucket(_ key: ClientKey, count: Int) -> Int {
        while buckets.count <= count { buckets.append([]) }
        buckets[count].append(key)
        return buckets[count].count - 1
    }

    /// Swap-remove; the client moved into the hole gets its new slot. The caller has taken
    /// `key`'s own group out of `groups`, so the moved one is always another client's.
    private mutating func unbucket(_ key: ClientKey, count: Int, slot: Int) {
        let last = buckets[count].removeLast()
        if last != key {
            buckets[count][slot] = last
            groups[last]!.slot = slot
        }
    }

    private func compact(_ g: inout Group, _ key: ClientKey) {
        g.queue = g.queue[g.head...].filter { entries[$0.id]?.serial == $0.serial && entries[$0.id]?.key == key }
        g.head = 0
    }

    private mutating func compactOrder() {
        order = order[orderHead...].filter { entries[$0.id]?.serial == $0.serial }
        orderHead = 0
    }
}
