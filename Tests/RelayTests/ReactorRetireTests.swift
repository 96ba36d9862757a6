import CEpoll
import Testing
@testable import RelayReactor

/// The reactor calls its handlers borrowed (no retain per dispatch), so a handler that
/// deregisters itself during its own event (a connection closing) must stay alive until the
/// call returns: the reactor keeps it until the end of the loop iteration, then lets it go.
@Suite struct ReactorRetireTests {
    /// On its event: deregisters itself, then checks it is still intact and records that.
    final class SelfClosing: EventHandler {
        let fd: Int32
        let reactor: Reactor
        var token = Token(raw: 0)
        let probe: Probe
        let marker = [UInt8](repeating: 7, count: 64)  // heap state a freed object would lose
        init(fd: Int32, reactor: Reactor, probe: Probe) {
            self.fd = fd
            self.reactor = reactor
            self.probe = probe
        }
        override func handleEvent(_ events: UInt32) {
            try? reactor.deregister(fd: fd, token: token)
            probe.aliveAfterDeregister = marker.allSatisfy { $0 == 7 }
        }
        deinit { probe.deinited = true }
    }

    final class Probe {
        var aliveAfterDeregister = false
        var deinited = false
    }

    /// A `SelfClosing` handler on the read end of `fds`, registered; only the reactor holds it
    /// once this returns.
    @discardableResult
    static func registered(_ fds: [Int32], _ reactor: Reactor, _ probe: Probe) throws -> Token {
        let h = SelfClosing(fd: fds[0], reactor: reactor, probe: probe)
        h.token = try reactor.register(fd: fds[0], events: Reactor.readable, handler: h)
        return h.token
    }

    @Test func aHandlerThatDeregistersItselfLivesUntilTheEndOfTheIteration() throws {
        let reactor = try Reactor()
        let probe = Probe()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        try Self.registered(fds, reactor, probe)  // only the reactor holds it now
        #expect(!probe.deinited)
        var one: UInt8 = 1
        #expect(write(fds[1], &one, 1) == 1)
        reactor.runOnce(timeoutMs: 1000)
        #expect(probe.aliveAfterDeregister)
        #expect(probe.deinited)  // released at the end of that iteration, not kept
        #expect(reactor.registrationCount == 0)
    }

    @Test func aHandlerDeregisteredOutsideTheLoopIsReleasedByTheNextIteration() throws {
        let reactor = try Reactor()
        let probe = Probe()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        try reactor.deregister(fd: fds[0], token: try Self.registered(fds, reactor, probe))
        reactor.runOnce(timeoutMs: 0)
        #expect(probe.deinited)
    }
}
