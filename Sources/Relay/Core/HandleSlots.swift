import RelaySystem

/// Per-connection values by the index part of their handle (`ConnHandle.index`): an array with
/// one optional value per index, where a hash table took twice the room for its load factor
/// and a copy of every key (docs/benchmarks.md, M1). The caller's contract (`ConnHandle`): no
/// two live connections share an index, and a connection's value is removed when it goes, so a
/// value found at an index is that connection's. Grows to the highest index used; lookups and
/// updates are O(1) and allocate nothing once grown.
package struct HandleSlots<Value> {
    private var values: [Value?] = []
    package private(set) var count = 0

    package init() {}

    package subscript(handle: ConnHandle) -> Value? {
        @inline(__always) get {
            let i = handle.index
            return i < values.count ? values[i] : nil
        }
        set {
            let i = handle.index
            if i >= values.count {
                guard newValue != nil else { return }
                while values.count <= i { values.appendGrowingGently(nil) }
            }
            count += (newValue == nil ? 0 : 1) - (values[i] == nil ? 0 : 1)
            values[i] = newValue
        }
    }

    @discardableResult
    package mutating func removeValue(forKey handle: ConnHandle) -> Value? {
        let old = self[handle]
        if old != nil { self[handle] = nil }
        return old
    }
}
