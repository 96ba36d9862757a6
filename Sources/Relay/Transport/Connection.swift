import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// One accepted TCP connection: its fd, buffers, optional TLS session, and the
/// PROXY header → TLS handshake → HTTP → WebSocket protocol state.
/// The reactor calls `handleEvent`; the application sees it through `ConnectionDelegate`.
public final class Connection: EventHandler {
    public enum State: Equatable {
        case http          // reading a request head
        case open          // WebSocket open
        case closeSent     // we sent a close frame and wait for the peer's (RFC 6455 §7.1.2)
        case closing       // flushing the last bytes, then FIN
        case lingering     // FIN sent; reading and discarding until the peer's FIN or a deadline
        case closed
    }

    package enum TimerKind: UInt8 {
        case httpDeadline = 1, heartbeat, pongDeadline, assemblyDeadline, writeStall, closeDeadline, lingerDeadline,
             proxyDeadline
    }

    /// What must happen before HTTP bytes can be read (the public `state` is `.http` meanwhile,
    /// so the header timeout of docs/protocol.md §3.2 covers these steps too).
    package enum Preamble: UInt8 {
        case none
        case proxyHeader   // docs/protocol.md §3.3: a PROXY v2 header before the ClientHello
        case tlsHandshake  // docs/protocol.md §2.1: non-blocking handshake inside the reactor
    }

    /// Queued bytes above which pings go unanswered.
    package static let pongBacklogLimit = 64 * 1024
    /// The most plaintext one TLS record carries (RFC 8446 §5.1): what OpenSSL may hold pending
    /// after a blocked `SSL_write`.
    package static let tlsMaxRecordPlaintext = 16 * 1024

    // Stored properties, word-sized first, then the rest placed so that each fills the tail of a struct whose size is not a
    // multiple of 8 (`ByteBuffer` 20 B, `WebSocketParser` 36 B, `CloseHandshake` 5 B,
    // `Backpressure` 10 B) or the gap before a 2- or 4-byte field: an idle WebSocket connection
    // is this object and nothing else, 184 bytes (docs/benchmarks.md, M1; ConnectionFootprintTests).
    public let context: IOContext
    /// Who hears this connection's events, unretained: the application keeps it alive until
    /// `connectionDidClose`, and each callback borrows it (`toDelegate`), with no retain and release.
    private var delegateRef: Unmanaged<ConnectionDelegate>
    /// Present on TLS-listener connections; every read and write goes through it.
    package var tls: TLSSession?
    /// Request-head parser, client address and HTTP-phase deadlines, boxed so they exist only
    /// before the upgrade (an idle WebSocket connection would otherwise carry them for its lifetime).
    package var http: HTTPPhase?
    /// Bytes handed to the kernel (or to OpenSSL).
    public package(set) var bytesOut = 0
    package var input = ByteBuffer()
    /// Input plus message-assembly capacity, as last charged to `context.heldBytes`.
    private var heldBytes32: UInt32 = 0
    package var output = ByteBuffer()
    /// Queued bytes from the write position to a frame start, so a backlog can be cut on a frame
    /// boundary (`closeDroppingBacklog`).
    package var frameBoundaryAhead: UInt32 = 0
    package var wsParser: WebSocketParser
    public package(set) var closeHandshake = CloseHandshake.none
    public package(set) var state: State = .http
    package var preamble: Preamble = .none
    /// The deflate window for what we send when permessage-deflate was negotiated (RFC 7692),
    /// 0 without it: the send path's one test.
    package var deflateWindowBits: UInt8 = 0
    package var deadlines = ConnectionDeadlines()
    /// Output water marks (the relay sets them per role) and read pausing.
    public package(set) var backpressure = Backpressure()
    package var tlsWants = TLSWants()
    package var interest: UInt32 = 0
    /// The socket, closed by `abort` (or when the connection goes).
    package private(set) var socket: FileDescriptor
    /// Plaintext sat inside OpenSSL while reading was paused: read it at the end of the tick.
    package var readKick = false
    package var dirtyMarked = false
    /// A `.writeStall` heap entry is pending (one at a time).
    package var writeStallTimerPending = false
    /// This connection's `settings`, by their place in `context` (one byte, not a reference).
    private let settingsIndex: UInt8

