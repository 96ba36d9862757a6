import CEpoll
import Glibc
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayCore
@testable import Relaying

/// Admission over real loopback sockets (docs/operations.md, "Admission limits"): a flood of idle
/// connections from one address (or one IPv6 /64) evicts its own half-open connections, not a
/// phone that takes its time; the per-IP limits count an IPv6 client by its /64.
@Suite(.serialized) struct AdmissionLoopbackTests {
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    static func upgradeRequest(path: String = "/v1/client", serverID: String = "s1", xff: String? = nil) -> String {
        "GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: \(key)\r\nSec-WebSocket-Version: 13\r\n"
            + "X-Pyrycode-Server: \(serverID)\r\nX-Pyrycode-Version: 1\r\nX-Pyrycode-Token: t\r\nUser-Agent: test\r\n"
            + (xff.map { "X-Forwarded-For: \($0)\r\n" } ?? "") + "\r\n"
    }

    /// A PROXY v2 TCP6 header (haproxy proxy-protocol.txt §2.2) from `source`.
    static func proxyHeader(from source: String) -> [UInt8] {
        let a = SocketAddress(ip: source, port: 1)!
        let bytes = withUnsafeBytes(of: a.storage) { Array($0[8..<24]) }
        return [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x21, 0x00, 0x24]
            + bytes + [UInt8](repeating: 0, count: 15) + [1] + [0x9C, 0x40, 0x01, 0xBB]
    }

    /// The late phone of issue #18: it connects first, then takes `delayMs` before sending its
    /// upgrade request while `flood` opens idle connections (about 3,000 a second, those the
    /// relay closes are closed here too). Returns the phone's answer; checks the caps held.
    func latePhone(_ server: LoopbackRelay, from phoneSource: String, preamble: [UInt8] = [],
                   delayMs: Int64 = 600, flood: () -> RawSocket) -> String {
        let phone = RawSocket(port: server.port, from: phoneSource)
        if !preamble.isEmpty { phone.send(preamble) }
        #expect(server.pump { server.relay.halfOpenCount == 1 })
        var flooders: [RawSocket] = []
        var opened = 0
        let start = monotonicMs(), sendAt = start + delayMs
        // The scenario itself: the phone is slow to send its request.
        server.pump(timeoutMs: delayMs + 1_000) {
            let due = Int(monotonicMs() - start) * 3
            while opened < due {
                flooders.append(flood())
                opened += 1
            }
            for f in flooders { f.poll() }
            flooders.removeAll { $0.eof }
            #expect(server.relay.halfOpenCount <= server.relay.settings.maxHalfOpen)
            return monotonicMs() >= sendAt
        }
        #expect(opened >= 1_500, "flood opened only \(opened) connections")
        #expect(server.relay.metrics.halfOpenEvictions > 0)
        phone.send(Self.upgradeRequest())
        server.pump { phone.poll(); return phone.text.contains("\r\n\r\n") || phone.eof }
        return phone.text
    }

    @Test func oneAddressFloodingIdleConnectionsCannotEvictALatePhone() throws {
        let server = try LoopbackRelay()  // default caps: 1,024 in all, 64 per IP
        let answer = latePhone(server, from: "127.0.0.3") { RawSocket(port: server.port, from: "127.0.0.2") }
        #expect(answer.hasPrefix("HTTP/1.1 101 "), "late phone got: \(answer)")
        #expect(server.relay.halfOpen.count(of: ClientKey(ip: "127.0.0.2")!) <= Limits.maxHalfOpenPerIP)
    }

    /// 32 flooding addresses × 16 each exceed the global cap of 256: room is made by evicting
    /// from the largest holders, never the phone (which holds one and is the oldest of all).
    @Test func manyAddressesPastTheGlobalCapEvictTheLargestHolders() throws {
        let server = try LoopbackRelay { c in
            c.maxHalfOpen = 256
            c.maxHalfOpenPerIP = 16
        }
        var next = 0
        let answer = latePhone(server, from: "127.0.0.3") {
            next += 1
            return RawSocket(port: server.port, from: "127.0.1.\(next % 32 + 1)")
        }
        #expect(answer.hasPrefix("HTTP/1.1 101 "), "late phone got: \(answer)")
    }

