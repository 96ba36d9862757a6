import CEpoll

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

    enum TimerKind: UInt8 {
        case httpDeadline = 1, heartbeat, pongDeadline, assemblyDeadline, writeStall, closeDeadline, lingerDeadline,
             proxyDeadline
    }

    /// What must happen before HTTP bytes can be read (the public `state` is `.http` meanwhile,
    /// so the header timeout of SPEC §5.1 covers these steps too).
    enum Preamble: UInt8 {
        case none
        case proxyHeader   // SPEC §10: a PROXY v2 header before the ClientHello
        case tlsHandshake  // SPEC §4.1: non-blocking handshake inside the reactor
    }

    /// Queued bytes above which pings go unanswered.
    static let pongBacklogLimit = 64 * 1024

    public let context: IOContext
    /// The client address: the TCP peer, or the PROXY v2 source once the header is read (SPEC §10).
    public private(set) var remote: SocketAddress
    public let settings: ConnectionSettings
    public unowned(unsafe) var delegate: ConnectionDelegate
    public private(set) var state: State = .http
    public private(set) var fd: Int32
    private var token = Token(raw: 0)
    private var interest: UInt32 = 0

    private var tlsContext: TLSContext?
    /// Present on TLS-listener connections; every read and write goes through it.
    private var tls: TLSSession?
    private(set) var preamble: Preamble = .none
    private let expectsProxyHeader: Bool
    /// SSL_read needs the socket writable (TLS 1.3 KeyUpdate) / SSL_write needs it readable.
    private var tlsReadWantsWrite = false
    private var tlsWriteWantsRead = false
    /// Plaintext sat inside OpenSSL while reading was paused: read it at the end of the tick.
    private var readKick = false

    private var input = ByteBuffer()
    private var output = ByteBuffer()
    /// Request-head parser state, boxed so it exists only before the upgrade (224 bytes that an
    /// idle WebSocket connection would otherwise carry for its lifetime).
    private final class HTTPPhase {
        var parser: HTTPRequestParser
        init(maxHeaderBytes: Int) { parser = HTTPRequestParser(maxHeaderBytes: maxHeaderBytes) }
    }
    private var http: HTTPPhase?
    private var wsParser: WebSocketParser

    // Deadlines (monotonic ms; 0 = not armed). A timer entry acts only if its deadline still holds.
    private var httpDeadline: Int64 = 0
    private var pongDeadline: Int64 = 0
    private var assemblyDeadline: Int64 = 0
    private var httpTimerAt: Int64 = 0  // earliest pending httpDeadline heap entry (0: none)
    private var closeDeadline: Int64 = 0
    private var lingerDeadline: Int64 = 0
    private var proxyDeadline: Int64 = 0
    private var lastWriteProgress: Int64 = 0
    private var writeStallArmed = false
    private var dirtyMarked = false
    private var readingPaused = false

    public private(set) var pingOutstanding = false
    public private(set) var peerCloseCode: CloseCode?
    public private(set) var localCloseCode: CloseCode?
    public private(set) var wasUpgraded = false
    /// The peer sent its close frame before we sent ours.
    public private(set) var closeInitiatedByPeer = false

    /// Output queue water marks (SPEC §9.4); `connectionDidDrain` fires when crossing low after high.
    public var highWaterMark = Int.max
    public var lowWaterMark = 0
    public private(set) var aboveHighWater = false

    /// Application state attached to this connection (the relay's phone or binary record).
    public var userInfo: AnyObject?
    /// Bytes read and written, for metrics.
    public private(set) var bytesIn = 0
    public private(set) var bytesOut = 0

    /// `tls`: terminate TLS with this context (SPEC §4); `proxyHeader`: require a PROXY v2
    /// header first (SPEC §10, `--https-proxy-protocol`).
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
    }

    deinit {
        input.release(to: context.pool)
        context.queuedBytes -= output.count
        output.release(to: context.pool)
        if fd >= 0 { _ = CEpoll.close(fd) }
    }

    /// Registers with the reactor and arms the header timeout (SPEC §5.1: 5 s from accept).
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
            // SPEC §10: the PROXY header has its own 5 s bound (the header timeout may be longer).
            proxyDeadline = now + Limits.proxyHeaderTimeoutMs
            schedule(.proxyDeadline, at: proxyDeadline)
        }
    }

    /// The negotiated ALPN protocol ("" without TLS or ALPN).
    public var tlsALPN: String { tls?.alpn ?? "" }
    public var isTLS: Bool { tls != nil }

    public var queuedBytes: Int { output.count }
    public var isWebSocket: Bool { state == .open }

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

    private func dispatchRead() {
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
            // Plaintext OpenSSL decrypted but did not return yet is invisible to level-triggered
            // epoll: drain it now (bounded by one TLS record, so this loop ends).
            guard let tls, tls.pendingPlaintext > 0, !readingPaused else { return }
        }
    }

    public func timerFired(kind: UInt8, now: Int64) {
        guard state != .closed, let k = TimerKind(rawValue: kind) else { return }
        switch k {
        case .httpDeadline:
            // No response on a header timeout (SPEC §5.1): the peer is not speaking HTTP at our pace.
            // The deadline runs from accept, so it bounds the TLS handshake too (SPEC §4.1).
            httpTimerAt = 0
            guard state == .http && httpDeadline != 0 else { return }
            if now >= httpDeadline {
                if preamble == .tlsHandshake { delegate.connection(self, tlsHandshakeFinished: false) }
                abort()
            } else {
                armHTTPDeadline(httpDeadline)
            }
        case .proxyDeadline:
            // SPEC §10: no complete PROXY header in time → closed with zero bytes.
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
            // SPEC §7: a message must complete within 30 s of its first frame.
            if state == .open && assemblyDeadline != 0 && now >= assemblyDeadline {
                close(code: .policyViolation, reason: "message timeout")
            }
        case .writeStall:
            writeStallArmed = false
            guard !output.isEmpty else { return }
            let due = lastWriteProgress + settings.writeStallTimeoutMs
            if now >= due {
                // SPEC §7: a write that cannot progress for 10 s marks the peer dead. A close frame
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
            if (state == .lingering || state == .closing) && now >= lingerDeadline { abort() }
        }
    }

    public func flushTick() {
        dirtyMarked = false
        if readKick {
            readKick = false
            drainBufferedFrames()
            if !readingPaused && (tls?.pendingPlaintext ?? 0) > 0 { dispatchRead() }
        }
        flush()
    }

    // MARK: transport funnel (plain socket or TLS)

    @inline(__always)
    private func ioRead(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.read(fd, buffer, count) }
        let r = try tls.read(into: buffer, count: count)
        if case .wouldBlock = r, tls.want == .write {
            tlsReadWantsWrite = true
            setInterest(interest | Reactor.writable)
        }
        return r
    }

    @inline(__always)
    private func ioWrite(_ buffer: UnsafeRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        guard let tls else { return try Socket.write(fd, buffer, count) }
        let r = try tls.write(from: buffer, count: count)
        if case .wouldBlock = r { tlsWriteWantsRead = tls.want == .read }
        return r
    }

    // MARK: preamble: PROXY v2 header, TLS handshake

    private func advancePreamble() {
        if preamble == .proxyHeader {
            readProxyHeader()
            if preamble == .none && state == .http { dispatchRead() }
        }
        if preamble == .tlsHandshake { driveHandshake() }
    }

    /// Reads exactly the bytes the parser asks for, so the ClientHello behind the header stays
    /// in the kernel for OpenSSL. Any refusal closes with zero bytes written (SPEC §10).
    private func readProxyHeader() {
        while true {
            switch ProxyProtocolV2.parse(UnsafeRawBufferPointer(input.readable)) {
            case .refused:
                abort()
                return
            case .proxied(let source, let length):
                remote = source
                input.consume(length)
                input.release(to: context.pool)
                proxyDeadline = 0
                preamble = tls != nil ? .tlsHandshake : .none
                return
            case .needMore(let total):
                let want = total - input.count
                input.reserve(want, pool: context.pool)
                let r: IOResult<Int>
                do { r = try Socket.read(fd, input.writePointer, want) } catch { abort(); return }
                guard case .done(let n) = r else { return }
                if n == 0 { abort(); return }
                input.didWrite(n)
            }
        }
    }

    private func driveHandshake() {
        guard let tls else { return }
        // DESIGN.md 10: a bounded number of handshake steps per loop iteration. Over budget the
        // event is left pending; level-triggered epoll reports it again next iteration.
        guard context.takeHandshakeStep() else { return }
        switch tls.handshake() {
        case .done:
            preamble = .none
            delegate.connection(self, tlsHandshakeFinished: true)
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
            // The request may already be buffered in OpenSSL or the kernel.
            dispatchRead()
        case .wantRead:
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
        case .wantWrite:
            // Not readable: level-triggered readability would spin while the write is blocked.
            setInterest(Reactor.writable)
        case .failed:
            delegate.connection(self, tlsHandshakeFinished: false)
            abort()
        }
    }

    // MARK: HTTP phase

    private func readHTTP() {
        // One request at a time: while an answer is still queued, the client's next request
        // waits in the kernel (a pipelining client that never reads cannot grow our queue).
        guard output.isEmpty else {
            setInterest(interest & ~(Reactor.readable | EPOLLRDHUP.rawValue))
            return
        }
        input.reserve(4096, pool: context.pool)
        let r: IOResult<Int>
        do { r = try ioRead(input.writePointer, input.writableCount) } catch { abort(); return }
        guard case .done(let n) = r else {
            // Nothing arrived (e.g. right after a TLS handshake): an idle connection keeps no buffer.
            if input.isEmpty { input.release(to: context.pool) }
            return
        }
        if n == 0 { abort(); return }
        bytesIn += n
        if input.count == 0 && httpDeadline > context.reactor.now + settings.headerTimeoutMs {
            // First byte of a request on an idle keep-alive connection: the header timeout starts now.
            armHTTPDeadline(context.reactor.now + settings.headerTimeoutMs)
        }
        input.didWrite(n)
        parseRequests()
    }

    private func parseRequests() {
        while state == .http && !input.isEmpty && output.isEmpty {
            guard let http else { return }
            let result = http.parser.parse(UnsafeRawBufferPointer(input.readable))
            switch result {
            case .needMore:
                return
            case .failure(let status):
                enqueue(HTTPResponse.error(status, close: true))
                closeAfterFlush()
                return
            case .complete(let head, let headerLength):
                input.consume(headerLength)
                http.parser.reset()
                switch delegate.connection(self, request: head) {
                case .respond(let bytes, let close):
                    enqueue(bytes)
                    if close {
                        closeAfterFlush()
                        return
                    }
                    armHTTPDeadline(context.reactor.now + settings.keepAliveIdleMs)
                    markDirty()
                case .drop:
                    abort()
                    return
                case .upgrade(let acceptKey, let extra):
                    enqueue(HTTPResponse.switchingProtocols(accept: acceptKey, extraHeaders: extra))
                    becomeWebSocket()
                    return
                }
            }
        }
        if input.isEmpty { input.release(to: context.pool) }
    }

    private func becomeWebSocket() {
        state = .open
        http = nil
        wasUpgraded = true
        httpDeadline = 0
        let now = context.reactor.now
        schedule(.heartbeat, at: now + settings.heartbeatIntervalMs)
        markDirty()
        delegate.connectionDidUpgrade(self)
        // Frames pipelined behind the request head are already buffered; a connection the
        // delegate paused (a binary awaiting its claim) keeps them until it resumes.
        drainBufferedFrames()
        if input.isEmpty { input.release(to: context.pool) }
    }

    // MARK: WebSocket phase

    private func readWebSocket() {
        if input.isEmpty {
            let buf = context.readBuffer
            let r: IOResult<Int>
            do { r = try ioRead(buf, context.readBufferSize) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            bytesIn += n
            let consumed = processFrames(UnsafeMutableRawBufferPointer(start: buf, count: n))
            if consumed < n && (state == .open || state == .closeSent) {
                input.reserve(max(wsParser.bytesNeededForCurrentFrame ?? 0, n - consumed), pool: context.pool)
                input.append(pool: context.pool, buf + consumed, n - consumed)
            }
        } else {
            let need = (wsParser.bytesNeededForCurrentFrame ?? 0) - input.count
            input.reserve(max(need, 16 * 1024), pool: context.pool)
            let r: IOResult<Int>
            do { r = try ioRead(input.writePointer, input.writableCount) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            bytesIn += n
            input.didWrite(n)
            let consumed = processFrames(input.readable)
            // processFrames may have closed the connection and released the buffer.
            if state == .open || state == .closeSent { input.consume(consumed) }
            if input.isEmpty { input.release(to: context.pool) }
        }
    }

    /// Runs the frame parser over `bytes` until it needs more or the connection stops reading.
    /// Returns the number of bytes consumed.
    private func processFrames(_ bytes: UnsafeMutableRawBufferPointer) -> Int {
        var offset = 0
        // A paused reader stops between frames; the rest stays buffered until it resumes.
        while (state == .open || state == .closeSent) && !readingPaused {
            let rest = UnsafeMutableRawBufferPointer(rebasing: bytes[offset...])
            switch wsParser.next(rest) {
            case .needMore:
                // A message (or its one frame) has begun arriving: SPEC §7's 30 s start here.
                if wsParser.isAssemblingMessage || wsParser.bytesNeededForCurrentFrame != nil { armAssemblyDeadline() }
                return offset
            case .message(let opcode, let payload, let consumed):
                offset += consumed
                assemblyDeadline = 0
                if state == .open { delegate.connection(self, message: payload, opcode: opcode) }
            case .fragment(let consumed):
                offset += consumed
                armAssemblyDeadline()
            case .ping(let payload, let consumed):
                offset += consumed
                // RFC 6455 §5.5.3: answer with a pong carrying the same application data. A peer
                // that pings without reading gets no more pongs once ours back up (§5.5.3 lets an
                // endpoint answer only the most recent ping), so pings cannot grow our queue.
                if state == .open && output.count < Connection.pongBacklogLimit {
                    sendFrame(opcode: .pong, payload: payload)
                }
            case .pong(_, let consumed):
                offset += consumed
                if state == .open {
                    pingOutstanding = false
                    pongDeadline = 0
                    delegate.connectionDidReceivePong(self)
                }
            case .close(let code, _, let consumed):
                offset += consumed
                peerCloseCode = code
                if state == .open {
                    // RFC 6455 §5.5.1: echo the status code; no code in, no code out.
                    closeInitiatedByPeer = true
                    localCloseCode = code
                    writeCloseFrame(code)
                }
                closeAfterFlush()
                return offset
            case .violation(let code):
                // RFC 6455 §7.1.7: fail the connection — send our close and drop it after flushing.
                if state == .open {
                    localCloseCode = code
                    writeCloseFrame(code)
                }
                closeAfterFlush()
                return offset
            }
        }
        return offset
    }

    /// Sets the HTTP-phase deadline; a heap entry is added only when it comes earlier than the
    /// one already pending (a later deadline is picked up when that entry fires), so a
    /// keep-alive client cannot grow the timer heap one entry per request.
    private func armHTTPDeadline(_ deadline: Int64) {
        httpDeadline = deadline
        if httpTimerAt == 0 || deadline < httpTimerAt {
            httpTimerAt = deadline
            schedule(.httpDeadline, at: deadline)
        }
    }

    /// Arms the message deadline once per message (a later frame of the same message keeps it).
    private func armAssemblyDeadline() {
        guard assemblyDeadline == 0, state == .open else { return }
        assemblyDeadline = context.reactor.now + settings.messageAssemblyTimeoutMs
        schedule(.assemblyDeadline, at: assemblyDeadline)
    }

    /// Processes frames already buffered (behind the upgrade request, or held while paused).
    private func drainBufferedFrames() {
        guard state == .open || state == .closeSent, !readingPaused, !input.isEmpty else { return }
        let consumed = processFrames(input.readable)
        if state == .open || state == .closeSent { input.consume(consumed) }
        if input.isEmpty { input.release(to: context.pool) }
    }

    // MARK: sending

    /// Queues one unfragmented frame (a copy of `payload`) for the end-of-tick flush.
    public func sendFrame(opcode: Opcode, payload: UnsafeRawBufferPointer) {
        guard state == .open else { return }
        let h = FrameEncoder.headerLength(payloadLength: payload.count)
        output.reserve(h + payload.count, pool: context.pool)
        let p = output.writePointer
        let written = FrameEncoder.writeHeader(opcode: opcode, payloadLength: payload.count, into: p)
        if payload.count > 0 { (p + written).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        output.didWrite(written + payload.count)
        context.queuedBytes += written + payload.count
        didQueue()
    }

    /// Queues one text frame whose payload of `length` bytes `fill` writes in place: the single
    /// copy of a forwarded message goes straight into this queue.
    @inline(__always)
    public func sendFrame(opcode: Opcode, length: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        guard state == .open else { return }
        let h = FrameEncoder.headerLength(payloadLength: length)
        output.reserve(h + length, pool: context.pool)
        let p = output.writePointer
        let written = FrameEncoder.writeHeader(opcode: opcode, payloadLength: length, into: p)
        fill(p + written)
        output.didWrite(written + length)
        context.queuedBytes += written + length
        didQueue()
    }

    /// Pings the peer; an unanswered ping closes it 1011 `heartbeat timeout` after the heartbeat
    /// timeout, whoever sent it (the heartbeat, or the registry's claim probe).
    public func sendPing() {
        guard state == .open else { return }
        if !pingOutstanding {
            pingOutstanding = true
            pongDeadline = context.reactor.now + settings.heartbeatTimeoutMs
            schedule(.pongDeadline, at: pongDeadline)
        }
        sendFrame(opcode: .ping, payload: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    @inline(__always)
    private func didQueue() {
        if output.count >= highWaterMark { aboveHighWater = true }
        markDirty()
    }

    private func markDirty() {
        if !dirtyMarked {
            dirtyMarked = true
            context.reactor.markDirty(token)
        }
    }

    /// Appends whole bytes (responses, control frames) to the output queue.
    private func enqueue(_ bytes: [UInt8]) {
        output.append(pool: context.pool, bytes)
        context.queuedBytes += bytes.count
    }

    private func writeCloseFrame(_ code: CloseCode?, reason: String = "") {
        var r = Array(reason.utf8)
        if r.count > 123 { r = Array(r[0..<123]) }
        enqueue(FrameEncoder.closeFrame(code: code, reason: r))
        markDirty()
    }

    /// Starts the closing handshake with `code` (RFC 6455 §7.1.2); the socket is dropped when
    /// the peer answers or after the close timeout.
    public func close(code: CloseCode, reason: String = "") {
        switch state {
        case .open:
            localCloseCode = code
            writeCloseFrame(code, reason: reason)
            state = .closeSent
            // The peer's answering close must be read even from a paused connection.
            if readingPaused {
                readingPaused = false
                setInterest(interest | Reactor.readable | EPOLLRDHUP.rawValue)
                kickBufferedInput()
            }
            closeDeadline = context.reactor.now + settings.closeHandshakeTimeoutMs
            schedule(.closeDeadline, at: closeDeadline)
        case .http:
            abort()
        case .closeSent, .closing, .lingering, .closed:
            break
        }
    }

    /// Writes what is queued, then FIN. Input after this point is ignored.
    private func closeAfterFlush() {
        guard state != .closed && state != .closing && state != .lingering else { return }
        state = .closing
        input.release(to: context.pool)
        lingerDeadline = context.reactor.now + settings.closeHandshakeTimeoutMs
        schedule(.lingerDeadline, at: lingerDeadline)
        setInterest(Reactor.writable)
        flush()
    }

    private func flush() {
        while !output.isEmpty {
            let r: IOResult<Int>
            do {
                r = try ioWrite(UnsafeRawPointer(output.readable.baseAddress!), output.count)
            } catch {
                peerGone()
                return
            }
            switch r {
            case .done(let n):
                bytesOut += n
                output.consume(n)
                context.queuedBytes -= n
                lastWriteProgress = context.reactor.now
            case .wouldBlock:
                // The stall clock runs from the last progress, or from now after a full drain
                // (an older armed timer re-checks against this, never against 0).
                if lastWriteProgress == 0 { lastWriteProgress = context.reactor.now }
                if !writeStallArmed {
                    writeStallArmed = true
                    schedule(.writeStall, at: lastWriteProgress + settings.writeStallTimeoutMs)
                }
                setInterest(tlsWriteWantsRead ? interest | Reactor.readable : interest | Reactor.writable)
                return
            }
        }
        lastWriteProgress = 0
        output.release(to: context.pool)
        if aboveHighWater && output.count <= lowWaterMark {
            aboveHighWater = false
            delegate.connectionDidDrain(self)
        }
        switch state {
        case .closing:
            // RFC 6455 §7.1.1: the server closes the TCP connection first; a half-close lets the
            // peer read everything we sent (an error response, a close frame) before it sees EOF.
            // Over TLS, close_notify goes first (RFC 8446 §6.1), best effort.
            tls?.shutdown()
            _ = shutdown(fd, Int32(SHUT_WR))
            state = .lingering
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
        case .closed, .lingering:
            break
        case .http:
            // The answer is out: read and parse the next request (pipelined ones are buffered).
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue | (tlsReadWantsWrite ? Reactor.writable : 0))
            if !input.isEmpty { parseRequests() }
        default:
            var want = interest
            if !tlsReadWantsWrite { want &= ~Reactor.writable }
            if readingPaused && !tlsWriteWantsRead { want &= ~Reactor.readable }
            setInterest(want)
        }
    }

    private func readAndDiscard() {
        let buf = context.readBuffer
        let r: IOResult<Int>
        do { r = try Socket.read(fd, buf, context.readBufferSize) } catch { abort(); return }
        if case .done(let n) = r, n == 0 { abort() }
    }

    // MARK: read backpressure

    /// Stops reading from this peer (its kernel buffers fill, TCP pushes back): SPEC §9.4.
    public func pauseReading() {
        guard !readingPaused, state == .open else { return }
        readingPaused = true
        // EPOLLRDHUP is level-triggered too: keeping it would report a half-closed paused peer
        // on every iteration. HUP/ERR (always reported) still end the connection.
        setInterest(interest & ~(Reactor.readable | EPOLLRDHUP.rawValue))
    }

    public func resumeReading() {
        guard readingPaused else { return }
        readingPaused = false
        if state == .open || state == .closeSent {
            setInterest(interest | Reactor.readable | EPOLLRDHUP.rawValue)
            kickBufferedInput()
        }
    }

    /// Frames held in our buffer, or plaintext held by OpenSSL, raise no epoll event: process
    /// them at the end of this tick.
    private func kickBufferedInput() {
        if !input.isEmpty || (tls?.pendingPlaintext ?? 0) > 0 {
            readKick = true
            markDirty()
        }
    }

    public var isReadingPaused: Bool { readingPaused }

    private func setInterest(_ events: UInt32) {
        guard state != .closed, events != interest else { return }
        interest = events
        context.reactor.modify(fd: fd, token: token, events: events)
    }

    // MARK: teardown

    private func peerGone() {
        abort()
    }

    /// Drops the connection at once, recording `code` as ours: for a peer that cannot be
    /// reached any more (its queue is stuck), where a close frame would never arrive.
    public func fail(code: CloseCode, reason: String = "") {
        if localCloseCode == nil { localCloseCode = code }
        abort(reset: true)
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
        input.release(to: context.pool)
        context.queuedBytes -= output.count
        output.release(to: context.pool)
        delegate.connectionDidClose(self, peerCode: peerCloseCode, localCode: localCloseCode)
    }

    private func schedule(_ kind: TimerKind, at deadline: Int64) {
        context.reactor.schedule(token, at: deadline, kind: kind.rawValue)
    }
}
