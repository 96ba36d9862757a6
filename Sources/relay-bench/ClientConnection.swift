import CEpoll
import CTLS
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayTransport

/// What a client connection reports to the scenario driving it. One call per message: the
/// generator must stay cheaper than the relay it measures, so no closures or allocation here.
protocol ClientDelegate: AnyObject {
    func clientDidOpen(_ c: ClientConnection)
    func client(_ c: ClientConnection, message: UnsafeRawBufferPointer)
    func clientDidFail(_ c: ClientConnection, reason: String)
    /// End of a loop tick after `markDirty()`: queue more frames (window refill), then flush.
    func clientFill(_ c: ClientConnection)
}

/// Loop-wide state shared by every client connection of one generator process.
final class ClientContext {
    let reactor: Reactor
    /// Reads land here first; only a partial frame is copied to the connection (idle clients hold
    /// no buffers, so 18k idle connections cost little in the generator too).
    let readBuffer: UnsafeMutableRawPointer
    let readBufferSize = 256 * 1024
    /// Set for `wss://` targets: every connection runs TLS over its socket.
    let tls: TLSClientContext?
    /// The status line that completes a connection's handshake: the upgrade's 101, or 200 for a
    /// plain GET (`--storm-get`).
    let expectedStatus: String
    init(reactor: Reactor, tls: TLSClientContext? = nil, plainGet: Bool = false) {
        self.reactor = reactor
        self.tls = tls
        expectedStatus = plainGet ? "HTTP/1.1 200" : "HTTP/1.1 101"
        readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
    }
    deinit { readBuffer.deallocate() }
}

/// The client side of one WebSocket: non-blocking connect (optionally from a chosen source IP,
/// with IP_BIND_ADDRESS_NO_PORT so the port is picked per destination at connect time and the
/// per-address ephemeral range is not exhausted by bind), the HTTP upgrade (RFC 6455 §4.1),
/// then masked frames out (§5.3) and server frames in. With a TLS context the handshake runs
/// non-blocking in the reactor first (`.tlsHandshaking`), and `rawRead`/`rawWrite` (the only two
/// calls that touch the socket's bytes) go through `SSL_read`/`SSL_write`.
final class ClientConnection: EventHandler {
    enum Role { case binary, phone }
    enum State { case idle, connecting, tlsHandshaking, handshaking, open, closed }

    let context: ClientContext
    let role: Role
    /// Index of this connection's group (pair / server-id) in the scenario.
    let group: Int
    /// Index of a phone within its group.
    let member: Int
    unowned(unsafe) let delegate: ClientDelegate
    private(set) var state = State.idle
    private(set) var fd: Int32 = -1
    private var token: Token?
    private var interest: UInt32 = 0
    private var request: [UInt8] = []
    private(set) var output = ByteBuffer()
    private var input = ByteBuffer()
    private var parser = WebSocketParser(maxMessageBytes: 1 << 26, requireMasked: false)
    private var dirty = false
    /// The peer answered with the floor's marker header: frames arrive as sent (no envelope).
    private(set) var peerIsFloor = false
    let maskKey: UInt32
    /// Reading suspended (slow-binary scenario reads on a budget instead).
    var readPaused = false
    /// Per-read cap when throttled (S8); 0 = read as much as the shared buffer holds.
    var readLimit = 0
    var bytesRead = 0
    // Scenario state, kept here to avoid a side table per message.
    var inflight = 0
    var sent = 0
    var received = 0
    var active = true
    var opened = false
    /// Open-loop send time for the next message (L1), ns.
    var nextSendNs: UInt64 = 0
    /// The TLS connection (nil for ws://). Freed in `close()`/`deinit`.
    private(set) var ssl: OpaquePointer?
    /// S7: a session to resume (set before `connect`; the caller keeps its reference).
    var resumeSession: OpaquePointer?
    /// The TLS handshake resumed `resumeSession` (SSL_session_reused).
    private(set) var tlsResumed = false

    init(context: ClientContext, role: Role, group: Int, member: Int, delegate: ClientDelegate) {
        self.context = context
        self.role = role
        self.group = group
        self.member = member
        self.delegate = delegate
        self.maskKey = UInt32(truncatingIfNeeded: (group &* 2654435761) ^ (member << 8) ^ (role == .binary ? 0x5a5a : 0x3c3c)) | 1
    }

