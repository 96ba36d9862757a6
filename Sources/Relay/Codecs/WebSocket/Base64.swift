/// RFC 4648 §4 base64 (standard alphabet, `=` padding), for the WebSocket key and accept value
/// (RFC 6455 §4.1, §4.2.2).
public enum Base64 {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode<C: Collection<UInt8>>(_ bytes: C) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var it = bytes.makeIterator()
        while let b0 = it.next() {
            let b1 = it.next()
            let b2 = it.next()
            let n = UInt32(b0) << 16 | UInt32(b1 ?? 0) << 8 | UInt32(b2 ?? 0)
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(b1 == nil ? UInt8(ascii: "=") : alphabet[Int(n >> 6 & 63)])
            out.append(b2 == nil ? UInt8(ascii: "=") : alphabet[Int(n & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 4648 §5 base64url without padding, as JWS compact serialization requires (RFC 7515 §2).
    public static func urlEncode<C: Collection<UInt8>>(_ bytes: C) -> String {
        var s = encode(bytes)
        while s.last == "=" { s.removeLast() }
        return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    /// Strict decoding: length a multiple of 4, padding required, `=` only at the end, no
    /// whitespace or other bytes. Non-zero bits under the padding are accepted, as Go's
    /// `base64.StdEncoding` (the Go relay's decoder) accepts them. Nil when malformed.
    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 4 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 4 * 3)
        var i = 0
        while i < u.count {
            let last = i + 4 == u.count
            guard let a = value(u[i]), let b = value(u[i + 1]) else { return nil }
            let c = u[i + 2], d = u[i + 3]
            if last && c == UInt8(ascii: "=") {
                guard d == UInt8(ascii: "=") else { return nil }
                out.append(a << 2 | b >> 4)
            } else if last && d == UInt8(ascii: "=") {
                guard let cv = value(c) else { return nil }
                out.append(a << 2 | b >> 4)
                out.append(b << 4 | cv >> 2)
            } else {
                guard let cv = value(c), let dv = value(d) else { return nil }
                out.append(a << 2 | b >> 4)
                out.append(b << 4 | cv >> 2)
                out.append(cv << 6 | dv)
            }
            i += 4
        }
        return out
    }

    private static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
        case UInt8(ascii: "+"): return 62
        case UInt8(ascii: "/"): return 63
        default: return nil
        }
    }
}
