import RelayCore
import RelaySystem

/// A record that knows the handle it was filed under (`PeerTable` checks it on every lookup).
package protocol HandleOwner: AnyObject {
    var handle: ConnHandle { get }
}

/// The service's records by handle, as a slab: a handle's index (`ConnHandle.index`) names an
/// array slot, reused once its record goes, and its sequence number above the index is never
/// given twice (the registry keeps a binary's handle through its grace window). So the live
/// records' indices are dense and distinct, as the registry's `HandleSlots` need. A record costs
/// one 8-byte slot, where a hash table cost about 32 bytes (docs/benchmarks.md, M1), and a lookup
/// is an index and a compare.
package struct PeerTable<Record: HandleOwner> {
    /// Slots in use and free; `free` lists the free ones.
    private var slots: [Record?] = []
    private var free: [UInt32] = []
    private var issued: UInt64 = 0
    package private(set) var count = 0

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
            slots.appendGrowingGently(nil)
        }
        issued += 1
        let record = make(ConnHandle(index: index, sequence: issued))
        slots[index] = record
        count += 1
        return record
    }

    /// The record filed under `handle`; nil once it is removed (its slot may hold another now).
    package subscript(handle: ConnHandle) -> Record? {
        @inline(__always) get {
            let index = handle.index
            guard index < slots.count, let record = slots[index], record.handle == handle else { return nil }
            return record
        }
    }

    package mutating func remove(_ handle: ConnHandle) {
        guard self[handle] != nil else { return }
        slots[handle.index] = nil
        free.append(UInt32(handle.index))
        count -= 1
    }
}
