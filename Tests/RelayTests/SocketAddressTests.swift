import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayTransport

@Suite struct SocketAddressTests {
    @Test func parsesGoListenSyntax() throws {
        #expect(try SocketAddress(parsing: "127.0.0.1:8080").description == "127.0.0.1:8080")
        // No host: IPv6 and IPv4 on one [::] socket, as Go's net.Listen; 0.0.0.0 stays IPv4-only.
        #expect(try SocketAddress(parsing: ":443").description == "[::]:443")
        #expect(try SocketAddress(parsing: ":443").anyFamily)
        #expect(try !SocketAddress(parsing: "0.0.0.0:443").anyFamily)
        #expect(try !SocketAddress(parsing: "[::]:443").anyFamily)
        #expect(try SocketAddress(parsing: "[::1]:9090").description == "[::1]:9090")
        #expect(try SocketAddress(parsing: "localhost:1").port == 1)
    }

    @Test func rejectsBadAddresses() {
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:0") }
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:65536") }
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:http") }
        #expect(throws: SocketAddress.ParseError.malformed) { try SocketAddress(parsing: "garbage") }
        #expect(throws: SocketAddress.ParseError.malformed) { try SocketAddress(parsing: "::1:80") }
        #expect(throws: SocketAddress.ParseError.badHost) { try SocketAddress(parsing: "example.com:80") }
    }

    @Test func ipv4MappedAddressesBecomeIPv4() throws {
        let mapped = try #require(SocketAddress(ip: "::ffff:192.0.2.7", port: 4321)).unmappingIPv4
        #expect(mapped.family == AF_INET)
        #expect(mapped.description == "192.0.2.7:4321")
        #expect(mapped == SocketAddress(ip: "192.0.2.7", port: 4321))
        // Anything else is left alone.
        #expect(SocketAddress(ip: "2001:db8::1", port: 1)!.unmappingIPv4.description == "[2001:db8::1]:1")
        #expect(SocketAddress(ip: "::1", port: 1)!.unmappingIPv4.family == AF_INET6)
        #expect(SocketAddress(ip: "10.0.0.1", port: 1)!.unmappingIPv4.description == "10.0.0.1:1")
    }

    /// A kernel without IPv6 refuses socket(AF_INET6) with EAFNOSUPPORT: `:port` then binds
    /// 0.0.0.0; an explicit IPv6 address does not fall back.
    @Test func anyFamilyListenFallsBackToIPv4WithoutIPv6() throws {
        final class NoIPv6 {
            var tried: [String] = []
            func open(_ a: SocketAddress) throws(Errno) -> FileDescriptor {
                tried.append(a.description)
                if a.family == AF_INET6 { throw Errno(EAFNOSUPPORT, call: "socket") }
                return FileDescriptor(-1)
            }
        }
        let host = NoIPv6()
        _ = try Socket.listenFallingBackToIPv4(try SocketAddress(parsing: ":8443"), host.open)
        #expect(host.tried == ["[::]:8443", "0.0.0.0:8443"])
        let explicit = NoIPv6()
        #expect(throws: Errno(EAFNOSUPPORT)) {
            try Socket.listenFallingBackToIPv4(try SocketAddress(parsing: "[::]:8443"), explicit.open)
        }
        #expect(explicit.tried == ["[::]:8443"])
    }

    /// `:port` really is one socket for both families: an IPv4 client reaches it, and its
    /// address arrives as plain IPv4, not ::ffff:127.0.0.1.
    @Test func anyFamilyListenerServesBothFamilies() throws {
        var any = try SocketAddress(parsing: ":1")
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        var listener = try Socket.listen(on: any)
        let bound = Socket.localAddress(listener.raw)
        #expect(bound.description == "[::]:\(bound.port)")
        for ip in ["127.0.0.1", "::1"] {
            let target = SocketAddress(ip: ip, port: bound.port)!
            let client = socket(target.family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            defer { _ = close(client) }
            let rc = try target.withSockAddr { sa, len throws(Errno) in pyry_connect(client, sa, len) }
            #expect(rc == 0, "connect to \(ip)")
            // A blocking connect returns once the handshake is done: the connection is queued.
            guard case .done(let (fd, remote)) = try Socket.accept(listener.raw) else {
                Issue.record("no connection queued for \(ip)")
                continue
            }
            _ = close(fd)
            #expect(remote.ipString == ip)
            #expect(remote.family == (ip == "::1" ? AF_INET6 : AF_INET))
        }
        listener.close()
    }
}
