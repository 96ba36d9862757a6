import RelayCodecs

/// The forwarding rules as a pure state machine, beside `Registry` (which decides who is paired
/// with whom): the admission order of an upgrade (docs/protocol.md §3.3, docs/operations.md
/// "Admission limits"), the phone's outbox charge and the binary's water marks (docs/protocol.md
/// §7.5), shedding over `--max-buffered-bytes` (docs/operations.md "Memory") and the close notice
/// a binary hears when a phone goes (docs/protocol.md §8). No sockets, no clocks: the caller
/// feeds what happened, with the byte counts its sockets report, and carries out the answer.
///
/// What the rules remember of one connection is a `ForwardingState` the caller keeps in its own
/// record of that connection and passes in, so a message costs no lookup; the per-message
/// entries (`messageToBinary`, `messageToPhone`, `queuedToPhone`) return one small value and
/// allocate nothing. One thread only (the reactor's).
public final class ForwardingCore {
    /// Each phone's budget for bytes waiting to be written to it (`--phone-outbox-budget`).
    public let outboxBudget: Int
    /// Charged per queued message on top of its length (docs/protocol.md §7.5).
    public let perMessageOverhead: Int
    /// A binary's queue at or above this pauses its phones; at or below `lowWater` they resume.
    public let highWater: Int
    public let lowWater: Int
    /// The process-wide budget for queued and held bytes (`--max-buffered-bytes`).
    public let maxBufferedBytes: Int
    public let maxConnections: Int
    public let maxConnectionsPerIP: Int
    /// Sharded mode: upgrades for server-ids of other shards are refused 421.
    public let shard: ShardAssignment?

    package var rateLimiter = RateLimiter<ClientKey>()
    /// Live WebSockets per client key, and in all (docs/operations.md "Admission limits").
    package private(set) var perIP: [ClientKey: Int] = [:]
    public private(set) var liveConnections = 0
    /// Shutting down: every upgrade is refused 503.
    public private(set) var draining = false

    public init(
        outboxBudget: Int = Limits.phoneOutboxBudget,
        perMessageOverhead: Int = Limits.outboxPerMessageOverhead,
        highWater: Int = Limits.binaryHighWater,
        lowWater: Int = Limits.binaryLowWater,
        maxBufferedBytes: Int = Limits.maxBufferedBytes,
        maxConnections: Int = Limits.maxConnections,
        maxConnectionsPerIP: Int = Limits.maxConnectionsPerIP,
        shard: ShardAssignment? = nil
    ) {
        self.outboxBudget = outboxBudget
        self.perMessageOverhead = perMessageOverhead
        self.highWater = highWater
        self.lowWater = lowWater
        self.maxBufferedBytes = maxBufferedBytes
        self.maxConnections = maxConnections
        self.maxConnectionsPerIP = maxConnectionsPerIP
        self.shard = shard
    }

    // MARK: Admission

    /// An upgrade request to `endpoint` from the client `key` (nil: its address could not be
    /// read, which is refused like an empty rate-limit bucket). The order is docs/protocol.md's:
    /// rate limit 429 → global cap (or draining) 503 → per-client cap 429 → header gate 400 →
    /// shard 421 → RFC 6455 §4.2.1 checks (405/426/400) → 101. Admitting counts the connection
    /// against both caps until `connectionClosed(key:)`.
    public func admit(_ head: HTTPRequestHead, endpoint: Endpoint, key: ClientKey?, now: Int64) -> Admission {
        guard let key, rateLimiter.allow(key, now: now) else { return .refuse(.rateLimited) }
        if draining || liveConnections >= maxConnections { return .refuse(.overCapacity) }
        if perIP[key, default: 0] >= maxConnectionsPerIP { return .refuse(.clientOverCapacity) }
        guard UpgradeHeaderGate.admits(head, endpoint: endpoint) else { return .refuse(.badHeaders) }
        // The gate made sure the header is there, once.
        if let shard, !shard.owns(head.value("x-pyrycode-server")!) { return .refuse(.otherShard(shard)) }
        switch WebSocketHandshake.validate(head) {
        case .reject(let status, let extra):
            return .refuse(.handshake(status, extraHeaders: extra))
        case .accept(let acceptKey):
            perIP[key, default: 0] += 1
            liveConnections += 1
            return .admit(acceptKey: acceptKey)
        }
    }