    /// Who hears this connection's events. The application may hand a connection to a delegate
    /// of its own (the relay: the connection's peer record, from the upgrade on); it keeps the
    /// delegate alive until `connectionDidClose`.
    public var delegate: ConnectionDelegate {
        get { delegateRef.takeUnretainedValue() }
        set { delegateRef = .passUnretained(newValue) }
    }

    /// Calls `body` with the delegate borrowed: the per-message callbacks cost no retain and release.
    @inline(__always)
    package func toDelegate<R>(_ body: (ConnectionDelegate) -> R) -> R {
        delegateRef._withUnsafeGuaranteedRef(body)
    }

    /// One object shared by every connection of the application.
    public var settings: ConnectionSettings { context.connectionSettings(settingsIndex) }
    /// Input plus message-assembly capacity, as last charged to `context.heldBytes`.
    package var heldBytes: Int {
        @inline(__always) get { Int(heldBytes32) }
        set { heldBytes32 = UInt32(newValue) }
    }
    /// Our ping awaits its pong (its deadline is armed only then).
    public var pingOutstanding: Bool { state == .open && deadlines.pong.isArmed }
    /// The client: the TCP peer, or the PROXY v2 source once the header is read (docs/protocol.md
    /// §3.3). Known while the request is admitted and answered; an upgraded connection keeps no
    /// address (the relay's peer record keeps what it admitted) and shows `IPEndpoint.unknown`.
    public var remote: IPEndpoint { http?.remote ?? .unknown }

    /// Request-head parser state and what only the HTTP phase needs.
    package final class HTTPPhase {
        package var parser: HTTPRequestParser
        /// The TLS listener's context, until `start` makes the session.
        package var tlsContext: TLSContext?
        package let expectsProxyHeader: Bool
        package var remote: IPEndpoint
        /// Header timeout / keep-alive idle deadline.
        package var deadline = Deadline.unarmed
        /// The earliest `.httpDeadline` heap entry still pending.
        package var timerAt = Deadline.unarmed
        /// docs/protocol.md §3.3: the PROXY header's own bound.
        package var proxyDeadline = Deadline.unarmed
        package init(maxHeaderBytes: Int, remote: IPEndpoint, tlsContext: TLSContext?, expectsProxyHeader: Bool) {
            parser = HTTPRequestParser(maxHeaderBytes: maxHeaderBytes)
            self.remote = remote
            self.tlsContext = tlsContext
            self.expectsProxyHeader = expectsProxyHeader
        }
    }

    public var peerCloseCode: CloseCode? { closeHandshake.peerCode }
    public var localCloseCode: CloseCode? { closeHandshake.localCode }
    /// The peer sent its close frame before we sent ours.
    public var closeInitiatedByPeer: Bool { closeHandshake.initiatedByPeer }
    public var wasUpgraded: Bool { http == nil }
    public var aboveHighWater: Bool { backpressure.aboveHighWater }

    /// `tls`: terminate TLS with this context (docs/operations.md); `proxyHeader`: require a PROXY v2
    /// header first (docs/protocol.md §3.3, `--https-proxy-protocol`).
    public init(fd: consuming FileDescriptor, remote: SocketAddress, context: IOContext, settings: ConnectionSettings,
                delegate: ConnectionDelegate, tls: TLSContext? = nil, proxyHeader: Bool = false) {
        self.socket = fd
        self.context = context
        self.settingsIndex = context.index(of: settings)
        self.delegateRef = .passUnretained(delegate)
        self.http = HTTPPhase(maxHeaderBytes: settings.maxHeaderBytes, remote: IPEndpoint(remote), tlsContext: tls,
                              expectsProxyHeader: proxyHeader)
        self.wsParser = WebSocketParser(maxMessageBytes: settings.maxMessageBytes)
        context.connectionDescriptors += 1
    }

    deinit {
        input.release(to: context.pool)
        context.heldBytes -= heldBytes
        context.queuedBytes -= output.count
        output.release(to: context.pool)
        if socket.isOpen { context.connectionDescriptors -= 1 }  // `socket` closes itself
    }

