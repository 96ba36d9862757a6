internal import CTLS

/// RFC 4648 §4 base64 (standard alphabet, `=` padding), for the WebSocket key and accept value
/// (RFC 6455 §4.1, §4.2.2), and §5 base64url for JWS. OpenSSL's `EVP_EncodeBlock` and
/// `EVP_DecodeBlock` do the conversion; only the strictness of `decode` is ours.
public enum Base64 {
    public static func encode<C: Collection<UInt8>>(_ bytes: C) -> String {
        let input = Array(bytes)
        let n = (input.count + 2) / 3 * 4
        var out = [UInt8](repeating: 0, count: n + 1)  // EVP_EncodeBlock adds a NUL
        let written = EVP_EncodeBlock(&out, input, Int32(input.count))
        return String(decoding: out[0..<Int(written)], as: UTF8.self)
    }

    /// RFC 4648 §5 base64url without padding, as JWS compact serialization requires (RFC 7515 §2).
    public static func urlEncode<C: Collection<UInt8>>(_ bytes: C) -> String {
        var s = encode(bytes)
        while s.last == "=" { s.removeLast() }
        return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
    }

    /// Strict decoding: length a multiple of 4, padding required, `=` only at the end, no
    /// whitespace or other bytes (`EVP_DecodeBlock` alone would skip whitespace and take `=`
    /// anywhere as zero bits, so the text is checked first). Non-zero bits under the padding are
    /// accepted, as Go's `base64.StdEncoding` (the Go relay's decoder) accepts them. Nil when
    /// malformed.
    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 4 == 0 else { return nil }
        let padding = u.count >= 4 ? u.suffix(2).reversed().prefix { $0 == UInt8(ascii: "=") }.count : 0
        guard u.dropLast(padding).allSatisfy(isAlphabet) else { return nil }
        var out = [UInt8](repeating: 0, count: u.count / 4 * 3)
        guard EVP_DecodeBlock(&out, u, Int32(u.count)) == Int32(out.count) else { return nil }
        out.removeLast(padding)
        return out
    }

    private static func isAlphabet(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"): return true
        default: return false
        }
    }
}