    /// An admitted connection is gone: it no longer counts against the caps.
    public func connectionClosed(key: ClientKey) {
        liveConnections -= 1
        if let n = perIP[key], n > 1 { perIP[key] = n - 1 } else { perIP[key] = nil }
    }

    /// From now on every upgrade is refused 503 (docs/operations.md, shutdown).
    public func beginDrain() { draining = true }

    // MARK: Phone → binary: the binary's water marks

    /// A phone's message went into `binary`'s queue, which now holds `queuedBytes`. Answers
    /// `.pausePhones` once, when the queue reaches high water: stop reading all its phones.
    @inlinable
    public func messageToBinary(_ binary: inout ForwardingState, queuedBytes: Int) -> ForwardingAction {
        guard !binary.phonesPaused, queuedBytes >= highWater else { return .none }
        binary.paused = true
        return .pausePhones
    }

    /// `binary`'s queue shrank to `queuedBytes`. Answers `.resumePhones` once it is at or below
    /// low water after a pause.
    public func binaryDrained(_ binary: inout ForwardingState, queuedBytes: Int) -> ForwardingAction {
        guard binary.phonesPaused, queuedBytes <= lowWater else { return .none }
        binary.paused = false
        return .resumePhones
    }

    /// A phone registered with `binary`: true when it must start paused, as its siblings are.
    public func phoneJoins(_ binary: ForwardingState) -> Bool { binary.phonesPaused }

    /// `binary` leaves its slot: phones paused for its backlog read again (in grace their
    /// messages get the grace answer rather than sitting unread).
    public func binaryLeaves(_ binary: inout ForwardingState) -> ForwardingAction {
        guard binary.phonesPaused else { return .none }
        binary.paused = false
        return .resumePhones
    }

    // MARK: Binary → phone: the outbox charge

    /// A binary's envelope carries a frame of `frameLength` bytes for `phone`, whose queue holds
    /// `queuedBytes` after `writtenBytes` were written. Each message not yet written, this one
    /// included, is charged its length + `perMessageOverhead` (docs/protocol.md §7.5); over the
    /// budget the phone ends: `.dropBacklog` with 1011 `phone backlog full`, or with the code of
    /// the envelope's close directive (`directive`, then no close notice). Else `.queue`, and the
    /// caller reports where the queued frame ends with `queuedToPhone`.
    @inlinable
    public func messageToPhone(
        _ phone: inout ForwardingState, frameLength: Int, queuedBytes: Int, writtenBytes: Int, directive: UInt16?
    ) -> ForwardingAction {
        let unwritten = phone.outbox.unwrittenMessages(written: writtenBytes)
        let charge = queuedBytes + (unwritten + 1) * perMessageOverhead + frameLength
        if charge <= outboxBudget { return .queue }
        return backlogFull(&phone, directive: directive)
    }

    /// The frame just queued to `phone` ends at stream offset `end` (bytes written + queued).
    @inlinable
    public func queuedToPhone(_ phone: inout ForwardingState, endingAt end: Int) {
        phone.outbox.messageQueued(endingAt: end)
    }

    @usableFromInline
    package func backlogFull(_ phone: inout ForwardingState, directive: UInt16?) -> ForwardingAction {
        if let d = directive {
            phone.notice = .suppressed
            return .dropBacklog(code: ForwardingCore.wireCode(d))
        }
        phone.notice = .code(CloseCode.internalError.rawValue)
        return .dropBacklog(code: .internalError)
    }

    // MARK: Close notices (docs/protocol.md §8)

    /// The binary's envelope asked to close `phone` with `code`: the close code to send (an
    /// application code not valid on the wire becomes 1000); the binary hears no notice.
    public func binaryClosesPhone(_ phone: inout ForwardingState, code: UInt16) -> CloseCode {
        phone.notice = .suppressed
        return ForwardingCore.wireCode(code)
    }

    /// `phone` sent a message that is not JSON (docs/protocol.md §7.1): it is closed 1000 and
    /// its binary hears 1001.
    public func phoneSentNonJSON(_ phone: inout ForwardingState) -> CloseCode {
        phone.notice = .code(CloseCode.goingAway.rawValue)
        return .normal
    }

