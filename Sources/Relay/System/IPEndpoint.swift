import CEpoll

/// A peer's IP address and port in 24 bytes, where a `SocketAddress` takes 136: what a
/// connection keeps of its client until the upgrade, for logs and per-client limits. IPv4 is
/// held IPv4-mapped (RFC 4291 §2.5.5.2) and shown as IPv4, as `SocketAddress.ipString` does.
public struct IPEndpoint: Equatable, Sendable {
    /// The 16 address bytes, as two big-endian halves.
    package let high: UInt64
    package let low: UInt64
    public let port: UInt16
    /// False for an address of another family (its `ipString` is empty).
    package let isIP: Bool

    /// No address (`ipString` is empty).
    public static let unknown = IPEndpoint(SocketAddress())

    public init(_ address: SocketAddress) {
        let bytes = address.ipv6Bytes
        high = bytes?.high ?? 0
        low = bytes?.low ?? 0
        port = address.port
        isIP = bytes != nil
    }

    /// An IP address from its two halves (as `high`/`low` hold them), port 0: what a record that
    /// keeps only the address (16 bytes) gives back.
    package init(ipHigh: UInt64, low: UInt64) {
        high = ipHigh
        self.low = low
        port = 0
        isIP = true
    }

    package var isIPv4: Bool { high == 0 && low >> 32 == 0xffff }

    /// The IP as text, no port ("" when not an IP address).
    public var ipString: String {
        guard isIP else { return "" }
        var bytes = (high.bigEndian, low.bigEndian)
        return withUnsafeBytes(of: &bytes) { raw in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN) + 1) { buf -> String in
                buf.initialize(repeating: 0)
                if isIPv4 {
                    _ = inet_ntop(AF_INET, raw.baseAddress! + 12, buf.baseAddress!, socklen_t(buf.count))
                } else {
                    _ = inet_ntop(AF_INET6, raw.baseAddress!, buf.baseAddress!, socklen_t(buf.count))
                }
                return String(cString: buf.baseAddress!)
            }
        }
    }
}
