import RelayCodecs

/// Single-pass decoder of a binary's envelope (docs/protocol.md §7.2) with the semantics of Go's
/// `json.Unmarshal` into `struct{ConnID string; Frame, PushWake json.RawMessage; CloseCode uint16}`,
/// which is what real binaries have been talking to:
///
/// - The whole input must be one valid JSON value (Go validates before decoding); anything but
///   an object is invalid (`null` decodes to an empty struct in Go, which then fails the
///   conn_id rule — same outcome).
/// - Member names match case-insensitively, as `encoding/json` does when no exact match exists
///   (Unicode simple folding: `CONN_ID`, `Frame`, and even `cloſe_code` with U+017F or
///   `push_wa\u212Ae` with the Kelvin sign match). Names may be written with escapes.
/// - Duplicate members: the last one wins, except that `null` leaves a string or integer field
///   unchanged (Go's `null` is a no-op for non-pointer fields) while it resets a raw field
///   (`frame`, `push_wake`) to "absent".
/// - Wrong types make the whole envelope invalid (Go returns an `UnmarshalTypeError`):
///   `conn_id` must be a string (or null); `close_code` a plain unsigned integer literal
///   0...65535 (or null) — `-1`, `1.5`, `1e3`, `65536` and `"1000"` all fail `ParseUint`/range.
/// - Unknown members are skipped but must be valid JSON.
package enum EnvelopeParser {
    private enum Field { case connID, frame, closeCode, pushWake, unknown }

    package static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) -> BinaryEnvelope? {
        var s = JSONScanner(bytes)
        s.skipWhitespace()
        guard s.peek == UInt8(ascii: "{"), maxDepth >= 1 else { return nil }
        s.index += 1
        s.skipWhitespace()

        var connID: JSONStringToken? = nil
        var frame: Range<Int>? = nil
        var closeCode: UInt64 = 0
        var pushWake: Range<Int>? = nil

        if s.peek == UInt8(ascii: "}") {
            s.index += 1
        } else {
            while true {
                guard s.peek == UInt8(ascii: "\""), let name = s.scanString() else { return nil }
                let field = match(name, in: s)
                s.skipWhitespace()
                guard s.peek == UInt8(ascii: ":") else { return nil }
                s.index += 1
                s.skipWhitespace()

                switch field {
                case .connID:
                    switch s.peek {
                    case UInt8(ascii: "\""): guard let t = s.scanString() else { return nil }; connID = t
                    case UInt8(ascii: "n"): guard s.scanLiteral("null") else { return nil }
                    default: return nil  // type error
                    }
                case .closeCode:
                    switch s.peek {
                    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                        guard let n = s.scanNumber(), n.unsigned, n.value <= 65_535 else { return nil }
                        closeCode = n.value
                    case UInt8(ascii: "n"): guard s.scanLiteral("null") else { return nil }
                    default: return nil  // type error
                    }
                case .frame, .pushWake:
                    let start = s.index
                    let isNull = s.peek == UInt8(ascii: "n")
                    guard s.skipValue(maxDepth: maxDepth - 1) else { return nil }
                    let value: Range<Int>? = isNull ? nil : start..<s.index
                    if field == .frame { frame = value } else { pushWake = value }
                case .unknown:
                    guard s.skipValue(maxDepth: maxDepth - 1) else { return nil }
                }

                s.skipWhitespace()
                if s.peek == UInt8(ascii: ",") {
                    s.index += 1
                    s.skipWhitespace()
                    continue
                }
                guard s.peek == UInt8(ascii: "}") else { return nil }
                s.index += 1
                break
            }
        }
        s.skipWhitespace()
        guard s.atEnd else { return nil }

        let code: UInt16? = closeCode == 0 ? nil : UInt16(closeCode)
        // docs/protocol.md §7.2 validation, in Go's order: no conn_id → only a wake request is valid.
        guard let id = connID, !id.content.isEmpty else {
            guard pushWake != nil else { return nil }
            return BinaryEnvelope(connID: .none, frame: frame, closeCode: code, pushWake: pushWake)
        }
        // A frame is required unless this is a close directive.
        guard frame != nil || code != nil else { return nil }
        let ref: BinaryEnvelope.ConnID =
            id.hasEscapes ? .decoded(JSONString.unescaped(id.content, in: s)) : .raw(id.content)
        return BinaryEnvelope(connID: ref, frame: frame, closeCode: code, pushWake: pushWake)
    }

    // MARK: Member names

    /// The four names, lowercase ASCII; a decoded name matches one when every scalar folds
    /// to the same letter (see `fold`).
    private static let names: [(StaticString, Field)] = [
        ("conn_id", .connID), ("frame", .frame), ("close_code", .closeCode), ("push_wake", .pushWake),
    ]

    /// Go `encoding/json` folding restricted to what can equal one of our names: ASCII is
    /// case-folded; U+017F (ſ) folds to `s` and U+212A (Kelvin sign) to `k` (their simple
    /// case-folding orbits); any other non-ASCII scalar matches nothing.
    @inline(__always) private static func fold(_ scalar: UInt32) -> UInt8 {
        switch scalar {
        case 0x41...0x5A: return UInt8(scalar) | 0x20
        case 0..<0x80: return UInt8(scalar)
        case 0x017F: return UInt8(ascii: "s")
        case 0x212A: return UInt8(ascii: "k")
        default: return 0xFF
        }
    }

    private static func match(_ name: JSONStringToken, in s: JSONScanner) -> Field {
        // Fast path: the exact lowercase spelling, what every real binary sends.
        let n = name.content.count
        if !name.hasEscapes {
            for (candidate, field) in names where candidate.utf8CodeUnitCount == n {
                if memcmpEqual(s.base + name.content.lowerBound, candidate.utf8Start, n) { return field }
            }
        }
        // Slow path: decode scalars and compare folded.
        var alive: UInt8 = 0b1111
        var position = 0
        var decoder = JSONString.ScalarDecoder(range: name.content)
        while let scalar = decoder.next(in: s) {
            let f = fold(scalar)
            for k in 0..<names.count where alive & (1 << k) != 0 {
                let cand = names[k].0
                if position >= cand.utf8CodeUnitCount || cand.utf8Start[position] != f {
                    alive &= ~(1 << k)
                }
            }
            if alive == 0 { return .unknown }
            position += 1
        }
        for k in 0..<names.count where alive & (1 << k) != 0 && names[k].0.utf8CodeUnitCount == position {
            return names[k].1
        }
        return .unknown
    }

    @inline(__always) private static func memcmpEqual(
        _ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int
    ) -> Bool {
        for k in 0..<n where a[k] != b[k] { return false }
        return true
    }
}
