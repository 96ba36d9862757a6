/// JSON string bodies (RFC 8259 §7): escaping one as Go's `encoding/json` does, and decoding
/// the validated content of one found by `JSONScanner`.
public enum JSONString {
    /// The body of a JSON string (no quotes) for `s`, escaped exactly as Go's `json.Marshal`
    /// does (the binary saw Go's bytes until now): `"` `\` → `\"` `\\`; `\b \f \n \r \t`;
    /// other controls, `<` `>` `&`, U+2028, U+2029 → `\u00XX` / `\u2028` / `\u2029` (HTML-safe
    /// escaping is on in `json.Marshal`). Server ids come from a header and may contain anything.
    public static func escaped(_ s: String) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            let v = scalar.value
            switch v {
            case 0x22: out.append(contentsOf: [0x5C, 0x22])
            case 0x5C: out.append(contentsOf: [0x5C, 0x5C])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20, 0x3C, 0x3E, 0x26, 0x2028, 0x2029:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
                Hex.append(v, digits: 4, to: &out)
            case 0..<0x80:
                out.append(UInt8(v))
            default:
                out.append(contentsOf: String(scalar).utf8)
            }
        }
        return out
    }


    /// Decodes the scalars of already-validated string content, one at a time. Surrogate
    /// escapes: a high one followed by `\u` low one form a pair; any other surrogate becomes
    /// U+FFFD, as Go's `unquote` does.
    package struct ScalarDecoder {
        package var index: Int
        package let end: Int
        package init(range: Range<Int>) { index = range.lowerBound; end = range.upperBound }

        package mutating func next(in s: JSONScanner) -> UInt32? {
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
            for k in 0..<4 { v = v << 4 | UInt32(Hex.value(q[k]) ?? 0) }
            return v
        }
    }

    /// The decoded UTF-8 bytes of validated string content.
    package static func unescaped(_ content: Range<Int>, in s: JSONScanner) -> [UInt8] {
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
