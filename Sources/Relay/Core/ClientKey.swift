import RelaySystem

/// Whom a per-client limit counts (the rate-limit bucket, the live-connection cap per IP, the
/// half-open cap per IP; docs/operations.md, "Admission limits"):
/// - an IPv4 address by itself;
/// - an IPv6 address by its /64: unicast interface identifiers are 64 bits (RFC 4291 §2.5.1),
///   so one subscriber holds a whole /64 and picks addresses in it at will (temporary addresses,
///   RFC 8981). Keying all 128 bits would give one phone 2^64 buckets;
/// - an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as its IPv4 address.
/// Two 64-bit words, so hashing it allocates nothing (it is computed on every accept).
public struct ClientKey: Hashable, Sendable, CustomStringConvertible {
    /// IPv6: the /64 prefix. IPv4: 0.
    package let high: UInt64
    /// IPv4: the address in its IPv4-mapped form (never 0). IPv6: 0.
    package let low: UInt64

    /// Connections whose client is not known yet: before the PROXY v2 header, or behind a
    /// proxy trusted for X-Forwarded-For (the peer is the proxy). No real address maps here.
    package static let unattributed = ClientKey(high: .max, low: .max)

    package init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The key in one word, `wordIsHigh` saying which half: an IPv4 key's `high` is 0 and an
    /// IPv6 key's `low` is 0 (the ::/64 key's both), so a record kept per connection stores 8
    /// bytes and a flag (`init(word:wordIsHigh:)`; exact for every key of an IP, not for
    /// `unattributed`). Not an address family: the ::/64 key's word is its low half.
    package var word: UInt64 { high == 0 ? low : high }
    package var wordIsHigh: Bool { high != 0 }

    package init(word: UInt64, wordIsHigh: Bool) {
        if wordIsHigh { self.init(high: word, low: 0) } else { self.init(high: 0, low: word) }
    }

    public init?(_ address: SocketAddress) {
        guard let (high, low) = address.ipv6Bytes else { return nil }
        self.init(address: high, low)
    }

    /// The key of a connection's client (`Connection.remote`); nil when it is not an IP.
    public init?(_ endpoint: IPEndpoint) {
        guard endpoint.isIP else { return nil }
        self.init(address: endpoint.high, endpoint.low)
    }

    /// From the 16 address bytes (IPv4 in its IPv4-mapped form).
    private init(address high: UInt64, _ low: UInt64) {
        if high == 0 && low >> 32 == 0xffff {
            self.init(high: 0, low: low)         // IPv4, or IPv4-mapped IPv6
        } else {
            self.init(high: high, low: 0)        // IPv6: the /64
        }
    }

    /// The key of an IP literal (an X-Forwarded-For entry); nil when `ip` is not one.
    public init?(ip: String) {
        guard let a = SocketAddress(ip: ip, port: 1) else { return nil }
        self.init(a)
    }

    /// `203.0.113.7` or `2001:db8:1:2::/64`.
    public var description: String {
        if self == .unattributed { return "unattributed" }
        let a = SocketAddress(ipv6High: high, low: low)
        return low != 0 ? a.ipString : a.ipString + "/64"
    }
}
