/// A server-id's phones by the 32-bit suffix of their conn id (docs/protocol.md §7.2). Most
/// server-ids have one phone: it is kept inline, where a hash table for one entry costs about
/// 100 bytes per idle server-id (docs/benchmarks.md, M1); more phones go to a dictionary.
package struct SlotPhones {
    private enum Storage {
        case none
        case one(key: UInt32, phone: ConnHandle)
        case many([UInt32: ConnHandle])
    }

    private var storage = Storage.none

    package var count: Int {
        switch storage {
        case .none: 0
        case .one: 1
        case .many(let d): d.count
        }
    }

    package var isEmpty: Bool { count == 0 }

    /// Every phone, in no particular order.
    package var handles: [ConnHandle] {
        switch storage {
        case .none: []
        case .one(_, let phone): [phone]
        case .many(let d): Array(d.values)
        }
    }

    package subscript(key: UInt32) -> ConnHandle? {
        @inline(__always) get {
            switch storage {
            case .none: return nil
            case .one(let k, let phone): return k == key ? phone : nil
            case .many(let d): return d[key]
            }
        }
        set {
            switch storage {
            case .none:
                if let newValue { storage = .one(key: key, phone: newValue) }
            case .one(let k, let phone):
                if k == key {
                    storage = newValue.map { .one(key: key, phone: $0) } ?? .none
                } else if let newValue {
                    storage = .many([k: phone, key: newValue])
                }
            case .many(var d):
                storage = .none  // `d` is now the table's only reference: updated in place
                d[key] = newValue
                storage = d.isEmpty ? .none : .many(d)
            }
        }
    }

    /// The key `phone` is listed under: a compare for the one phone most server-ids have, a walk
    /// over the id's phones otherwise (at most `--phones-per-server`, 16 by default) — asked when
    /// a phone leaves, not per message, so the registry keeps no copy of the key per phone.
    package func key(of phone: ConnHandle) -> UInt32? {
        switch storage {
        case .none: nil
        case .one(let k, let p): p == phone ? k : nil
        case .many(let d): d.first { $0.value == phone }?.key
        }
    }

    package mutating func removeAll() { storage = .none }
}