    deinit {
        input.release()
        output.release()
        if let ssl { SSL_free(ssl) }
        if fd >= 0 { _ = CEpoll.close(fd) }
    }

    // MARK: connect and handshake

    /// Starts a non-blocking connect; `requestHead` is the complete upgrade request.
    func connect(to target: SocketAddress, from source: SocketAddress?, requestHead: [UInt8]) throws(Errno) {
        request = requestHead
        let raw = try syscallChecked("socket") {
            socket(target.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        fd = raw
        if let source {
            var one: Int32 = 1
            _ = setsockopt(raw, Int32(IPPROTO_IP), pyry_ip_bind_address_no_port(), &one, socklen_t(MemoryLayout<Int32>.size))
            try source.withSockAddr { sa, len throws(Errno) in _ = try syscallChecked("bind") { pyry_bind(raw, sa, len) } }
        }
        Socket.setNoDelay(raw)
        let r = (try? target.withSockAddr { sa, len in pyry_connect(raw, sa, len) }) ?? -1
        if r < 0 && pyry_errno() != EINPROGRESS { throw Errno(pyry_errno(), call: "connect") }
        state = .connecting
        interest = Reactor.writable | Reactor.readable
        token = try context.reactor.register(fd: raw, events: interest, handler: self)
    }

    override func handleEvent(_ events: UInt32) {
        switch state {
        case .connecting:
            var err: Int32 = 0
            var len = socklen_t(4)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 { fail("connect: \(Errno(err))"); return }
            if events & Reactor.writable == 0 { return }
            if let tls = context.tls {
                guard startTLS(tls) else { return }
                state = .tlsHandshaking
                driveTLSHandshake()
                return
            }
            sendUpgradeRequest()
        case .tlsHandshaking:
            driveTLSHandshake()
        case .handshaking:
            if events & Reactor.writable != 0 { flush() }
            if events & (Reactor.readable | Reactor.hangup) != 0 { readHandshake() }
        case .open:
            if events & Reactor.writable != 0 { flush() }
            if events & (Reactor.readable | Reactor.hangup) != 0 && !readPaused { readFrames() }
        case .idle, .closed:
            break
        }
    }

    private func sendUpgradeRequest() {
        state = .handshaking
        request.withUnsafeBytes { output.append($0.baseAddress!, $0.count) }
        request = []
        setInterest(Reactor.readable)
        flush()
    }

    // MARK: TLS (wss://)

    private func startTLS(_ tls: TLSClientContext) -> Bool {
        ERR_clear_error()
        guard let s = SSL_new(tls.ctx) else { fail("SSL_new failed"); return false }
        ssl = s
        guard SSL_set_fd(s, fd) == 1 else { fail("SSL_set_fd failed"); return false }
        SSL_set_connect_state(s)
        // SNI (RFC 6066 §3): SSL_set_tlsext_host_name is a macro over SSL_ctrl.
        _ = tls.serverName.withCString { SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
        if tls.verify { _ = SSL_set1_host(s, tls.serverName) }
        if let resumeSession { _ = SSL_set_session(s, resumeSession) }
        return true
    }

    private func driveTLSHandshake() {
        guard let ssl else { return }
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            tlsResumed = SSL_session_reused(ssl) == 1
            sendUpgradeRequest()
            return
        }
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ: setInterest(Reactor.readable)
        case SSL_ERROR_WANT_WRITE: setInterest(Reactor.readable | Reactor.writable)
        default:
            let e = ERR_get_error()
            ERR_clear_error()
            fail("TLS handshake failed (OpenSSL error \(String(e, radix: 16)), errno \(pyry_errno()))")
        }
    }

    /// The session to resume later (S7), with a reference the caller frees (SSL_SESSION_free).
    func copySession() -> OpaquePointer? { ssl.flatMap { SSL_get1_session($0) } }

    /// Plaintext OpenSSL holds that epoll cannot see (read it before waiting again).
    private var tlsPending: Bool { ssl.map { SSL_pending($0) > 0 } ?? false }

    private func readHandshake() {
        input.reserve(4096)
        guard let n = rawRead(input.writePointer, input.writableCount) else { return }
        if n == 0 { fail("closed during handshake"); return }
        input.didWrite(n)
        let bytes = UnsafeRawBufferPointer(input.readable)
        guard let end = findHeadEnd(bytes) else {
            if input.count > 16 * 1024 { fail("response head too large") }
            return
        }
        let head = String(decoding: bytes[0..<end], as: UTF8.self)
        guard head.hasPrefix(context.expectedStatus) else {
            fail("upgrade refused: \(head.prefix(while: { $0 != "\r" }))")
            return
        }
        peerIsFloor = head.lowercased().contains("\r\nx-relay-bench-floor:")
        input.consume(end)
        state = .open
        delegate.clientDidOpen(self)
        guard state == .open else { return }  // an S7 storm drops it at once (a GET's body is no frame)
        if !input.isEmpty {
            let consumed = processFrames(input.readable)
            input.consume(consumed)
        }
        if input.isEmpty { input.release() }
    }

    private func findHeadEnd(_ b: UnsafeRawBufferPointer) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 3..<b.count where b[i] == 10 && b[i - 1] == 13 && b[i - 2] == 10 && b[i - 3] == 13 {
            return i + 1
        }
        return nil
    }

