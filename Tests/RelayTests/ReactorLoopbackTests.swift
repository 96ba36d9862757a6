import CEpoll
import Testing
@testable import RelayReactor

/// The reactor and transport over real loopback sockets (docs/protocol.md §3.2): many connections, no fd
/// leak, and hostile clients get their bounded answer while another client is served.
@Suite(.serialized) struct ReactorLoopbackTests {
    static let healthRequest = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    // Descriptor counts are process-wide and other suites run in parallel, so these tests check
    // the server's own registrations; tests/interop/test_scale.py checks /proc/PID/fd of the
    // built relay process.
    /// Hundreds of clients at once, all from 127.0.0.1: the per-IP half-open cap would take
    /// them for one flooding address (AdmissionLoopbackTests), so it is lifted here.
    static func manyClientsRelay() throws -> LoopbackRelay {
        try LoopbackRelay { c in c.maxHalfOpenPerIP = c.maxHalfOpen }
    }

    @Test func thousandsOfConnectionsLeaveNoRegistrationBehind() throws {
        let server = try Self.manyClientsRelay()
        let baseline = server.reactor.registrationCount
        for _ in 0..<10 {
            let clients = (0..<300).map { _ in RawSocket(port: server.port) }
            for c in clients { c.send(Self.healthRequest) }
            let served = server.pump {
                for c in clients { c.poll() }
                return clients.allSatisfy { $0.eof }
            }
            #expect(served)
            #expect(clients.allSatisfy { $0.text.hasPrefix("HTTP/1.1 200 ") })
            for c in clients { c.close() }
        }
        // Everything the server opened for them is closed again.
        let settled = server.pump { server.reactor.registrationCount == baseline }
        #expect(settled, "registrations \(server.reactor.registrationCount) != baseline \(baseline)")
        #expect(server.relay.halfOpenCount == 0)
    }

    @Test func clientsThatDropMidRequestLeaveNoRegistrationBehind() throws {
        let server = try Self.manyClientsRelay()
        let baseline = server.reactor.registrationCount
        var clients = (0..<1000).map { _ in RawSocket(port: server.port) }
        server.pump(timeoutMs: 500) { server.relay.halfOpenCount == 1000 }
        for c in clients { c.send("GET /heal") }
        server.reactor.runOnce(timeoutMs: 10)
        for c in clients { c.close() }
        clients.removeAll()
        let settled = server.pump { server.reactor.registrationCount == baseline && server.relay.halfOpenCount == 0 }
        #expect(settled)
    }

    @Test func megabyteOfHeaderGarbageGets431WhileOthersAreServed() throws {
        let server = try LoopbackRelay()
        let hostile = RawSocket(port: server.port)
        var garbage = Array("GET / HTTP/1.1\r\nX-Fill: ".utf8)
        garbage += [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
        var sent = 0
        let answered = server.pump {
            if sent < garbage.count { sent += hostile.send(Array(garbage[sent...])) }
            hostile.poll()
            return hostile.eof
        }
        #expect(answered)
        #expect(hostile.text.hasPrefix("HTTP/1.1 431 "))
        let good = RawSocket(port: server.port)
        good.send(Self.healthRequest)
        #expect(server.pump { good.poll(); return good.eof })
        #expect(good.text.hasPrefix("HTTP/1.1 200 "))
    }

    @Test func nonHTTPBytesGet400() throws {
        let server = try LoopbackRelay()
        let c = RawSocket(port: server.port)
        _ = c.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
        #expect(server.pump { c.poll(); return c.eof })
        #expect(c.text.hasPrefix("HTTP/1.1 400 "))
    }

    @Test func stalledHeaderIsClosedAtTheTimeoutWithoutAResponse() throws {
        let server = try LoopbackRelay { $0.connection.headerTimeoutMs = 200 }
        let stalled = RawSocket(port: server.port)
        stalled.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")
        let start = monotonicMs()
        // Meanwhile another client is served promptly.
        let good = RawSocket(port: server.port)
        good.send(Self.healthRequest)
        #expect(server.pump { good.poll(); return good.eof })
        #expect(good.text.hasPrefix("HTTP/1.1 200 "))
        #expect(!stalled.eof)
        #expect(server.pump { stalled.poll(); return stalled.eof })
        let elapsed = monotonicMs() - start
        #expect(elapsed >= 190 && elapsed < 2_000)
        #expect(stalled.received.isEmpty)
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        let server = try LoopbackRelay()
        let c = RawSocket(port: server.port)
        c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(server.pump { c.poll(); return c.eof })
        let statuses = c.text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { String($0.prefix(3)) }
        #expect(statuses == ["200", "404", "200"])
    }
}