    /// Registers with the reactor and arms the header timeout (docs/protocol.md §3.2: 5 s from accept).
    public func start() throws(Errno) {
        guard let http else { return }
        if let ctx = http.tlsContext {
            guard let session = ctx.makeSession(fd: fd) else { throw Errno(ENOMEM, call: "SSL_new") }
            tls = session
            http.tlsContext = nil
            preamble = .tlsHandshake
        }
        if http.expectsProxyHeader { preamble = .proxyHeader }
        interest = Reactor.readable | EPOLLRDHUP.rawValue
        _ = try context.reactor.register(fd: fd, events: interest, handler: self)
        let now = context.reactor.now
        armHTTPDeadline(now + settings.headerTimeoutMs)
        if http.expectsProxyHeader {
            // docs/protocol.md §3.3: the PROXY header has its own 5 s bound (the header timeout may be longer).
            http.proxyDeadline = Deadline(ms: now + Limits.proxyHeaderTimeoutMs)
            schedule(.proxyDeadline, at: http.proxyDeadline.ms)
        }
    }

    public var fd: Int32 { socket.raw }
    /// The reactor's token for this connection's registration, rebuilt from the fd rather than
    /// stored (8 bytes per idle connection: docs/benchmarks.md, M1); matches nothing once closed.
    package var token: Token {
        @inline(__always) get { context.reactor.token(ofFD: socket.raw) }
    }

    public var queuedBytes: Int { output.count }

    // MARK: EventHandler

    override public func handleEvent(_ events: UInt32) {
        if preamble != .none {
            advancePreamble()
            return
        }
        if events & Reactor.writable != 0 {
            if tlsWants.readNeedsWritable {
                tlsWants.readNeedsWritable = false
                dispatchRead()
            }
            flush()
        }
        if events & (Reactor.readable | Reactor.hangup) != 0 {
            if tlsWants.writeNeedsReadable {
                tlsWants.writeNeedsReadable = false
                flush()
                // The readable interest was added for the write; a paused reader stays paused.
                if backpressure.readingPaused && events & Reactor.hangup == 0 { return }
            }
            dispatchRead()
        }
    }

    package func dispatchRead() {
        while true {
            switch state {
            case .http: readHTTP()
            case .open, .closeSent: readWebSocket()
            case .lingering:
                readAndDiscard()
                return
            case .closing, .closed:
                return
            }
            // Input OpenSSL holds is invisible to level-triggered epoll: drain it now (bounded by
            // one read-ahead buffer, so this loop ends). A queued HTTP answer goes out first (one
            // request at a time); the flush after it reads on.
            guard let tls, tls.hasPendingInput, !backpressure.readingPaused, state != .http || output.isEmpty else { return }
        }
    }

    /// The HTTP phase's deadlines end with it: after the upgrade (or at close) their entries
    /// would fire into nothing (`timerFired` checks `http`), so a full timer heap drops them.
    override public func timerIsStale(kind: UInt8) -> Bool {
        guard let k = TimerKind(rawValue: kind) else { return false }
        switch k {
        case .httpDeadline, .proxyDeadline: return http == nil || state != .http
        default: return false
        }
    }

    override public func timerFired(kind: UInt8, now: Int64) {
        guard state != .closed, let k = TimerKind(rawValue: kind) else { return }
        switch k {
        case .httpDeadline:
            // No response on a header timeout (docs/protocol.md §3.2): the peer is not speaking HTTP at our pace.
            // The deadline runs from accept, so it bounds the TLS handshake too (docs/protocol.md §2.1).
            guard state == .http, let http else { return }
            http.timerAt = .unarmed
            guard http.deadline.isArmed else { return }
            if http.deadline.hasPassed(now) {
                if preamble == .tlsHandshake { delegate.connection(self, tlsHandshakeFinished: false) }
                abort()
            } else {
                armHTTPDeadline(http.deadline.ms)
            }
        case .proxyDeadline:
            // docs/protocol.md §3.3: no complete PROXY header in time → closed with zero bytes.
            if preamble == .proxyHeader, let http, http.proxyDeadline.hasPassed(now) { abort() }
        case .heartbeat:
            guard state == .open else { return }
            if deadlines.pong.hasPassed(now) {
                close(code: .internalError, reason: "heartbeat timeout")
                return
            }
            let nextBeat = armHeartbeat(now: now)
            if !pingOutstanding {
                sendPing(nextBeat: nextBeat)
            } else if deadlines.pong.ms(near: now) < nextBeat {
                // Still outstanding (a timeout longer than the interval): due before the next beat.
                schedule(.pongDeadline, at: deadlines.pong.ms(near: now))
            }
        case .pongDeadline:
            if state == .open && deadlines.pong.hasPassed(now) {
                close(code: .internalError, reason: "heartbeat timeout")
            }
        case .assemblyDeadline:
            // docs/protocol.md §4: a message must complete within 30 s of its first frame.
            if state == .open && deadlines.assembly.hasPassed(now) {
                close(code: .policyViolation, reason: "message timeout")
            }
        case .writeStall:
            writeStallTimerPending = false
            guard !output.isEmpty, deadlines.writeStall.isArmed else { return }
            if deadlines.writeStall.hasPassed(now) {
                // docs/protocol.md §4: a write that cannot progress for 10 s marks the peer dead. A close frame
                // would sit behind the same stuck bytes, so the socket is dropped at once.
                if closeHandshake == .none { closeHandshake = .local(.internalError, answer: nil) }
                abort(reset: true)
            } else {
                writeStallTimerPending = true
                schedule(.writeStall, at: deadlines.writeStall.ms(near: now))
            }
        case .closeDeadline:
            if state == .closeSent && deadlines.closeAnswer.hasPassed(now) { abort() }
        case .lingerDeadline:
            if (state == .lingering || state == .closing) && deadlines.linger.hasPassed(now) { abort() }
        }
    }