    /// The relay sheds `phone` to get memory back (`shedVictim`): its binary hears 1011, unless
    /// the binary had already asked for its close.
    public func phoneShed(_ phone: inout ForwardingState) {
        if phone.notice != .suppressed { phone.notice = .code(CloseCode.internalError.rawValue) }
    }

    /// The notice due when `phone` goes, for `Registry.phoneLeft` (which knows whether its
    /// binary is still there to hear it): nil when the binary itself asked for the close;
    /// else the code the relay decided, or the code of the close that ended it — the phone's
    /// own when it closed first, ours when we did (a drop: the code it was dropped with) — or
    /// 1001 when there was none.
    public func closeNotice(
        _ phone: ForwardingState, peerCode: CloseCode?, localCode: CloseCode?, closedByPeer: Bool
    ) -> UInt16? {
        switch phone.notice {
        case .suppressed: return nil
        case .code(let c): return c
        case .undecided: return (closedByPeer ? peerCode : localCode)?.rawValue ?? CloseCode.goingAway.rawValue
        }
    }

    /// The notice of a phone the relay closed on its own decision and removes from the registry
    /// at once (`dropBacklog`, `phoneShed`), before its socket is gone.
    public func closeNoticeNow(_ phone: ForwardingState) -> UInt16? {
        closeNotice(phone, peerCode: nil, localCode: nil, closedByPeer: false)
    }

    private static func wireCode(_ code: UInt16) -> CloseCode {
        let c = CloseCode(code)
        return c.isValidOnWire ? c : .normal
    }

    // MARK: Shedding (docs/operations.md "Memory")

    /// True while `bufferedBytes` (queued + held, process-wide) plus `extra` more exceed the budget.
    @inlinable
    public func overBudget(bufferedBytes: Int, extra: Int = 0) -> Bool {
        bufferedBytes + extra > maxBufferedBytes
    }

    /// Whom to close to get memory back: the largest holder, counting a phone's output queue
    /// (a binary's queue is bounded by pausing its phones, so it is not counted) and every
    /// connection's unfinished input, plus `extra` for `requester`, whose growth hit the budget.
    /// A phone whose queue is at least half of what it holds loses its backlog
    /// (`.dropBacklog`, 1011 `phone backlog full`, as when its own outbox overflows); any other
    /// holder is shed with 1011 `memory budget exceeded` (`.shed`). Nil when nobody holds anything.
    /// O(holders): it runs only over the budget.
    public func shedVictim<Holders: Sequence<ShedCandidate>>(
        _ holders: Holders, requester: ConnHandle? = nil, extra: Int = 0
    ) -> ShedVictim? {
        var best: ShedCandidate?
        var bestSize = 0
        var bestQueue = 0
        for h in holders {
            let queue = h.isPhone ? h.queuedBytes : 0
            let size = queue + h.heldBytes + (h.handle == requester ? extra : 0)
            if size > bestSize {
                best = h
                bestSize = size
                bestQueue = queue
            }
        }
        guard let v = best else { return nil }
        return ShedVictim(handle: v.handle, dropBacklog: 2 * bestQueue >= bestSize)
    }
}

/// What `ForwardingCore` remembers of one upgraded connection; the caller stores it in its record
/// of the connection. For a binary: whether its phones are paused. For a phone: the close notice
/// decided so far and where its queued messages end.
public struct ForwardingState {
    public enum Notice: Equatable {
        /// The notice carries the code of the close that ends the phone (or 1001).
        case undecided
        /// The relay decided the code (1001 for a non-JSON message, 1011 when it closed the phone).
        case code(UInt16)
        /// The binary asked for the close: no notice.
        case suppressed
    }

    public var phonesPaused: Bool { paused }
    // The ledger first: the flag and the notice fill its tail (25 bytes in all), and the record
    // that holds this state packs its own small fields after them (docs/benchmarks.md, M1).
    @usableFromInline package var outbox = OutboxLedger()
    @usableFromInline package var paused = false
    public package(set) var notice = Notice.undecided

    public init() {}
}

