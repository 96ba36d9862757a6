import CEpoll
import Glibc
import Testing
@testable import RelayReactor

/// The one timer heap and its timerfd (docs/architecture.md). Deadlines are explicit
/// milliseconds, so ordering is tested without clocks; the timerfd's arming is read back with
/// `timerfd_gettime`, and a past deadline is awaited with `poll`, never slept for.
@Suite struct TimerQueueTests {
    func drain(_ q: TimerQueue, now: Int64) -> [TimerEntry] {
        var due: [TimerEntry] = []
        q.popDue(now: now, into: &due)
        return due
    }

    /// Milliseconds until the timerfd fires; 0 when disarmed.
    func armedInMs(_ q: TimerQueue) -> Int64 {
        var spec = itimerspec()
        #expect(timerfd_gettime(q.fd, &spec) == 0)
        return Int64(spec.it_value.tv_sec) * 1000 + Int64(spec.it_value.tv_nsec) / 1_000_000
    }

    /// Waits (bounded) for the timerfd to become readable, as epoll would see it.
    func fires(_ q: TimerQueue, withinMs timeout: Int32) -> Bool {
        var p = pollfd(fd: q.fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, timeout) == 1
    }

    @Test func popsInDeadlineOrderWhateverTheScheduleOrder() throws {
        let q = try TimerQueue()
        var seed: UInt64 = 42
        var scheduled: [Int64: Int] = [:]
        for key in 0..<2_000 as Range<UInt64> {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let deadline = Int64(seed >> 33 % 10_000)
            scheduled[deadline, default: 0] += 1
            q.schedule(at: deadline, key: key, kind: UInt8(key % 8))
        }
        #expect(q.count == 2_000)
        // Pop in slices, as the loop does: each slice is exactly what is due, in order.
        var popped: [Int64: Int] = [:]
        var last: Int64 = .min
        for now in stride(from: Int64(-1), through: 10_095, by: 97) {  // the last slice passes 9,999
            let due = drain(q, now: now)
            for e in due {
                #expect(e.deadline <= now && e.deadline >= last)
                last = e.deadline
                popped[e.deadline, default: 0] += 1
            }
            #expect(q.count == scheduled.filter { $0.key > now }.values.reduce(0, +))
        }
        #expect(q.count == 0)
        #expect(popped == scheduled)
    }

    @Test func anEntryIsDueAtItsDeadlineNotBefore() throws {
        let q = try TimerQueue()
        q.schedule(at: 1_000, key: 7, kind: 3)
        #expect(drain(q, now: 999).isEmpty)
        let due = drain(q, now: 1_000)
        #expect(due.count == 1 && due[0].key == 7 && due[0].kind == 3 && due[0].deadline == 1_000)
        #expect(drain(q, now: .max).isEmpty)
    }

    /// An entry is 16 bytes (an idle connection keeps one) and gives back what it was made with;
    /// deadlines outside 40 bits are kept at the nearest end.
    @Test func anEntryKeepsDeadlineOwnerAndKindIn16Bytes() throws {
        #expect(MemoryLayout<TimerEntry>.stride == 16)
        let e = TimerEntry(deadline: 123_456_789_012, key: .max, kind: 0xAB, owner: TimerEntry.maxOwner)
        #expect(e.deadline == 123_456_789_012 && e.key == .max && e.kind == 0xAB && e.owner == TimerEntry.maxOwner)
        #expect(TimerEntry(deadline: -5, key: 1, kind: 1).deadline == 0)
        #expect(TimerEntry(deadline: .max, key: 1, kind: 1).deadline == TimerEntry.maxDeadline)
        let q = try TimerQueue()
        q.schedule(at: .max, key: 1, kind: 1, owner: 2)
        q.schedule(at: -5, key: 2, kind: 1, owner: 3)
        #expect(q.nextDeadline == 0)
        #expect(drain(q, now: -1).isEmpty)
        #expect(drain(q, now: 0).map(\.key) == [2] && q.nextDeadline == TimerEntry.maxDeadline)
        #expect(drain(q, now: .max).map(\.owner) == [2] && q.nextDeadline == .max)
    }

