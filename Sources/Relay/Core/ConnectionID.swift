import RelayCodecs

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
        role.prefix + serverID + "-" + Hex.string(random, digits: 8)
    }

    /// The 32-bit suffix of `id` when it is exactly `prefix` followed by 8 lowercase hex
    /// digits; `nil` otherwise. Used to find a phone by the bytes a binary sent, without
    /// building a String.
    package static func suffix(of id: UnsafeRawBufferPointer, prefix: [UInt8]) -> UInt32? {
        guard id.count == prefix.count + 8 else { return nil }
        for k in 0..<prefix.count where id[k] != prefix[k] { return nil }
        var v: UInt32 = 0
        for k in prefix.count..<id.count {
            guard let d = Hex.lowercaseValue(id[k]) else { return nil }  // Uppercase never came from us.
            v = v << 4 | UInt32(d)
        }
        return v
    }
}