    override public func flushTick() {
        dirtyMarked = false
        if readKick {
            readKick = false
            drainBufferedFrames()
            if !backpressure.readingPaused && tls?.hasPendingInput == true { dispatchRead() }
        }
        flush()
    }

    // MARK: transport funnel (plain socket or TLS)

    @inline(__always)
    package func ioRead(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.read(fd, buffer, count) }
        let r = try tls.read(into: buffer, count: count)
        if case .wouldBlock = r, tls.want == .write {
            tlsWants.readNeedsWritable = true
            setInterest(interest | Reactor.writable)
        }
        return r
    }

    @inline(__always)
    package func ioWrite(_ buffer: UnsafeRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.write(fd, buffer, count) }
        let r = try tls.write(from: buffer, count: count)
        if case .wouldBlock = r { tlsWants.writeNeedsReadable = tls.want == .read }
        return r
    }

    /// Inlined test: most calls (the end of every flush) ask for the interest already set.
    @inline(__always)
    package func setInterest(_ events: UInt32) {
        if events != interest { changeInterest(events) }
    }

    @inline(never)
    private func changeInterest(_ events: UInt32) {
        guard state != .closed else { return }
        interest = events
        // An fd epoll no longer watches as we ask would hang or spin: drop it.
        do { try context.reactor.modify(fd: fd, token: token, events: events) } catch { abort() }
    }

    // MARK: teardown

    package func peerGone() {
        abort()
    }

    /// Drops the connection now: deregister, close, free buffers, tell the delegate once.
    public func abort(reset: Bool = false) {
        guard state != .closed else { return }
        state = .closed
        context.reactor.deregisterBeforeClose(token: token)
        if reset {
            Socket.setAbortiveClose(fd)
        } else {
            tls?.shutdown()
        }
        tls = nil  // SSL_free before the fd goes (the BIO does not own the fd)
        socket.close()
        context.connectionDescriptors -= 1
        releaseInput()
        context.queuedBytes -= output.count
        if output.capacity > context.pool.blockSize { context.noteReleased(output.capacity) }
        output.release(to: context.pool)
        // Callbacks borrow the delegate (`toDelegate`): one may be running below this close (a
        // message that sheds its own sender), and the application lets go of the delegate here.
        let delegate = self.delegate
        context.reactor.keepUntilIterationEnd(delegate)
        delegate.connectionDidClose(self, peerCode: peerCloseCode, localCode: localCloseCode)
    }

    /// Schedules the next `.heartbeat` entry (an idle connection's one heap entry) and returns its time.
    @discardableResult
    package func armHeartbeat(now: Int64) -> Int64 {
        let at = due(in: settings.heartbeatIntervalMs, from: now)
        schedule(.heartbeat, at: at)
        return at
    }

    /// The time `span` ms after `now` (the loop's, unless given), the span capped at what a
    /// `ShortDeadline` holds (the timeouts are operator-set).
    package func due(in span: Int64, from now: Int64? = nil) -> Int64 {
        (now ?? context.reactor.now) + min(span, ShortDeadline.maxSpanMs)
    }

    package func schedule(_ kind: TimerKind, at deadline: Int64) {
        context.reactor.schedule(token, at: deadline, kind: kind.rawValue)
    }
}