    /// Equal deadlines come due in the same pop. Their order among themselves is the heap's,
    /// not the scheduling order: no owner may rely on it.
    @Test func equalDeadlinesComeDueTogether() throws {
        let q = try TimerQueue()
        for key in 1...50 as ClosedRange<UInt64> { q.schedule(at: 500, key: key, kind: 1) }
        q.schedule(at: 499, key: 100, kind: 1)
        q.schedule(at: 501, key: 200, kind: 1)
        #expect(drain(q, now: 499).map(\.key) == [100])
        let due = drain(q, now: 500)
        #expect(Set(due.map(\.key)) == Set(1...50) && due.count == 50)
        #expect(drain(q, now: 501).map(\.key) == [200])
    }

    /// Nothing is removed early (lazy cancellation): re-arming schedules a second entry, both
    /// come due, and the owner tells the current one by its own state.
    @Test func rearmingLeavesTheOldEntryForTheOwnerToIgnore() throws {
        let q = try TimerQueue()
        q.schedule(at: 100, key: 1, kind: 2)
        q.schedule(at: 300, key: 1, kind: 2)  // the owner pushed its deadline back
        #expect(q.count == 2)
        #expect(drain(q, now: 100).map(\.deadline) == [100])
        #expect(drain(q, now: 300).map(\.deadline) == [300])
    }

    @Test func theTimerfdIsArmedAtTheEarliestDeadline() throws {
        let q = try TimerQueue()
        q.rearm()
        #expect(armedInMs(q) == 0, "an empty queue leaves the timerfd disarmed")
        let now = monotonicMs()
        q.schedule(at: now + 60_000, key: 1, kind: 1)
        q.rearm()
        #expect((58_000...60_000).contains(armedInMs(q)))
        q.schedule(at: now + 30_000, key: 2, kind: 1)
        q.rearm()
        #expect((28_000...30_000).contains(armedInMs(q)), "an earlier deadline moves it forward")
        q.schedule(at: now + 90_000, key: 3, kind: 1)
        q.rearm()
        #expect((28_000...30_000).contains(armedInMs(q)), "a later one leaves it")
        #expect(drain(q, now: now + 30_000).map(\.key) == [2])
        q.rearm()
        #expect((58_000...60_000).contains(armedInMs(q)), "popping the head re-arms for the next")
        #expect(drain(q, now: .max).count == 2)
        q.rearm()
        #expect(armedInMs(q) == 0, "and nothing left disarms it")
        #expect(!fires(q, withinMs: 0))
    }

    /// A deadline already past (even 0 or negative, where 0 would disarm) fires at once; after
    /// `acknowledge` an entry still in the heap arms the timerfd again, so a wakeup is never lost.
    @Test func aPastDeadlineFiresAndAcknowledgeReArms() throws {
        let q = try TimerQueue()
        for deadline: Int64 in [monotonicMs() - 1, 0, -5] {
            q.schedule(at: deadline, key: 1, kind: 1)
            q.rearm()
            #expect(fires(q, withinMs: 5_000), "deadline \(deadline)")
            q.acknowledge()
            #expect(!fires(q, withinMs: 0), "acknowledge drains the expiry count")
            q.rearm()
            #expect(fires(q, withinMs: 5_000), "still due, so armed again")
            q.acknowledge()
            #expect(drain(q, now: monotonicMs()).count == 1)
            q.rearm()
            #expect(armedInMs(q) == 0)
        }
    }
}

/// How the reactor delivers timer entries: to the registration that scheduled them, never to a
/// registration that replaced it in the same slot, and an owner's entries to that owner alone.
@Suite struct ReactorTimerDeliveryTests {
    final class Recorder: EventHandler {
        var fired: [UInt8] = []
        override func handleEvent(_ events: UInt32) {}
        override func timerFired(kind: UInt8, now: Int64) { fired.append(kind) }
    }

