/// Hexadecimal digits (RFC 4648 §8, "base16"): written lowercase, as Go's `hex.EncodeToString`
/// and `encoding/json` write them; read in either case unless a caller says otherwise.
public enum Hex {
    /// The lowercase digit of `v`'s low four bits.
    @inlinable package static func digit(_ v: UInt32) -> UInt8 {
        let n = UInt8(truncatingIfNeeded: v & 0xF)
        return n < 10 ? UInt8(ascii: "0") + n : UInt8(ascii: "a") - 10 + n
    }

    /// `value`'s low `count` digits, most significant first, zero-padded, appended to `out`.
    package static func append(_ value: UInt32, digits count: Int, to out: inout [UInt8]) {
        for k in stride(from: count - 1, through: 0, by: -1) { out.append(digit(value >> UInt32(4 * k))) }
    }

    /// `value`'s low `count` digits as a string, most significant first, zero-padded.
    public static func string(_ value: UInt32, digits count: Int) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        append(value, digits: count, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of one digit, upper or lower case; nil for any other byte.
    @inlinable package static func value(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return lowercaseValue(b)
        }
    }

    /// The value of one digit written as we write them (`0-9a-f`); nil for any other byte.
    @inlinable package static func lowercaseValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