    /// Behind a PROXY v2 load balancer every connection comes from one peer: the half-open cap
    /// counts the header's source, and a flood from many addresses of one IPv6 /64 counts as one.
    @Test func proxiedFloodFromOneSlash64CountsAsOneClient() throws {
        let server = try LoopbackRelay(proxyHeader: true) { c in c.maxHalfOpenPerIP = 8 }
        var next = 0
        let flooder = ClientKey(ip: "2001:db8:1:2::")!
        let answer = latePhone(server, from: "127.0.0.1", preamble: Self.proxyHeader(from: "2001:db8:1:3::1")) {
            next += 1
            let f = RawSocket(port: server.port)
            f.send(Self.proxyHeader(from: "2001:db8:1:2:\(String(next, radix: 16))::1"))
            return f
        }
        #expect(answer.hasPrefix("HTTP/1.1 101 "), "late phone got: \(answer)")
        #expect(server.relay.halfOpen.count(of: flooder) <= 8)
        #expect(server.relay.halfOpen.count(of: flooder) > 0)
    }

    // MARK: per-IP limits by /64, through X-Forwarded-For

    func status(_ server: LoopbackRelay, path: String = "/v1/server", serverID: String, xff: String, keep: inout [RawSocket]) -> String {
        let c = RawSocket(port: server.port)
        c.send(Self.upgradeRequest(path: path, serverID: serverID, xff: xff))
        server.pump { c.poll(); return c.text.contains("\r\n\r\n") || c.eof }
        keep.append(c)
        return String(c.text.prefix(12))
    }

    @Test func liveConnectionCapCountsAnIPv6ClientByItsSlash64() throws {
        let server = try LoopbackRelay { c in
            c.trustXForwardedFor = true
            c.maxConnectionsPerIP = 3
        }
        var keep: [RawSocket] = []
        let sameSlash64 = (1...4).map { status(server, serverID: "b\($0)", xff: "2001:db8:5:6::\($0)", keep: &keep) }
        #expect(sameSlash64 == ["HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 429"])
        #expect(status(server, serverID: "b5", xff: "2001:db8:5:6:ffff::9", keep: &keep) == "HTTP/1.1 429")
        #expect(status(server, serverID: "b6", xff: "2001:db8:5:7::1", keep: &keep) == "HTTP/1.1 101")
        // IPv4 by the whole address; an IPv4-mapped address is that IPv4 address.
        let v4 = ["192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1", "::ffff:192.0.2.1", "192.0.2.2"].enumerated().map {
            status(server, serverID: "v\($0.offset)", xff: $0.element, keep: &keep)
        }
        #expect(v4 == ["HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 101", "HTTP/1.1 429", "HTTP/1.1 101"])
    }

    @Test func rateLimitBucketIsSharedByOneSlash64() throws {
        let server = try LoopbackRelay { c in c.trustXForwardedFor = true }
        var keep: [RawSocket] = []
        // Each request from another address of 2001:db8:9:9::/64; the burst is the /64's.
        let answers = (1...Limits.rateBurst + 1).map {
            status(server, serverID: "r\($0)", xff: "2001:db8:9:9:\(String($0, radix: 16))::7", keep: &keep)
        }
        #expect(answers.dropLast().allSatisfy { $0 == "HTTP/1.1 101" })
        #expect(answers.last == "HTTP/1.1 429")
        #expect(status(server, serverID: "other", xff: "2001:db8:9:a::7", keep: &keep) == "HTTP/1.1 101")
    }

    /// Behind a trusted proxy the record reads the client from its connection, which admission
    /// set to the X-Forwarded-For entry: logs name that client, and a closing connection gives
    /// its place under the per-IP cap back to that client, not to the proxy.
    @Test func trustedForwardedClientIsTheConnectionsAddressUntilItCloses() throws {
        let server = try LoopbackRelay { c in
            c.trustXForwardedFor = true
            c.maxConnectionsPerIP = 1
        }
        var keep: [RawSocket] = []
        #expect(status(server, serverID: "a", xff: "198.51.100.7, 127.0.0.1", keep: &keep) == "HTTP/1.1 101")
        let record = server.relay.peers.values.first
        #expect(record?.key == ClientKey(ip: "198.51.100.7"))
        // The record keeps the client's key in a word and a flag of its 104 bytes, the address
        // only until its line (docs/benchmarks.md, M1).
        #expect(MemoryLayout<ForwardingState>.size == 25)
        #expect(instanceSize(of: OneWordObject.self) == 24 && instanceSize(of: ThreeWordObject.self) == 40)
        #expect(instanceSize(of: Peer.self) <= 104, "Peer takes \(instanceSize(of: Peer.self)) bytes")
        #expect(server.relay.unlogged.isEmpty)
        #expect(status(server, serverID: "b", xff: "198.51.100.7", keep: &keep) == "HTTP/1.1 429")
        keep[0].close()
        #expect(server.pump { server.relay.liveConnectionCount == 0 })
        #expect(status(server, serverID: "c", xff: "198.51.100.7", keep: &keep) == "HTTP/1.1 101")
    }
}
