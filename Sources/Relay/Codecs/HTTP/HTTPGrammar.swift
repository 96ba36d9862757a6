/// Byte classes of the HTTP/1.1 grammar (RFC 9110 §5.6, RFC 9112 §2–§5), shared by the request
/// parser and the header helpers. ASCII only: HTTP field names and tokens are ASCII.
package enum HTTPGrammar {
    package static let sp: UInt8 = 0x20
    package static let htab: UInt8 = 0x09
    package static let cr: UInt8 = 0x0D
    package static let lf: UInt8 = 0x0A
    package static let colon: UInt8 = 0x3A
    package static let comma: UInt8 = 0x2C
    package static let question: UInt8 = 0x3F

    /// tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~", DIGIT, ALPHA.
    @inline(__always)
    package static func isTokenChar(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
            UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// VCHAR (RFC 5234 B.1): visible ASCII, the only bytes of a request-target (RFC 9112 §3.2).
    @inline(__always)
    package static func isVisible(_ b: UInt8) -> Bool { b >= 0x21 && b <= 0x7E }

    /// field-content bytes other than CR/LF (RFC 9110 §5.5): VCHAR, obs-text, SP, HTAB.
    /// NUL and the other controls are refused (RFC 9110 §5.5: a recipient MUST reject or replace
    /// them; we reject).
    @inline(__always)
    package static func isFieldValueByte(_ b: UInt8) -> Bool {
        b == sp || b == htab || (b >= 0x21 && b != 0x7F)
    }

    @inline(__always)
    package static func isOWS(_ b: UInt8) -> Bool { b == sp || b == htab }

    @inline(__always)
    package static func lowercased(_ b: UInt8) -> UInt8 {
        (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) ? b | 0x20 : b
    }

    /// Whether the comma-separated list `list` (RFC 9110 §5.6.1: elements between commas, OWS
    /// around them, empty elements ignored) has an element equal to `token`, ASCII
    /// case-insensitively. One pass over the bytes, nothing allocated: it runs on every upgrade.
    package static func listContains(_ list: UnsafeBufferPointer<UInt8>, _ token: UnsafeBufferPointer<UInt8>) -> Bool {
        var start = 0
        while start <= list.count {
            var end = start
            while end < list.count && list[end] != comma { end += 1 }
            var lo = start, hi = end
            while lo < hi && isOWS(list[lo]) { lo += 1 }
            while hi > lo && isOWS(list[hi - 1]) { hi -= 1 }
            if hi - lo == token.count && equalsIgnoringASCIICase(list[lo..<hi], token) { return true }
            start = end + 1
        }
        return false
    }

    /// ASCII case-insensitive equality of two UTF-8 sequences (tokens are ASCII, RFC 9110 §5.6.2).
    package static func equalsIgnoringASCIICase<A: Collection<UInt8>, B: Collection<UInt8>>(_ a: A, _ b: B) -> Bool {
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where lowercased(x) != lowercased(y) { return false }
        return true
    }
}
