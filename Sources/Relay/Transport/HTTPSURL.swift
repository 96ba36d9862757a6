import CEpoll
import RelaySystem

/// "https://host[:port]/path?query" — https only (anything else: nil). `host` is a DNS name
/// (lowercased), an IPv4 literal, or an IPv6 literal written in brackets in the URL and stored
/// without them. A fragment is dropped (RFC 3986 §3.5: it never goes to the server); user info
/// is refused (it would be a credential in a URL).
public struct HTTPSURL: Equatable, Sendable {
    public var host: String
    public var port: UInt16        // default 443
    public var path: String        // starts with "/", includes any query; "/" when empty

    public init?(_ string: String) {
        let bytes = Array(string.utf8)
        let scheme = Array("https://".utf8)
        guard bytes.count > scheme.count,
              zip(bytes, scheme).allSatisfy({ $0 | 0x20 == $1 || $0 == $1 }) else { return nil }
        // Printable ASCII only (RFC 3986 §2): no space, control byte or raw UTF-8 reaches a request line.
        guard bytes.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { return nil }
        var rest = bytes[scheme.count...]
        if let hash = rest.firstIndex(of: UInt8(ascii: "#")) { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "?") } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let pathPart = rest[authorityEnd...]
        guard !authority.isEmpty, !authority.contains(UInt8(ascii: "@")) else { return nil }

        var hostBytes: ArraySlice<UInt8>
        var portBytes: ArraySlice<UInt8>? = nil
        if authority.first == UInt8(ascii: "[") {
            guard let close = authority.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            hostBytes = authority[(authority.startIndex + 1)..<close]
            let after = authority[(close + 1)...]
            if !after.isEmpty {
                guard after.first == UInt8(ascii: ":") else { return nil }
                portBytes = after.dropFirst()
            }
            var a6 = in6_addr()
            guard inet_pton(AF_INET6, String(decoding: hostBytes, as: UTF8.self), &a6) == 1 else { return nil }
        } else {
            if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
                hostBytes = authority[..<colon]
                portBytes = authority[(colon + 1)...]
            } else {
                hostBytes = authority
            }
            // RFC 1123 §2.1 host names (letters, digits, '-', '.'); '_' is tolerated as resolvers do.
            guard !hostBytes.isEmpty, hostBytes.count <= 253,
                  hostBytes.allSatisfy({ b in
                      (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a)
                          || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_")
                  }) else { return nil }
        }
        var port: UInt16 = 443
        if let portBytes {
            guard !portBytes.isEmpty, portBytes.count <= 5, portBytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let p = Int(String(decoding: portBytes, as: UTF8.self)), (1...65535).contains(p) else { return nil }
            port = UInt16(p)
        }
        host = String(decoding: hostBytes.map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }, as: UTF8.self)
        self.port = port
        if pathPart.isEmpty {
            path = "/"
        } else if pathPart.first == UInt8(ascii: "?") {
            path = "/" + String(decoding: pathPart, as: UTF8.self)
        } else {
            path = String(decoding: pathPart, as: UTF8.self)
        }
    }

    /// True when `host` is an IPv6 literal (it needs brackets in `Host` and is checked as an IP).
    public var hostIsIPv6: Bool { host.contains(":") }

    /// True when `host` is an IP literal rather than a name: no DNS, no SNI (RFC 6066 §3), and the
    /// certificate is checked for the IP address (RFC 9110 §4.3.5).
    public var hostIsIPLiteral: Bool { SocketAddress(ip: host, port: port) != nil }

    /// The `Host` header value (RFC 9110 §7.2): the port only when it is not 443.
    public var hostHeader: String {
        let h = hostIsIPv6 ? "[\(host)]" : host
        return port == 443 ? h : "\(h):\(port)"
    }

    /// The key under which connections are kept for reuse.
    package var originKey: String { "\(host) \(port)" }
}
