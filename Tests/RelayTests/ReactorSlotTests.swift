import CEpoll
import Testing
@testable import RelayReactor

/// The reactor keeps its registrations by descriptor number (`Reactor.token(ofFD:)`): a handler
/// finds its token from its fd, a number the kernel hands out again never reaches the handler
/// that had it before, and a deregistered handler's queued flush is skipped.
@Suite struct ReactorSlotTests {
    /// Counts its events (reading the pipe dry) and flush ticks; notes when it is freed.
    final class Counter: EventHandler {
        let fd: Int32
        var events = 0
        var flushes = 0
        var onEvent: (() -> Void)?
        let freed: Flag
        init(fd: Int32, freed: Flag = Flag()) {
            self.fd = fd
            self.freed = freed
        }
        override func handleEvent(_ events: UInt32) {
            var buf = [UInt8](repeating: 0, count: 16)
            _ = read(fd, &buf, 16)
            self.events += 1
            onEvent?()
        }
        override func flushTick() { flushes += 1 }
        deinit { freed.value = true }
    }

    final class Flag { var value = false }

    static func pipePair() -> [Int32] {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        return fds
    }

    static func poke(_ fd: Int32) {
        var one: UInt8 = 1
        precondition(write(fd, &one, 1) == 1)
    }

    @Test func aHandlerFindsItsTokenFromItsFdAndAClosedFdMatchesNothing() throws {
        let reactor = try Reactor()
        let fds = Self.pipePair()
        defer { _ = close(fds[1]) }
        let h = Counter(fd: fds[0])
        let token = try reactor.register(fd: fds[0], events: Reactor.readable, handler: h)
        #expect(reactor.token(ofFD: fds[0]) == token)
        #expect(reactor.handler(for: reactor.token(ofFD: fds[0])) === h)
        #expect(reactor.handler(for: reactor.token(ofFD: -1)) == nil)
        #expect(reactor.handler(for: reactor.token(ofFD: fds[0] + 100)) == nil)
        reactor.deregisterBeforeClose(token: token)
        _ = close(fds[0])
        #expect(reactor.handler(for: reactor.token(ofFD: fds[0])) == nil)
        #expect(reactor.registrationCount == 0)
    }

    /// A token rebuilt between a release and the close (what a closing connection still holds)
    /// is not the token of the next registration under that number.
    @Test func theNextRegistrationUnderANumberHasAGenerationOfItsOwn() throws {
        let reactor = try Reactor()
        var fds = Self.pipePair()
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        let first = try reactor.register(fd: fds[0], events: Reactor.readable, handler: Counter(fd: fds[0]))
        reactor.deregisterBeforeClose(token: first)
        let afterRelease = reactor.token(ofFD: fds[0])
        _ = close(fds[0])
        fds[0] = dup(fds[1])  // the lowest free number: the one just closed
        #expect(fds[0] == first.slot.int32)
        let second = Counter(fd: fds[0])
        let token = try reactor.register(fd: fds[0], events: 0, handler: second)
        #expect(token != first && token != afterRelease)
        #expect(reactor.handler(for: afterRelease) == nil && reactor.handler(for: first) == nil)
        #expect(reactor.handler(for: token) === second)
    }

    /// A descriptor closed without `deregister` leaves its slot held; when the kernel hands the
    /// number out again, the new registration takes the slot, the old handler is let go and
    /// hears nothing more.
    @Test func aNumberClosedWithoutDeregisteringIsTakenOverByItsNextOwner() throws {
        let reactor = try Reactor()
        let old = Self.pipePair()
        let oldFreed = Flag()
        do {
            let h = Counter(fd: old[0], freed: oldFreed)
            _ = try reactor.register(fd: old[0], events: Reactor.readable, handler: h)
        }
        _ = close(old[0])  // out of the epoll set with it (epoll(7)); the slot still holds the handler
        _ = close(old[1])
        let fresh = Self.pipePair()
        defer { _ = close(fresh[0]); _ = close(fresh[1]) }
        #expect(fresh[0] == old[0])
        let h = Counter(fd: fresh[0])
        _ = try reactor.register(fd: fresh[0], events: Reactor.readable, handler: h)
        #expect(reactor.registrationCount == 1)
        Self.poke(fresh[1])
        reactor.runOnce(timeoutMs: 1000)
        #expect(h.events == 1)
        #expect(oldFreed.value)  // retired by the takeover, released at the end of the iteration
    }

    /// A flush queued under a handler's number is skipped when that handler is deregistered
    /// before the flush comes (a connection closed by a later event of the same iteration).
    @Test func aFlushQueuedForAHandlerDeregisteredMeanwhileIsSkipped() throws {
        let reactor = try Reactor()
        let a = Self.pipePair(), b = Self.pipePair()
        defer { for fd in a + b { _ = close(fd) } }
        let marked = Counter(fd: a[0]), closer = Counter(fd: b[0])
        let markedToken = try reactor.register(fd: a[0], events: Reactor.readable, handler: marked)
        _ = try reactor.register(fd: b[0], events: Reactor.readable, handler: closer)
        closer.onEvent = { [unowned reactor] in
            reactor.markDirty(fd: a[0])
            reactor.markDirty(fd: b[0])
            reactor.deregisterBeforeClose(token: markedToken)
        }
        Self.poke(b[1])
        reactor.runOnce(timeoutMs: 1000)
        #expect(closer.events == 1 && closer.flushes == 1)
        #expect(marked.flushes == 0)
        // A connection marks itself with its fd, -1 once closed: nothing to flush, no trap.
        reactor.markDirty(fd: -1)
        reactor.runOnce(timeoutMs: 0)
        #expect(closer.flushes == 1)
    }
}

private extension Int {
    var int32: Int32 { Int32(self) }
}
