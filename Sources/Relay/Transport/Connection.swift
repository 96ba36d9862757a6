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

    public let context: IOContext
    /// The client address: the TCP peer, or the PROXY v2 source once the header is read (docs/protocol.md §3.3).
    public package(set) var remote: SocketAddress
    public let settings: ConnectionSettings
    /// Who hears this connection's events. The application may hand a connection to a delegate
    /// of its own (the relay: the connection's peer record, from the upgrade on); it keeps the
    /// delegate alive until `connectionDidClose`.
    public unowned(unsafe) var delegate: ConnectionDelegate
    public package(set) var state: State = .http
    public package(set) var fd: Int32
    package var token = Token(raw: 0)
    package var interest: UInt32 = 0

    package var tlsContext: TLSContext?
    /// Present on TLS-listener connections; every read and write goes through it.
    package var tls: TLSSession?
    package var preamble: Preamble = .none
    package let expectsProxyHeader: Bool
    /// SSL_read needs the socket writable (TLS 1.3 KeyUpdate) / SSL_write needs it readable.
    package var tlsReadWantsWrite = false
    package var tlsWriteWantsRead = false
    /// Plaintext sat inside OpenSSL while reading was paused: read it at the end of the tick.
    package var readKick = false

    package var input = ByteBuffer()
    package var output = ByteBuffer()
    /// Input plus message-assembly capacity, as last charged to `context.heldBytes`.
    package var heldBytes = 0
    /// Stream offset (in `bytesOut` terms) of a frame start at or after the write position, so
    /// a backlog can be cut on a frame boundary (`closeDroppingBacklog`).
    package var frameBoundary = 0
    /// Request-head parser state, boxed so it exists only before the upgrade (224 bytes that an
    /// idle WebSocket connection would otherwise carry for its lifetime).
    package final class HTTPPhase {
        package var parser: HTTPRequestParser
        package init(maxHeaderBytes: Int) { parser = HTTPRequestParser(maxHeaderBytes: maxHeaderBytes) }
    }
    package var http: HTTPPhase?
    package var wsParser: WebSocketParser
    /// The deflate window for what we send when permessage-deflate was negotiated (RFC 7692),
    /// 0 without it: the send path's one test.
    package var deflateWindowBits: UInt8 = 0

    // Deadlines (monotonic ms; 0 = not armed). A timer entry acts only if its deadline still holds.
    package var httpDeadline: Int64 = 0
    package var pongDeadline: Int64 = 0
    package var assemblyDeadline: Int64 = 0
    package var httpTimerAt: Int64 = 0  // earliest pending httpDeadline heap entry (0: none)
    package var closeDeadline: Int64 = 0
    package var lingerDeadline: Int64 = 0
    package var proxyDeadline: Int64 = 0
    package var lastWriteProgress: Int64 = 0
    package var writeStallArmed = false
    package var dirtyMarked = false
    package var readingPaused = false

    public package(set) var pingOutstanding = false
    public package(set) var peerCloseCode: CloseCode?
    public package(set) var localCloseCode: CloseCode?
    public package(set) var wasUpgraded = false
    /// The peer sent its close frame before we sent ours.
    public package(set) var closeInitiatedByPeer = false

    /// Output queue water marks (docs/protocol.md §7.5); `connectionDidDrain` fires when crossing low after high.
    public var highWaterMark = Int.max
    public var lowWaterMark = 0
    public package(set) var aboveHighWater = false

    /// Bytes written so far: the stream offsets `frameBoundary` is counted in.
    public package(set) var bytesOut = 0

    /// `tls`: terminate TLS with this context (docs/operations.md); `proxyHeader`: require a PROXY v2
    /// header first (docs/protocol.md §3.3, `--https-proxy-protocol`).
    public init(fd: Int32, remote: SocketAddress, context: IOContext, settings: ConnectionSettings,
                delegate: ConnectionDelegate, tls: TLSContext? = nil, proxyHeader: Bool = false) {
        self.fd = fd
        self.tlsContext = tls
        self.expectsProxyHeader = proxyHeader
        self.remote = remote
        self.context = context
        self.settings = settings
        self.delegate = delegate
        self.http = HTTPPhase(maxHeaderBytes: settings.maxHeaderBytes)
        self.wsParser = WebSocketParser(maxMessageBytes: settings.maxMessageBytes)
        context.connectionDescriptors += 1
    }

    deinit {
        input.release(to: context.pool)
        context.heldBytes -= heldBytes
        context.queuedBytes -= output.count
        output.release(to: context.pool)
        if fd >= 0 {
            _ = CEpoll.close(fd)
            context.connectionDescriptors -= 1
        }
    }

    /// Registers with the reactor and arms the header timeout (docs/protocol.md §3.2: 5 s from accept).
    public func start() throws(Errno) {
        if let ctx = tlsContext {
            guard let session = ctx.makeSession(fd: fd) else { throw Errno(ENOMEM, call: "SSL_new") }
            tls = session
            tlsContext = nil
            preamble = .tlsHandshake
        }
        if expectsProxyHeader { preamble = .proxyHeader }
        interest = Reactor.readable | EPOLLRDHUP.rawValue
        token = try context.reactor.register(fd: fd, events: interest, handler: self)
        let now = context.reactor.now
        armHTTPDeadline(now + settings.headerTimeoutMs)
        if expectsProxyHeader {
            // docs/protocol.md §3.3: the PROXY header has its own 5 s bound (the header timeout may be longer).
            proxyDeadline = now + Limits.proxyHeaderTimeoutMs
            schedule(.proxyDeadline, at: proxyDeadline)
        }
    }

    public var queuedBytes: Int { output.count }

    // MARK: EventHandler

    public func handleEvent(_ events: UInt32) {
        if preamble != .none {
            advancePreamble()
            return
        }
        if events & Reactor.writable != 0 {
            if tlsReadWantsWrite {
                tlsReadWantsWrite = false
                dispatchRead()
            }
            flush()
        }
        if events & (Reactor.readable | Reactor.hangup) != 0 {
            if tlsWriteWantsRead {
                tlsWriteWantsRead = false
                flush()
                // The readable interest was added for the write; a paused reader stays paused.
                if readingPaused && events & Reactor.hangup == 0 { return }
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
            guard let tls, tls.hasPendingInput, !readingPaused, state != .http || output.isEmpty else { return }
        }
    }

    public func timerFired(kind: UInt8, now: Int64) {
        guard state != .closed, let k = TimerKind(rawValue: kind) else { return }
        switch k {
        case .httpDeadline:
            // No response on a header timeout (docs/protocol.md §3.2): the peer is not speaking HTTP at our pace.
            // The deadline runs from accept, so it bounds the TLS handshake too (docs/protocol.md §2.1).
            httpTimerAt = 0
            guard state == .http && httpDeadline != 0 else { return }
            if now >= httpDeadline {
                if preamble == .tlsHandshake { delegate.connection(self, tlsHandshakeFinished: false) }
                abort()
            } else {
                armHTTPDeadline(httpDeadline)
            }
        case .proxyDeadline:
            // docs/protocol.md §3.3: no complete PROXY header in time → closed with zero bytes.
            if preamble == .proxyHeader && now >= proxyDeadline { abort() }
        case .heartbeat:
            guard state == .open else { return }
            if !pingOutstanding { sendPing() }
            schedule(.heartbeat, at: now + settings.heartbeatIntervalMs)
        case .pongDeadline:
            if state == .open && pingOutstanding && pongDeadline != 0 && now >= pongDeadline {
                close(code: .internalError, reason: "heartbeat timeout")
            }
        case .assemblyDeadline:
            // docs/protocol.md §4: a message must complete within 30 s of its first frame.
            if state == .open && assemblyDeadline != 0 && now >= assemblyDeadline {
                close(code: .policyViolation, reason: "message timeout")
            }
        case .writeStall:
            writeStallArmed = false
            guard !output.isEmpty else { return }
            let due = lastWriteProgress + settings.writeStallTimeoutMs
            if now >= due {
                // docs/protocol.md §4: a write that cannot progress for 10 s marks the peer dead. A close frame
                // would sit behind the same stuck bytes, so the socket is dropped at once.
                if localCloseCode == nil { localCloseCode = .internalError }
                abort(reset: true)
            } else {
                writeStallArmed = true
                schedule(.writeStall, at: due)
            }
        case .closeDeadline:
            if state == .closeSent && now >= closeDeadline { abort() }
        case .lingerDeadline:
            if (state == .lingering || state == .closing) && lingerDeadline != 0 && now >= lingerDeadline { abort() }
        }
    }

    public func flushTick() {
        dirtyMarked = false
        if readKick {
            readKick = false
            drainBufferedFrames()
            if !readingPaused && tls?.hasPendingInput == true { dispatchRead() }
        }
        flush()
    }

    // MARK: transport funnel (plain socket or TLS)

    @inline(__always)
    package func ioRead(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.read(fd, buffer, count) }
        let r = try tls.read(into: buffer, count: count)
        if case .wouldBlock = r, tls.want == .write {
            tlsReadWantsWrite = true
            setInterest(interest | Reactor.writable)
        }
        return r
    }

    @inline(__always)
    package func ioWrite(_ buffer: UnsafeRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.write(fd, buffer, count) }
        let r = try tls.write(from: buffer, count: count)
        if case .wouldBlock = r { tlsWriteWantsRead = tls.want == .read }
        return r
    }

    package func setInterest(_ events: UInt32) {
        guard state != .closed, events != interest else { return }
        interest = events
        context.reactor.modify(fd: fd, token: token, events: events)
    }

    // MARK: teardown

    package func peerGone() {
        abort()
    }

    /// Drops the connection now: deregister, close, free buffers, tell the delegate once.
    public func abort(reset: Bool = false) {
        guard state != .closed else { return }
        state = .closed
        context.reactor.deregister(fd: fd, token: token)
        if reset {
            Socket.setAbortiveClose(fd)
        } else {
            tls?.shutdown()
        }
        tls = nil  // SSL_free before the fd goes (the BIO does not own the fd)
        _ = CEpoll.close(fd)
        fd = -1
        context.connectionDescriptors -= 1
        releaseInput()
        context.queuedBytes -= output.count
        if output.capacity > context.pool.blockSize { context.noteReleased(output.capacity) }
        output.release(to: context.pool)
        delegate.connectionDidClose(self, peerCode: peerCloseCode, localCode: localCloseCode)
    }

    package func schedule(_ kind: TimerKind, at deadline: Int64) {
        context.reactor.schedule(token, at: deadline, kind: kind.rawValue)
    }
}
