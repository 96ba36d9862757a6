import CEpoll
import RelaySystem

/// An object that owns a registered descriptor: a listener, a connection, the signal channel.
/// A class, not a protocol: the reactor calls it borrowed (`Unmanaged._withUnsafeGuaranteedRef`),
/// which a protocol existential cannot be, so a dispatch costs no retain and release.
open class EventHandler {
    public init() {}
    /// Readiness bits (`Reactor.readable`, `.writable`, `.hangup`) for this handler's fd.
    open func handleEvent(_ events: UInt32) {}
    /// A timer this handler scheduled with `Reactor.schedule(_:at:kind:)` came due.
    open func timerFired(kind: UInt8, now: Int64) {}
    /// Whether a pending timer of `kind` would now do nothing when it fires, so the reactor may
    /// drop it unfired (only when its heap is full). A handler that keeps its own "entry pending"
    /// flag for a kind must answer false for that kind.
    open func timerIsStale(kind: UInt8) -> Bool { false }
    /// Called once after `Reactor.markDirty(fd:)`: right after the current event in a small
    /// batch, else at the end of the loop iteration (write coalescing).
    open func flushTick() {}
}

/// A handle to a registration: slot index (the descriptor's number) plus generation, packed into
/// `epoll_event.data.u64` so an event for a slot that was freed and reused in the same batch is
/// recognised as stale (NIO registration ids, nginx's instance bit).
public struct Token: Hashable, Sendable {
    public let raw: UInt64
    package init(slot: UInt32, generation: UInt32) { raw = UInt64(generation) << 32 | UInt64(slot) }
    package init(raw: UInt64) { self.raw = raw }
    package var slot: Int { Int(UInt32(truncatingIfNeeded: raw)) }
    package var generation: UInt32 { UInt32(truncatingIfNeeded: raw >> 32) }
}

/// The single-threaded epoll loop. Owns the timer queue; every socket of the process is
/// registered here. Level-triggered: a handler that does bounded work per event is called
/// again on the next iteration if more remains (fairness across connections).
public final class Reactor {
    public static let readable = EPOLLIN.rawValue
    public static let writable = EPOLLOUT.rawValue
    public static let hangup = EPOLLHUP.rawValue | EPOLLERR.rawValue | EPOLLRDHUP.rawValue

    private struct Slot {
        /// Retained by the slot (`register`); released through `retired`.
        var handler: Unmanaged<EventHandler>?
        var generation: UInt32
    }

    private let epollFD: FileDescriptor
    public let timers: TimerQueue
    /// By descriptor number, as nginx and libev index theirs: the kernel hands out the lowest
    /// free number, so the table is as dense as the open descriptors, needs no free list, and a
    /// registered handler can rebuild its token from its fd (`token(ofFD:)`) instead of storing it.
    private var slots: [Slot] = []
    public private(set) var registrationCount = 0
    /// Handlers deregistered during this loop iteration, released at its end: a handler called
    /// borrowed may deregister itself (a close) and must live until its call returns. Also the
    /// objects handed to `keepUntilIterationEnd`.
    private var retired: [Unmanaged<AnyObject>] = []
    private var dirty: UnsafeMutablePointer<Int32>
    private var dirtyCapacity = 64
    private var dirtyCount = 0  // live prefix of `dirty`; the block is reused, grown by doubling
    private var dueTimers: [TimerEntry] = []
    /// Handlers that asked for `flushTick()` once the iteration's work and writes are done
    /// (`callAtIterationEnd`): output batched per iteration, such as log lines.
    private var iterationEnd: [EventHandler] = []
    private var running = false
    /// Registered timer owners by id − 1 (id 0 is the fd handlers'): a dispatcher per owner,
    /// called only while the owner's registration says it is alive. Owners are few and made
    /// at boot; ids are not reused.
    private var timerOwners: [(liveness: TimerRegistration.Liveness, dispatch: (_ key: UInt64, _ kind: UInt8, _ now: Int64) -> Void)] = []
    /// Counts loop iterations; per-iteration budgets (TLS handshakes) reset when it changes.
    public private(set) var iteration: UInt64 = 0
    /// How long iterations take (docs/operations.md loop-latency histogram).
    public private(set) var loopLatency = LoopLatency()
    /// Cached monotonic time of the current iteration.
    public private(set) var now: Int64 = monotonicMs()

