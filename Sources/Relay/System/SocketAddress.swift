import CEpoll

/// An IPv4 or IPv6 socket address, parsed from the Go-style listen syntax
/// `host:port`, `:port` or `[v6]:port` (port 1–65535).
public struct SocketAddress: Equatable, CustomStringConvertible {
    public var storage = sockaddr_storage()
    public var length: socklen_t = 0
    /// `:port` (no host): listen on IPv6 and IPv4 alike, as Go's net.Listen does — one `[::]`
    /// socket with IPV6_V6ONLY off, or `0.0.0.0` when the host has no IPv6 (`Socket.listen`).
    /// An explicit `0.0.0.0:port` stays IPv4-only.
    public private(set) var anyFamily = false

    public init() {}

    public enum ParseError: Error, Equatable { case malformed, badPort, badHost }

    public init(parsing text: String) throws(ParseError) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .malformed }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .malformed }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .malformed }
            host = text[..<colon]
            if host.contains(":") { throw .malformed }  // bare IPv6 needs brackets
            portText = text[text.index(after: colon)...]
        }
        guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5,
              let port = Int(portText) else { throw .badPort }
        guard (1...65535).contains(port) else { throw .badPort }
        if host.isEmpty {
            self = SocketAddress(ip: "::", port: UInt16(port))!
            anyFamily = true
            return
        }
        if host == "localhost" { host = "127.0.0.1" }
        guard let a = SocketAddress(ip: String(host), port: UInt16(port)) else { throw .badHost }
        self = a
    }

    /// A numeric IP literal and port; nil when `ip` is not an IP literal.
    public init?(ip: String, port: UInt16) {
        var a = in6_addr()  // room for either family
        let n: Int
        if inet_pton(AF_INET, ip, &a) == 1 {
            n = 4
        } else if inet_pton(AF_INET6, ip, &a) == 1 {
            n = 16
        } else {
            return nil
        }
        self = withUnsafeBytes(of: a) { SocketAddress(address: UnsafeRawBufferPointer(rebasing: $0[0..<n]), port: port) }
    }

    /// The IPv4 (4 bytes) or IPv6 (16 bytes) address `bytes`, in network order, and `port`.
    package init(address bytes: UnsafeRawBufferPointer, port: UInt16) {
        precondition(bytes.count == 4 || bytes.count == 16)
        if bytes.count == 4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyMemory(from: bytes) }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyMemory(from: bytes) }
            withUnsafeMutableBytes(of: &storage) { dst in withUnsafeBytes(of: sin6) { dst.copyMemory(from: $0) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        }
    }

    public var family: Int32 { Int32(storage.ss_family) }

    public var port: UInt16 {
        // sin_port and sin6_port share offset 2.
        withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
    }

    /// The IP as text, no port (IPv4-mapped IPv6 shown as IPv4): the rate-limit key.
    public var ipString: String {
        withUnsafeBytes(of: storage) { raw -> String in
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN) + 1) { buf -> String in
                buf.initialize(repeating: 0)
                let out = buf.baseAddress!
                if family == AF_INET {
                    // sockaddr_in: family(2) port(2) addr(4)
                    _ = inet_ntop(AF_INET, raw.baseAddress! + 4, out, socklen_t(buf.count))
                } else if family == AF_INET6 {
                    // sockaddr_in6: family(2) port(2) flowinfo(4) addr(16)
                    let a = raw.baseAddress! + 8
                    let b = UnsafeRawBufferPointer(start: a, count: 16)
                    if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
                        _ = inet_ntop(AF_INET, a + 12, out, socklen_t(buf.count))
                    } else {
                        _ = inet_ntop(AF_INET6, a, out, socklen_t(buf.count))
                    }
                }
                return String(cString: out)
            }
        }
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2: what a dual-stack
    /// socket reports for an IPv4 peer) as the plain IPv4 address; any other address unchanged.
    /// Accept and the PROXY header apply it, so logs and limits never see the mapped form.
    public var unmappingIPv4: SocketAddress {
        guard family == AF_INET6 else { return self }
        return withUnsafeBytes(of: storage) { raw -> SocketAddress in
            let a = UnsafeRawBufferPointer(rebasing: raw[8..<24])
            guard a[0..<10].allSatisfy({ $0 == 0 }) && a[10] == 0xff && a[11] == 0xff else { return self }
            return SocketAddress(address: UnsafeRawBufferPointer(rebasing: a[12..<16]), port: port)
        }
    }

    /// The IPv6 address (port 0) whose 128 bits are `high` then `low` — `ipv6Bytes` inverted.
    package init(ipv6High high: UInt64, low: UInt64) {
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.storeBytes(of: sa_family_t(AF_INET6), toByteOffset: 0, as: sa_family_t.self)
            raw.storeBytes(of: high.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: low.bigEndian, toByteOffset: 16, as: UInt64.self)
        }
        length = socklen_t(MemoryLayout<sockaddr_in6>.size)
    }

    /// The 16 address bytes in IPv6 form (IPv4 as `::ffff:a.b.c.d`); nil for other families.
    package var ipv6Bytes: (high: UInt64, low: UInt64)? {
        withUnsafeBytes(of: storage) { raw -> (UInt64, UInt64)? in
            if family == AF_INET {
                let v4 = UInt64(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
                return (0, 0xffff_0000_0000 | v4)
            }
            guard family == AF_INET6 else { return nil }
            return (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        }
    }

    public var isLoopback: Bool {
        let ip = ipString
        return ip.hasPrefix("127.") || ip == "::1"
    }

    public var description: String {
        family == AF_INET6 ? "[\(ipString)]:\(port)" : "\(ipString):\(port)"
    }

    public static func == (a: SocketAddress, b: SocketAddress) -> Bool {
        a.length == b.length && withUnsafeBytes(of: a.storage) { ra in
            withUnsafeBytes(of: b.storage) { rb in memcmp(ra.baseAddress!, rb.baseAddress!, Int(a.length)) == 0 }
        }
    }

    /// Calls `body` with a `sockaddr` pointer to this address.
    public func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(Errno) -> R) throws(Errno) -> R {
        var s = storage
        return try withUnsafePointer(to: &s) { p throws(Errno) -> R in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(Errno) -> R in try body(sa, length) }
        }
    }
}
