import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport

/// The small value types a `Connection` is made of: the close handshake (RFC 6455 §7.1), its
/// deadlines, the compact client address; and the reactor's refusal of a bad `epoll_ctl`.
@Suite struct ConnectionPartsTests {
    @Test func closeHandshakeRecordsWhoClosedFirstAndTheCodes() {
        var ours = CloseHandshake.none
        #expect(ours.localCode == nil && ours.peerCode == nil && !ours.initiatedByPeer)
        ours = .local(.goingAway, answer: nil)
        ours.peerSent(.normal)  // the peer answers ours
        #expect(ours == .local(.goingAway, answer: .normal))
        #expect(ours.localCode == .goingAway && ours.peerCode == .normal && !ours.initiatedByPeer)

        var theirs = CloseHandshake.none
        theirs.peerSent(.policyViolation)  // the peer opens it; ours echoes (RFC 6455 §5.5.1)
        #expect(theirs.initiatedByPeer && theirs.localCode == .policyViolation && theirs.peerCode == .policyViolation)
        var noCode = CloseHandshake.none
        noCode.peerSent(nil)  // no status code in, none out
        #expect(noCode == .peer(nil) && noCode.localCode == nil && noCode.initiatedByPeer)
    }

    @Test func unarmedDeadlineNeverPassesAndZeroIsAnOrdinaryTime() {
        #expect(!Deadline.unarmed.isArmed && !Deadline.unarmed.hasPassed(.max - 1))
        let zero = Deadline(ms: 0)
        #expect(zero.isArmed && zero.hasPassed(0) && !zero.hasPassed(-1))
    }

    @Test func ipEndpointKeepsWhatLogsAndLimitsNeed() throws {
        let v4 = IPEndpoint(try #require(SocketAddress(ip: "203.0.113.7", port: 443)))
        #expect(v4.ipString == "203.0.113.7" && v4.port == 443)
        let v6 = IPEndpoint(try #require(SocketAddress(ip: "2001:db8::1", port: 8443)))
        #expect(v6.ipString == "2001:db8::1" && v6.port == 8443)
        // A dual-stack socket's IPv4 peer shows as IPv4, as SocketAddress.ipString shows it.
        let mapped = IPEndpoint(try #require(SocketAddress(ip: "::ffff:192.0.2.1", port: 1)))
        #expect(mapped.ipString == "192.0.2.1")
        #expect(IPEndpoint(SocketAddress()).ipString == "")
        #expect(MemoryLayout<IPEndpoint>.size <= 24)
    }

    @Test func modifyAndDeregisterReportAnFdEpollDoesNotWatch() throws {
        let reactor = try Reactor()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        let token = try reactor.register(fd: fds[0], events: Reactor.readable, handler: Idle())
        #expect(throws: Errno.self) { try reactor.modify(fd: fds[1], token: token, events: Reactor.readable) }
        try reactor.deregister(fd: fds[0], token: token)
        #expect(reactor.registrationCount == 0)
        // Already out of the set: the error says so, and the slot stays free.
        let again = try reactor.register(fd: fds[1], events: Reactor.readable, handler: Idle())
        #expect(throws: Errno.self) { try reactor.deregister(fd: fds[0], token: again) }
        #expect(reactor.registrationCount == 0)
    }

    final class Idle: EventHandler {
        override func handleEvent(_ events: UInt32) {}
    }
}