    public init() throws(Errno) {
        let fd = try syscallChecked("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        epollFD = FileDescriptor(fd)
        dirty = .allocate(capacity: dirtyCapacity)
        timers = try TimerQueue()
        try addRaw(fd: timers.fd, events: Reactor.readable, data: UInt64.max)
        timers.isStale = { [unowned(unsafe) self] entry in self.timerIsStale(entry) }
    }

    /// An entry that would fire into nothing (`TimerQueue.isStale`): a dead owner, a handler no
    /// longer registered, or one that says the kind is over (`EventHandler.timerIsStale`).
    private func timerIsStale(_ e: TimerEntry) -> Bool {
        if e.owner != 0 { return !timerOwners[Int(e.owner) - 1].liveness.ownerAlive }
        guard let h = registered(Token(raw: e.key)) else { return true }
        return h._withUnsafeGuaranteedRef { $0.timerIsStale(kind: e.kind) }
    }

    // MARK: registration

    public func register(fd: Int32, events: UInt32, handler: EventHandler) throws(Errno) -> Token {
        precondition(fd >= 0, "register needs an open descriptor")
        let i = Int(fd)
        while slots.count <= i { slots.appendGrowingGently(Slot(handler: nil, generation: 1)) }
        // A slot still held names a descriptor closed without `deregister`: its registration
        // ended with it (epoll(7)), and the kernel has handed the number out again. It goes
        // once the new one is in the set (an EEXIST says it was alive after all: it stays).
        // A new registration takes a generation of its own, never the one a token rebuilt
        // between its fd's release and its close could carry.
        let stale = slots[i].handler != nil
        let generation = Reactor.next(stale ? Reactor.next(slots[i].generation) : slots[i].generation)
        let token = Token(slot: UInt32(i), generation: generation)
        try addRaw(fd: fd, events: events, data: token.raw)
        if stale { release(Token(slot: UInt32(i), generation: slots[i].generation)) }
        slots[i] = Slot(handler: .passRetained(handler), generation: generation)
        registrationCount += 1
        return token
    }

    /// The token of what is registered under `fd` now (a descriptor is registered once at a time);
    /// one that matches nothing for a closed (negative) or never registered descriptor.
    @inline(__always)
    public func token(ofFD fd: Int32) -> Token {
        let i = Int(fd)
        guard i >= 0, i < slots.count else { return Token(raw: 0) }  // generation 0 is never issued
        return Token(slot: UInt32(i), generation: slots[i].generation)
    }

    /// Changes the readiness `fd` is watched for. A failure (ENOMEM; ENOENT or EBADF would be a
    /// bug) leaves the old interest in place: the caller cannot rely on the fd's events any
    /// more and should close it.
    public func modify(fd: Int32, token: Token, events: UInt32) throws(Errno) {
        var ev = epoll_event(events: events, data: epoll_data_t(u64: token.raw))
        try syscallChecked("epoll_ctl") { epoll_ctl(epollFD.raw, EPOLL_CTL_MOD, fd, &ev) }
    }

    /// Removes the fd from epoll and frees the slot; call before closing the fd. The slot is
    /// freed even when epoll_ctl fails (the fd was not in the set): the caller closes the fd
    /// either way, which also takes it out of the set.
    public func deregister(fd: Int32, token: Token) throws(Errno) {
        release(token)
        try syscallChecked("epoll_ctl") { epoll_ctl(epollFD.raw, EPOLL_CTL_DEL, fd, nil) }
    }

    /// For a socket the process made itself (accepted or dialled) and closes right after:
    /// closing it removes it from the epoll set (epoll(7): a registration ends when every
    /// descriptor of its open file description is closed; the relay never duplicates or forks
    /// them), so this only frees the slot — one `epoll_ctl` less per connection. An event already
    /// fetched for it is skipped by the token's generation. Not for inherited descriptors (a
    /// socket-activated listener: systemd keeps its own copy, and the registration would outlive
    /// our close).
    public func deregisterBeforeClose(token: Token) {
        release(token)
    }

    private func release(_ token: Token) {
        let i = token.slot
        guard i < slots.count, slots[i].generation == token.generation, let h = slots[i].handler else { return }
        retired.append(.fromOpaque(h.toOpaque()))
        slots[i].handler = nil
        slots[i].generation = Reactor.next(slots[i].generation)
        registrationCount -= 1
    }

    /// Generations run 1, 2, …, wrapping past 0: a token of generation 0 matches nothing.
    private static func next(_ generation: UInt32) -> UInt32 {
        generation == .max ? 1 : generation + 1
    }

    private func addRaw(fd: Int32, events: UInt32, data: UInt64) throws(Errno) {
        var ev = epoll_event(events: events, data: epoll_data_t(u64: data))
        try syscallChecked("epoll_ctl") { epoll_ctl(epollFD.raw, EPOLL_CTL_ADD, fd, &ev) }
    }

    public func handler(for token: Token) -> EventHandler? {
        registered(token)?.takeUnretainedValue()
    }

    /// The handler under `token`, unretained: alive at least until the end of this loop iteration.
    @inline(__always)
    private func registered(_ token: Token) -> Unmanaged<EventHandler>? {
        let i = token.slot
        guard i < slots.count, slots[i].generation == token.generation else { return nil }
        return slots[i].handler
    }

    /// Keeps `object` alive until the end of this loop iteration (or of the next, when called
    /// outside the loop): for an object something on the stack may be calling borrowed — a
    /// connection's delegate when the connection closes in the middle of that delegate's callback.
    public func keepUntilIterationEnd(_ object: AnyObject) {
        retired.append(.passRetained(object))
    }

    private func releaseRetired() {
        // One by one: a handler's deinit may deregister another.
        while let h = retired.popLast() { h.release() }
    }

    // MARK: timers and write coalescing

    /// Schedules `timerFired(kind:now:)` on the handler registered under `token`.
    /// Stale entries (the registration is gone) are skipped when they come due.
    public func schedule(_ token: Token, at deadline: Int64, kind: UInt8) {
        timers.schedule(at: deadline, key: token.raw, kind: kind)
    }

    /// Registers a timer owner; its entries come back to it alone, as its own `TimerKind`.
    public func registerTimers<Owner: TimerOwner>(for owner: Owner) -> TimerHandle<Owner.TimerKind> {
        precondition(timerOwners.count < Int(TimerEntry.maxOwner), "more timer owners than a timer entry can name")
        let registration = TimerRegistration(id: UInt32(timerOwners.count + 1))
        // The owner is reached only while its registration (kept by its handle) is alive.
        timerOwners.append((registration.liveness, { [unowned(unsafe) owner] key, raw, now in
            guard let kind = Owner.TimerKind(rawValue: raw) else { return }
            owner.timerFired(kind, key: key, now: now)
        }))
        return TimerHandle(reactor: self, registration: registration)
    }

    /// Asks for `flushTick()` on the handler registered under `fd` at the end of this iteration
    /// (after the current event when the batch is small: `Reactor.flushPerEventMaxBatch`); the
    /// caller keeps its own "already marked" flag so it is listed once per tick. Descriptor
    /// numbers, not references: no ARC per message, and a handler gone meanwhile is skipped. One
    /// registered under the same number later in the iteration gets that `flushTick` too, which
    /// only writes what it queued a little earlier than it would have.
    public func markDirty(fd: Int32) {
        if dirtyCount == dirtyCapacity { growDirty() }
        dirty[dirtyCount] = fd
        dirtyCount += 1
    }

    /// Asks for `flushTick()` on `handler` once this iteration's events, timers and coalesced
    /// writes are done — for a handler without a registration to mark (a log file, which epoll
    /// cannot watch). The caller keeps its own "already asked" flag; the reactor holds the
    /// handler until the call.
    public func callAtIterationEnd(_ handler: EventHandler) {
        iterationEnd.append(handler)
    }

    @inline(never)
    private func runIterationEnd() {
        // A call may ask again (a log line written while flushing): loop until quiet.
        var i = 0
        while i < iterationEnd.count {
            iterationEnd[i].flushTick()
            i += 1
        }
        iterationEnd.removeAll(keepingCapacity: true)
    }

    @inline(never)
    private func growDirty() {
        let grown = UnsafeMutablePointer<Int32>.allocate(capacity: dirtyCapacity * 2)
        grown.update(from: dirty, count: dirtyCount)
        dirty.deallocate()
        dirty = grown
        dirtyCapacity *= 2
    }

    // MARK: the loop

    public func stop() { running = false }

    public func run() {
        running = true
        while running { runOnce(timeoutMs: -1) }
    }

    /// An epoll batch of at most this many events flushes each connection's queued frames right
    /// after the event that queued them (as a plain forwarder would); a larger batch — a loaded
    /// loop — flushes once at the end of the iteration, so a destination fed by several sources
    /// gets one write. At partial load a message thus never waits behind the other reads of its
    /// batch (docs/benchmarks.md, L1).
    public static let flushPerEventMaxBatch = 8

    private static let eventCapacity = 512
    private let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Reactor.eventCapacity)

