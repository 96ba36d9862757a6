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
enum EnvelopeParser {
    private enum Field { case connID, frame, closeCode, pushWake, unknown }

    static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) -> BinaryEnvelope? {
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
            id.hasEscapes ? .decoded(unescape(id.content, in: s)) : .raw(id.content)
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
        var decoder = ScalarDecoder(range: name.content)
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

    // MARK: Unescaping

    /// Decodes the scalars of already-validated string content, one at a time. Surrogate
    /// escapes: a high one followed by `\u` low one form a pair; any other surrogate becomes
    /// U+FFFD, as Go's `unquote` does.
    private struct ScalarDecoder {
        var index: Int
        let end: Int
        init(range: Range<Int>) { index = range.lowerBound; end = range.upperBound }

        mutating func next(in s: JSONScanner) -> UInt32? {
            guard index < end else { return nil }
            let p = s.base
            let b = p[index]
            if b == UInt8(ascii: "\\") {
                let e = p[index + 1]
                index += 2
                switch e {
                case UInt8(ascii: "b"): return 0x08
                case UInt8(ascii: "f"): return 0x0C
                case UInt8(ascii: "n"): return 0x0A
                case UInt8(ascii: "r"): return 0x0D
                case UInt8(ascii: "t"): return 0x09
                case UInt8(ascii: "u"):
                    let unit = hex4(p + index)
                    index += 4
                    if unit >= 0xD800 && unit < 0xDC00, end - index >= 6,
                        p[index] == UInt8(ascii: "\\"), p[index + 1] == UInt8(ascii: "u")
                    {
                        let low = hex4(p + index + 2)
                        if low >= 0xDC00 && low < 0xE000 {
                            index += 6
                            return 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        }
                    }
                    return (unit >= 0xD800 && unit < 0xE000) ? 0xFFFD : unit
                default: return UInt32(e)  // `"` `\` `/`
                }
            }
            // Raw UTF-8, validated by scanString.
            if b < 0x80 { index += 1; return UInt32(b) }
            if b < 0xE0 {
                defer { index += 2 }
                return UInt32(b & 0x1F) << 6 | UInt32(p[index + 1] & 0x3F)
            }
            if b < 0xF0 {
                defer { index += 3 }
                return UInt32(b & 0x0F) << 12 | UInt32(p[index + 1] & 0x3F) << 6 | UInt32(p[index + 2] & 0x3F)
            }
            defer { index += 4 }
            return UInt32(b & 0x07) << 18 | UInt32(p[index + 1] & 0x3F) << 12
                | UInt32(p[index + 2] & 0x3F) << 6 | UInt32(p[index + 3] & 0x3F)
        }

        private func hex4(_ q: UnsafePointer<UInt8>) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 { v = v << 4 | UInt32(JSONScanner.hexValue(q[k]) ?? 0) }
            return v
        }
    }

    /// The decoded UTF-8 bytes of validated string content.
    static func unescape(_ content: Range<Int>, in s: JSONScanner) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(content.count)
        var decoder = ScalarDecoder(range: content)
        while let v = decoder.next(in: s) {
            switch v {
            case 0..<0x80:
                out.append(UInt8(v))
            case 0x80..<0x800:
                out.append(0xC0 | UInt8(v >> 6))
                out.append(0x80 | UInt8(v & 0x3F))
            case 0x800..<0x10000:
                out.append(0xE0 | UInt8(v >> 12))
                out.append(0x80 | UInt8((v >> 6) & 0x3F))
                out.append(0x80 | UInt8(v & 0x3F))
            default:
                out.append(0xF0 | UInt8(v >> 18))
                out.append(0x80 | UInt8((v >> 12) & 0x3F))
                out.append(0x80 | UInt8((v >> 6) & 0x3F))
                out.append(0x80 | UInt8(v & 0x3F))
            }
        }
        return out
    }
}