/// Where each message queued to a phone ends in its output stream (bytes written + queued at the
/// time), so the outbox charges its overhead only while a message is not fully written.
/// The newest end is kept inline: a phone whose messages are each written before the next one
/// comes (the common case, and an idle phone after one exchange) never allocates the array
/// (docs/benchmarks.md, M1).
@usableFromInline
package struct OutboxLedger {
    /// `ends[head...]`: the messages before `newest` not yet fully written.
    @usableFromInline package var ends: [Int] = []
    /// Where the newest message ends; 0 once it is known to be written (a frame is never empty).
    @usableFromInline package var newest = 0
    /// An index into `ends`, which holds at most a phone's outbox of messages (32 bits: 20 bytes in all).
    @usableFromInline package var head: Int32 = 0
    /// Written entries are dropped in batches of at least this many: a removal per message would
    /// cost more than the rest of the charge.
    private static let batch = 32

    /// Messages queued and not yet fully written, given the bytes written so far.
    @inlinable
    package mutating func unwrittenMessages(written: Int) -> Int {
        if newest <= written {
            // Everything is written (ends only grow). A long backlog's array is freed; a short
            // one is kept for the next burst, so a binary sending bursts costs no allocation.
            newest = 0
            if !ends.isEmpty { clearEnds() }
            return 0
        }
        if Int(head) == ends.count { return 1 }
        return settle(written: written) + 1
    }

    @usableFromInline
    package mutating func clearEnds() {
        ends.removeAll(keepingCapacity: ends.count <= 64)
        head = 0
    }

    @usableFromInline
    package mutating func settle(written: Int) -> Int {
        var h = Int(head)
        defer { head = Int32(h) }
        while h < ends.count && ends[h] <= written { h += 1 }
        if h >= OutboxLedger.batch {
            if h == ends.count {
                ends.removeAll(keepingCapacity: true)
                h = 0
            } else if h * 2 > ends.count {
                ends.removeFirst(h)
                h = 0
            }
        }
        return ends.count - h
    }

    @inlinable
    package mutating func messageQueued(endingAt end: Int) {
        if newest != 0 { ends.append(newest) }
        newest = end
    }

    /// Entries kept in the array, written or not (for tests of the batching and of the release).
    package var storedEntries: Int { ends.count }
}

/// The answer to a forwarding input.
public enum ForwardingAction: Equatable, Sendable {
    case none
    /// Queue the binary's frame to the phone.
    case queue
    /// Stop reading every phone of this binary (docs/protocol.md §7.5).
    case pausePhones
    /// Read its phones again.
    case resumePhones
    /// Drop what is not yet written to the phone and close it with `code` and the reason
    /// `phone backlog full`; it leaves the registry now (`closeNoticeNow`).
    case dropBacklog(code: CloseCode)
}

/// The outcome of an upgrade request.
public enum Admission {
    /// Answer 101 with this `Sec-WebSocket-Accept`.
    case admit(acceptKey: String)
    case refuse(AdmissionRefusal)
}

/// Why an upgrade was refused, in the order the checks run.
public enum AdmissionRefusal {
    /// 429: the client's rate-limit bucket is empty, or its address could not be read.
    case rateLimited
    /// 503: draining, or `--max-connections` WebSockets are open.
    case overCapacity
    /// 429: the client has `--max-connections-per-ip` WebSockets open.
    case clientOverCapacity
    /// 400: the header gate (`UpgradeHeaderGate`).
    case badHeaders
    /// 421: the server-id belongs to another shard.
    case otherShard(ShardAssignment)
    /// The RFC 6455 §4.2.1 checks: this status and these headers.
    case handshake(HTTPStatus, extraHeaders: [(String, String)])
}

/// One connection as shedding sees it.
public struct ShedCandidate {
    public let handle: ConnHandle
    /// A phone whose WebSocket is open: its output queue counts (a binary's does not).
    public let isPhone: Bool
    public let queuedBytes: Int
    /// Input and message assembly held for unfinished messages.
    public let heldBytes: Int

    public init(handle: ConnHandle, isPhone: Bool, queuedBytes: Int, heldBytes: Int) {
        self.handle = handle
        self.isPhone = isPhone
        self.queuedBytes = queuedBytes
        self.heldBytes = heldBytes
    }
}

/// The holder `shedVictim` chose and how it goes.
public struct ShedVictim: Equatable {
    public let handle: ConnHandle
    /// Its backlog is most of what it holds: `ForwardingAction.dropBacklog` 1011; else shed 1011
    /// `memory budget exceeded`.
    public let dropBacklog: Bool
}