    /// One loop iteration: wait up to `timeoutMs` (-1: until an event), dispatch, fire due
    /// timers, flush coalesced writes. Tests drive the loop with it, one step at a time.
    public func runOnce(timeoutMs: Int32) {
        if !retired.isEmpty { releaseRetired() }  // deregistered outside the loop
        timers.rearm()
        iteration &+= 1
        let n = epoll_wait(epollFD.raw, events, Int32(Reactor.eventCapacity), timeoutMs)
        let startNs = monotonicNs()
        now = Int64(startNs / 1_000_000)
        if n < 0 {
            if pyry_errno() == EINTR { return }
            fatalError("epoll_wait failed: errno \(pyry_errno())")
        }
        let flushPerEvent = n <= Reactor.flushPerEventMaxBatch
        for i in 0..<Int(n) {
            let ev = events[i]
            let data = ev.data.u64
            if data == UInt64.max {
                timers.acknowledge()
                continue
            }
            guard let h = registered(Token(raw: data)) else { continue }  // stale event
            h._withUnsafeGuaranteedRef { $0.handleEvent(ev.events) }
            if flushPerEvent { flushDirty() }
        }
        if timers.nextDeadline <= now { fireTimers() }
        flushDirty()
        if !iterationEnd.isEmpty { runIterationEnd() }
        if !retired.isEmpty { releaseRetired() }
        loopLatency.record(monotonicNs() &- startNs)
    }

