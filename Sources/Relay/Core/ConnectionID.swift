/// Relay-assigned connection ids (docs/protocol.md §2–§3): `server-<server-id>-<8 hex>` for a binary,
/// `client-<server-id>-<8 hex>` for a phone; the 8 hex digits are 32 CSPRNG bits, lowercase,
/// zero-padded (Go: `hex.EncodeToString` of 4 random bytes).
public enum ConnectionID {
    public enum Role: Sendable {
        case binary  // `/v1/server`
        case phone  // `/v1/client`

        package var prefix: String { self == .binary ? "server-" : "client-" }
    }

    public static func make(role: Role, serverID: String, random: UInt32) -> String {
        role.prefix + serverID + "-" + hex8(random)
    }

    /// `random` as 8 lowercase hex digits, most significant first (the byte order Go's
    /// `hex.EncodeToString` gives for the same 4 bytes read big-endian).
    public static func hex8(_ random: UInt32) -> String {
        let digits: StaticString = "0123456789abcdef"
        var out = ""
        out.reserveCapacity(8)
        for shift in stride(from: 28, through: 0, by: -4) {
            out.unicodeScalars.append(Unicode.Scalar(digits.utf8Start[Int((random >> UInt32(shift)) & 0xF)]))
        }
        return out
    }

    /// The 32-bit suffix of `id` when it is exactly `prefix` followed by 8 lowercase hex
    /// digits; `nil` otherwise. Used to find a phone by the bytes a binary sent, without
    /// building a String.
    package static func suffix(of id: UnsafeRawBufferPointer, prefix: [UInt8]) -> UInt32? {
        guard id.count == prefix.count + 8 else { return nil }
        for k in 0..<prefix.count where id[k] != prefix[k] { return nil }
        var v: UInt32 = 0
        for k in prefix.count..<id.count {
            let b = id[k]
            let d: UInt8
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = b - UInt8(ascii: "a") + 10
            default: return nil  // Uppercase never came from us.
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }
}