    enum FirstKind: UInt8 { case a, b }
    enum SecondKind: UInt8 { case only }

    @Test func staleEntriesAreSkippedAndOwnerEntriesGoToTheirOwner() throws {
        let reactor = try Reactor()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { _ = close(fds[0]); _ = close(fds[1]) }
        let gone = Recorder(), live = Recorder(), successor = Recorder()
        let goneToken = try reactor.register(fd: fds[0], events: Reactor.readable, handler: gone)
        let past = reactor.now - 1
        reactor.schedule(goneToken, at: past, kind: 4)
        try reactor.deregister(fd: fds[0], token: goneToken)
        // The freed slot is reused at once: the old entry names the old generation.
        let successorToken = try reactor.register(fd: fds[0], events: Reactor.readable, handler: successor)
        #expect(successorToken != goneToken)
        let liveToken = try reactor.register(fd: fds[1], events: 0, handler: live)
        reactor.schedule(liveToken, at: past, kind: 5)
        reactor.schedule(liveToken, at: past + 120_000, kind: 6)
        // An owner's kind 0 with the live token's key is still the owner's, not the fd handler's.
        let owner = TimerRecorder<FirstKind>(reactor)
        owner.handle.schedule(.a, at: past, key: liveToken.raw)
        reactor.runOnce(timeoutMs: 0)
        #expect(live.fired == [5], "due entries only")
        #expect(gone.fired.isEmpty && successor.fired.isEmpty)
        #expect(owner.fired.map(\.kind) == [.a] && owner.fired.map(\.key) == [liveToken.raw])
        #expect(reactor.timers.count == 1)
    }

    @Test(arguments: [false, true])
    func eachOwnerGetsItsOwnEntriesWhateverTheRegistrationOrder(secondFirst: Bool) throws {
        let reactor = try Reactor()
        var first: TimerRecorder<FirstKind>!
        var second: TimerRecorder<SecondKind>!
        if secondFirst {
            second = TimerRecorder(reactor)
            first = TimerRecorder(reactor)
        } else {
            first = TimerRecorder(reactor)
            second = TimerRecorder(reactor)
        }
        let past = reactor.now - 10
        // Same keys and raw kinds on both sides: only the owner tells them apart.
        first.handle.schedule(.b, at: past + 2, key: 7)
        second.handle.schedule(.only, at: past + 1, key: 7)
        first.handle.schedule(.a, at: past, key: 1)
        reactor.runOnce(timeoutMs: 0)
        #expect(first.fired.map(\.kind) == [.a, .b] && first.fired.map(\.key) == [1, 7])
        #expect(second.fired.map(\.kind) == [.only] && second.fired.map(\.key) == [7])
    }

    @Test func aFullHeapDropsStaleEntriesInsteadOfGrowing() throws {
        let q = try TimerQueue()
        q.isStale = { $0.kind == 9 }
        let capacity = q.capacity
        // Fill the storage exactly, every other entry stale, deadlines descending (worst order).
        for i in 0..<capacity {
            q.schedule(at: Int64(10 * (capacity - i)), key: UInt64(i), kind: i % 2 == 0 ? 9 : 1)
        }
        #expect(q.count == capacity && q.capacity == capacity)
        q.schedule(at: 5, key: 999_999, kind: 1)
        #expect(q.capacity == capacity, "the stale half made room: no doubling")
        #expect(q.count == capacity / 2 + 1)
        #expect(q.nextDeadline == 5)
        var due: [TimerEntry] = []
        q.popDue(now: TimerEntry.maxDeadline, into: &due)
        #expect(due.allSatisfy { $0.kind == 1 })
        #expect(due.count == capacity / 2 + 1)
        #expect(due.map(\.deadline) == due.map(\.deadline).sorted(), "still a heap after the rebuild")
    }