    deinit {
        for s in slots { s.handler?.release() }
        releaseRetired()
        events.deallocate()
        dirty.deallocate()
    }

    /// Fires the timers due at the iteration's `now` (one clock read per iteration: a timer
    /// that comes due while this iteration works fires in the next, which the timerfd wakes).
    private func fireTimers() {
        timers.popDue(now: now, into: &dueTimers)
        guard !dueTimers.isEmpty else { return }
        for e in dueTimers {
            if e.owner != 0 {
                let o = timerOwners[Int(e.owner) - 1]
                if o.liveness.ownerAlive { o.dispatch(e.key, e.kind, now) }
            } else if let h = registered(Token(raw: e.key)) {
                h._withUnsafeGuaranteedRef { $0.timerFired(kind: e.kind, now: now) }
            }
        }
        dueTimers.removeAll(keepingCapacity: true)
    }

    @inline(__always)
    private func flushDirty() {
        if dirtyCount > 0 { flushDirtyList() }
    }

    private func flushDirtyList() {
        // A flush may mark more handlers dirty (a close answered by another close): loop until quiet.
        var i = 0
        while i < dirtyCount {
            let slot = Int(UInt32(bitPattern: dirty[i]))  // a closed connection's -1 is past the end
            if slot < slots.count, let h = slots[slot].handler { h._withUnsafeGuaranteedRef { $0.flushTick() } }
            i += 1
        }
        dirtyCount = 0
    }
}
