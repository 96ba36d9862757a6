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

    /// The 32-bit suffix of `id` when it is exactly a phone's id on `serverID` —
    /// `client-<server-id>-` followed by 8 lowercase hex digits; `nil` otherwise. Used to find a
    /// phone by the bytes a binary sent, compared with the server-id's UTF-8 in place: no String
    /// and no prefix copy kept per server-id.
    package static func phoneSuffix(of id: UnsafeRawBufferPointer, serverID: String) -> UInt32? {
        let sid = serverID.utf8
        let dash = 7 + sid.count  // after "client-" and the server-id
        guard id.count == dash + 9 else { return nil }
        var k = 0
        for b in Role.phone.prefix.utf8 {
            guard id[k] == b else { return nil }
            k += 1
        }
        for b in sid {
            guard id[k] == b else { return nil }
            k += 1
        }
        guard id[dash] == UInt8(ascii: "-") else { return nil }
        var v: UInt32 = 0
        for k in dash + 1..<id.count {
            guard let d = Hex.lowercaseValue(id[k]) else { return nil }  // Uppercase never came from us.
            v = v << 4 | UInt32(d)
        }
        return v
    }
}