    // MARK: frames in

    /// One read per readiness event (level-triggered: the loop comes back if more is pending);
    /// with TLS, more reads while OpenSSL holds decrypted bytes the kernel no longer shows.
    func readFrames() {
        readOnce()
        var extra = 0
        while state == .open && !readPaused && tlsPending && extra < 64 {
            readOnce()
            extra += 1
        }
    }

    private func readOnce() {
        if input.isEmpty {
            let cap = readLimit > 0 ? min(readLimit, context.readBufferSize) : context.readBufferSize
            guard let n = rawRead(context.readBuffer, cap) else { return }
            if n == 0 { fail("peer closed"); return }
            bytesRead += n
            let consumed = processFrames(UnsafeMutableRawBufferPointer(start: context.readBuffer, count: n))
            if consumed < n && state == .open {
                input.reserve(max(parser.bytesNeededForCurrentFrame ?? 0, n - consumed))
                input.append(context.readBuffer + consumed, n - consumed)
            }
        } else {
            let need = (parser.bytesNeededForCurrentFrame ?? 0) - input.count
            input.reserve(max(need, 16 * 1024))
            var cap = input.writableCount
            if readLimit > 0 { cap = min(cap, readLimit) }
            guard let n = rawRead(input.writePointer, cap) else { return }
            if n == 0 { fail("peer closed"); return }
            bytesRead += n
            input.didWrite(n)
            let consumed = processFrames(input.readable)
            input.consume(consumed)
            if input.isEmpty { input.release() }
        }
    }

    private func processFrames(_ bytes: UnsafeMutableRawBufferPointer) -> Int {
        var offset = 0
        while state == .open {
            switch parser.next(UnsafeMutableRawBufferPointer(rebasing: bytes[offset...])) {
            case .needMore:
                return offset
            case .message(_, let payload, let consumed):
                offset += consumed
                delegate.client(self, message: payload)
            case .fragment(let consumed):
                offset += consumed
            case .ping(let payload, let consumed):
                offset += consumed
                // RFC 6455 §5.5.3; the relay's heartbeat (docs/protocol.md §4) must not close idle bench pairs.
                queueFrame(opcode: .pong, length: payload.count) { dst in
                    if payload.count > 0 { dst.copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
                }
            case .pong(_, let consumed):
                offset += consumed
            case .close(let code, _, let consumed):
                offset += consumed
                fail("closed by peer, code \(code.map { String($0.rawValue) } ?? "none")")
                return offset
            case .violation(let code):
                fail("protocol violation from peer: \(code.rawValue)")
                return offset
            }
        }
        return offset
    }

    // MARK: frames out

    /// Appends one masked frame (RFC 6455 §5.3: client frames are masked) whose payload `fill`
    /// writes in place; it is masked after `fill` returns. Sent at the end of the tick or by `flush()`.
    @inline(__always)
    func queueFrame(opcode: Opcode, length: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        let h = FrameEncoder.headerLength(payloadLength: length)
        output.reserve(h + 4 + length)
        let p = output.writePointer
        _ = FrameEncoder.writeHeader(opcode: opcode, payloadLength: length, into: p)
        p.storeBytes(of: p.load(fromByteOffset: 1, as: UInt8.self) | 0x80, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: maskKey.littleEndian, toByteOffset: h, as: UInt32.self)
        let payload = p + h + 4
        fill(payload)
        Masking.unmask(UnsafeMutableRawBufferPointer(start: payload, count: length), key: maskKey)
        output.didWrite(h + 4 + length)
        markDirty()
    }

    /// Asks for `clientFill` + flush at the end of this loop iteration (one write per tick).
    func markDirty() {
        if !dirty && state == .open {
            dirty = true
            if token != nil { context.reactor.markDirty(fd: fd) }
        }
    }

    override func flushTick() {
        dirty = false
        guard state == .open else { return }
        delegate.clientFill(self)
        flush()
    }

    func flush() {
        while !output.isEmpty {
            guard let n = rawWrite(UnsafeRawPointer(output.readable.baseAddress!), output.count) else {
                if interest & Reactor.writable == 0 { setInterest(interest | Reactor.writable) }
                return
            }
            output.consume(n)
        }
        output.release()
        if interest & Reactor.writable != 0 && state != .connecting { setInterest(interest & ~Reactor.writable) }
    }

    func pauseReading() {
        guard !readPaused else { return }
        readPaused = true
        setInterest(interest & ~Reactor.readable)
    }

    func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        setInterest(interest | Reactor.readable)
    }

