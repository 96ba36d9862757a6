import RelayCore

/// A record that knows the handle it was filed under (`PeerTable` checks it on every lookup).
package protocol HandleOwner: AnyObject {
    var handle: ConnHandle { get }
}

/// The service's records by handle, as a slab: a handle's low 24 bits index an array slot,
/// reused once its record goes, and its high 40 bits are a sequence number, so no handle is ever
/// given twice (the registry keeps a binary's handle through its grace window). A record costs
/// one 8-byte slot, where a hash table cost about 32 bytes (docs/benchmarks.md, M1), and a lookup
/// is an index and a compare.
package struct PeerTable<Record: HandleOwner> {
    /// Slots in use and free; `free` lists the free ones.
    private var slots: [Record?] = []
    private var free: [UInt32] = []
    private var issued: UInt64 = 0
    package private(set) var count = 0

    private static var indexBits: UInt64 { 24 }

    package init() {}

    package var isEmpty: Bool { count == 0 }

    /// Every record, in no particular order.
    package var values: [Record] { slots.compactMap { $0 } }

    /// Files the record `make` builds with its new handle, and returns it.
    @discardableResult
    package mutating func insert(_ make: (ConnHandle) -> Record) -> Record {
        let index: Int
        if let i = free.popLast() {
            index = Int(i)
        } else {
            index = slots.count
            precondition(index < 1 << Self.indexBits, "more than 2^24 records")
            slots.append(nil)
        }
        issued += 1
        let record = make(ConnHandle(issued << Self.indexBits | UInt64(index)))
        slots[index] = record
        count += 1
        return record
    }

    /// The record filed under `handle`; nil once it is removed (its slot may hold another now).
    package subscript(handle: ConnHandle) -> Record? {
        @inline(__always) get {
            let index = Int(truncatingIfNeeded: handle.raw & (1 << Self.indexBits - 1))
            guard index < slots.count, let record = slots[index], record.handle == handle else { return nil }
            return record
        }
    }

    package mutating func remove(_ handle: ConnHandle) {
        guard self[handle] != nil else { return }
        let index = Int(truncatingIfNeeded: handle.raw & (1 << Self.indexBits - 1))
        slots[index] = nil
        free.append(UInt32(index))
        count -= 1
    }
}
