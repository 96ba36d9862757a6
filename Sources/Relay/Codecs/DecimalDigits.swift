/// Unsigned decimal numbers as protocols and files write them: 1*DIGIT (RFC 5234 B.1), no sign,
/// space or separator.
package enum DecimalDigits {
    /// The value of `bytes` when they are 1 to `maxDigits` ASCII digits; nil otherwise.
    /// `maxDigits` is at most 18, so the value always fits in an `Int`.
    package static func value<C: Collection<UInt8>>(_ bytes: C, maxDigits: Int = 18) -> Int? {
        precondition(maxDigits <= 18)
        guard !bytes.isEmpty, bytes.count <= maxDigits else { return nil }
        var n = 0
        for b in bytes {
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(b - UInt8(ascii: "0"))
        }
        return n
    }
}