    private func setInterest(_ e: UInt32) {
        guard state != .closed, e != interest else { return }
        interest = e
        // A failure leaves the old interest; the run's deadline reports a pair that then stalls.
        try? context.reactor.modify(fd: fd, token: token!, events: e)
    }

    // MARK: socket bytes (the TLS seam)

    /// nil = would block (or failed: the connection is closed then).
    @inline(__always)
    private func rawRead(_ p: UnsafeMutableRawPointer, _ n: Int) -> Int? {
        if let ssl { ERR_clear_error(); return tlsIO(ssl, SSL_read(ssl, p, Int32(clamping: n)), "SSL_read") }
        let r = CEpoll.read(fd, p, n)
        if r >= 0 { return r }
        let e = pyry_errno()
        if e == EAGAIN || e == EINTR { return nil }
        fail("read: \(Errno(e))")
        return nil
    }

    /// SSL_read/SSL_write outcome: bytes, nil = would block, 0 = end of stream.
    private func tlsIO(_ ssl: OpaquePointer, _ r: Int32, _ call: String) -> Int? {
        if r > 0 { return Int(r) }
        let e = SSL_get_error(ssl, r)
        switch e {
        case SSL_ERROR_WANT_READ: return nil
        case SSL_ERROR_WANT_WRITE:
            if interest & Reactor.writable == 0 { setInterest(interest | Reactor.writable) }
            return nil
        case SSL_ERROR_ZERO_RETURN: return 0
        default:
            ERR_clear_error()
            if e == SSL_ERROR_SYSCALL && pyry_errno() == 0 { return 0 }
            fail("\(call): TLS error \(e), errno \(pyry_errno())")
            return nil
        }
    }

    @inline(__always)
    private func rawWrite(_ p: UnsafeRawPointer, _ n: Int) -> Int? {
        if let ssl {
            ERR_clear_error()
            return tlsIO(ssl, SSL_write(ssl, p, Int32(clamping: n)), "SSL_write")
        }
        let r = CEpoll.write(fd, p, n)
        if r >= 0 { return r }
        let e = pyry_errno()
        if e == EAGAIN || e == EINTR { return nil }
        fail("write: \(Errno(e))")
        return nil
    }

    // MARK: teardown

    func fail(_ reason: String) {
        guard state != .closed else { return }
        close()
        delegate.clientDidFail(self, reason: reason)
    }

    /// Drops the socket (RST: no TIME_WAIT pile-up between runs).
    func close() {
        guard state != .closed else { return }
        if fd >= 0 {
            if let token { try? context.reactor.deregister(fd: fd, token: token) }  // closed below either way
            Socket.setAbortiveClose(fd)
            _ = CEpoll.close(fd)
            fd = -1
        }
        state = .closed
        if let ssl {
            // Dropped without close_notify on purpose (RST, as above). Marking the shutdown done
            // keeps SSL_free from flagging the shared session non-resumable (S7 reuses it).
            SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN)
            SSL_free(ssl)
        }
        ssl = nil
        input.release()
        output.release()
    }
}