    @Test func aFullHeapWithFewStaleEntriesGrowsSoScansStayRare() throws {
        let q = try TimerQueue()
        var asked = 0
        let capacity = q.capacity
        var pushed = 0
        // Entries go stale as time passes (connections close), a trickle at each full heap: all
        // but the newest capacity − 2.
        q.isStale = { e in asked += 1; return Int(e.key) + capacity - 2 < pushed }
        let pushes = 4 * capacity
        for i in 0..<pushes {
            pushed = i
            q.schedule(at: Int64(i), key: UInt64(i), kind: 1)
        }
        // It grows (by a quarter) after a scan that freed little, so a scan of n entries comes
        // after n/5 pushes at least: at most 5 asks per push. Scanning again whenever the few
        // freed places fill would ask about once per entry per push.
        #expect(asked <= 5 * pushes, "asked \(asked) times for \(pushes) pushes")
        #expect(q.count < pushes)
    }

    @Test func aFullHeapWithNothingStaleGrows() throws {
        let q = try TimerQueue()
        var asked = 0
        q.isStale = { _ in asked += 1; return false }
        let capacity = q.capacity
        for i in 0...capacity { q.schedule(at: Int64(i), key: UInt64(i), kind: 1) }
        #expect(asked == capacity, "asked once per entry, at the one would-be doubling")
        #expect(q.capacity > capacity && q.count == capacity + 1)
    }

    @Test func theReactorDropsHTTPPhaseEntriesOfGoneHandlersAndOwnersWhenFull() throws {
        final class Handler: EventHandler {
            var over = false
            override func timerIsStale(kind: UInt8) -> Bool { over && kind == 1 }
        }
        let reactor = try Reactor()
        var (r, w): (Int32, Int32) = (0, 0)
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        (r, w) = (fds[0], fds[1])
        defer { _ = close(r); _ = close(w) }
        let h = Handler()
        let token = try reactor.register(fd: r, events: Reactor.readable, handler: h)
        var gone: TimerRecorder<FirstKind>? = TimerRecorder(reactor)
        let far = reactor.now + 60_000
        let capacity = reactor.timers.capacity
        var scheduled = 0
        // A third each: the handler's kind 1 (over below), its kind 2 (kept), the owner's (gone below).
        while scheduled + 3 <= capacity {
            reactor.schedule(token, at: far, kind: 1)
            reactor.schedule(token, at: far, kind: 2)
            gone!.handle.schedule(.a, at: far)
            scheduled += 3
        }
        while scheduled < capacity { reactor.schedule(token, at: far, kind: 2); scheduled += 1 }
        h.over = true
        gone = nil
        reactor.schedule(token, at: far, kind: 2)
        #expect(reactor.timers.capacity == capacity)
        #expect(reactor.timers.count == capacity - 2 * (capacity / 3) + 1, "kind 2 entries kept, the rest dropped")
        try reactor.deregister(fd: r, token: token)
    }

    @Test func entriesOfAnOwnerThatIsGoneFireIntoNothing() throws {
        let reactor = try Reactor()
        var gone: TimerRecorder<FirstKind>? = TimerRecorder(reactor)
        let stays = TimerRecorder<FirstKind>(reactor)
        gone!.handle.schedule(.a, at: reactor.now - 1)
        weak var weakGone = gone
        gone = nil
        #expect(weakGone == nil, "the reactor does not keep an owner alive")
        stays.handle.schedule(.b, at: reactor.now - 1)
        reactor.runOnce(timeoutMs: 0)
        #expect(stays.fired.map(\.kind) == [.b])
        #expect(reactor.timers.count == 0)
    }
}

/// A timer owner that records what it is handed (tests).
final class TimerRecorder<Kind: RawRepresentable>: TimerOwner where Kind.RawValue == UInt8 {
    var fired: [(kind: Kind, key: UInt64)] = []
    var handle: TimerHandle<Kind>!
    init(_ reactor: Reactor) { handle = reactor.registerTimers(for: self) }
    func timerFired(_ kind: Kind, key: UInt64, now: Int64) { fired.append((kind, key)) }
}
