import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// One outbound TLS connection of HTTPSClient: non-blocking connect, client handshake, one
/// request written, one response read (capped), then idle until reused or closed. It does the
/// I/O and reports each outcome to the client, which decides what happens next.
package final class HTTPSClientConnection: EventHandler {
    package enum State { case connecting, handshaking, writing, reading, idle, closed }

    package let id: UInt64
    package let origin: String
    private var fd: FileDescriptor
    private var token: Token?
    private let url: HTTPSURL
    private weak var client: HTTPSClient?
    private let reactor: Reactor
    private var session: TLSSession?
    package private(set) var state = State.connecting
    package let connectDeadline: Int64
    package private(set) var idleSince: Int64 = 0
    package var call: HTTPSCall?
    /// The request being written, and how much of it went out.
    package var request: [UInt8] = []
    private var written = 0
    /// The response so far (at most maxResponseBytes + 1).
    private var received: [UInt8] = []

    /// nil when the socket cannot even be created or the address refuses at once (next address).
    package init?(id: UInt64, address: SocketAddress, url: HTTPSURL, client: HTTPSClient, connectDeadline: Int64) {
        let raw = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { return nil }
        fd = FileDescriptor(raw)
        self.id = id
        self.url = url
        origin = url.originKey
        self.client = client
        reactor = client.reactor
        self.connectDeadline = connectDeadline
        let r = (try? address.withSockAddr { sa, len throws(Errno) in pyry_connect(raw, sa, len) }) ?? -1
        guard r == 0 || pyry_errno() == EINPROGRESS else { return nil }
        Socket.setNoDelay(raw)
        super.init()
        guard let t = try? reactor.register(fd: raw, events: Reactor.writable, handler: self) else { return nil }
        token = t
    }

    // MARK: events

    override package func handleEvent(_ events: UInt32) {
        switch state {
        case .connecting: connected()
        case .handshaking: handshake()
        case .writing: write()
        case .reading: read()
        case .idle: idleReadable()
        case .closed: break
        }
    }

    private func connected() {
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd.raw, SOL_SOCKET, SO_ERROR, &err, &len) == 0, err == 0 else {
            client?.connectFailed(self)
            return
        }
        guard let client, let s = client.tls.makeSession(fd: fd.raw, host: url.host, isIPLiteral: url.hostIsIPLiteral) else {
            self.client?.failed(self, .tls("handshake: cannot create a session"), beforeResponse: false)
            return
        }
        session = s
        state = .handshaking
        handshake()
    }

    private func handshake() {
        guard let session else { return }
        switch session.handshake() {
        case .done:
            beginRequest()
        case .wantRead:
            interest(Reactor.readable)
        case .wantWrite:
            interest(Reactor.writable)
        case .failed(let failure):
            client?.failed(self, .tls(OutboundTLSContext.failureText(session, reason: failure.reason())), beforeResponse: false)
        }
    }

    /// Writes `request` (after the handshake, or on a reused idle connection).
    package func beginRequest() {
        state = .writing
        written = 0
        received = []
        write()
    }

    private func write() {
        guard let session else { return }
        while written < request.count {
            do {
                let r = try request.withUnsafeBytes { p in
                    try session.write(from: p.baseAddress! + written, count: p.count - written)
                }
                switch r {
                case .done(let n): written += n
                case .wouldBlock:
                    interest(session.want == .read ? Reactor.readable : Reactor.writable)
                    return
                }
            } catch {
                // EPIPE / ECONNRESET: a reused connection the server had closed.
                client?.failed(self, .closed, beforeResponse: true)
                return
            }
        }
        state = .reading
        interest(Reactor.readable)
        read()
    }

    private func read() {
        guard let session, let client else { return }
        let cap = client.maxResponseBytes
        while true {
            let room = cap + 1 - received.count
            let r: IOResult<Int>
            do throws(Errno) {
                r = try withUnsafeTemporaryAllocation(byteCount: min(room, 16_384), alignment: 1) { buf throws(Errno) in
                    let r = try session.read(into: buf.baseAddress!, count: buf.count)
                    if case .done(let n) = r, n > 0 { received += UnsafeRawBufferPointer(rebasing: buf[0..<n]) }
                    return r
                }
            } catch {
                client.failed(self, .closed, beforeResponse: received.isEmpty)
                return
            }
            switch r {
            case .wouldBlock:
                interest(session.want == .read ? Reactor.readable : Reactor.writable)
                return
            case .done(0):
                conclude(eof: true)
                return
            case .done:
                if conclude(eof: false) { return }
            }
        }
    }

    /// Parses what arrived; true when the call is decided (complete or failed).
    @discardableResult
    private func conclude(eof: Bool) -> Bool {
        guard let client else { return true }
        let head = call?.request.method == "HEAD"
        switch HTTPResponseParser.parse(received, eof: eof, bodyless: head) {
        case .complete(let p) where p.consumed > client.maxResponseBytes:
            client.failed(self, .responseTooLarge, beforeResponse: false)
            return true
        case .complete(let p):
            let reusable = p.keepAlive && !eof && p.consumed == received.count
            client.completed(self, HTTPSResponse(status: p.status, headers: p.headers, body: p.body), reusable: reusable)
            return true
        case .malformed:
            client.failed(self, .malformedResponse, beforeResponse: false)
            return true
        case .needMore:
            if received.count > client.maxResponseBytes {
                client.failed(self, .responseTooLarge, beforeResponse: false)
                return true
            }
            if eof {
                client.failed(self, .closed, beforeResponse: received.isEmpty)
                return true
            }
            return false
        }
    }

    // MARK: idle

    package func becomeIdle(now: Int64) {
        state = .idle
        idleSince = now
        request = []
        received = []
        interest(Reactor.readable)
    }

    /// While idle only a close (or TLS 1.3 post-handshake messages such as session tickets,
    /// consumed inside SSL_read) may arrive; anything else ends the connection.
    private func idleReadable() {
        guard let session else { return }
        var byte: UInt8 = 0
        let r = try? session.read(into: &byte, count: 1)
        if case .wouldBlock? = r { return }
        client?.idleConnectionEnded(self)
    }

    // MARK: plumbing

    private func interest(_ events: UInt32) {
        guard let token else { return }
        do { try reactor.modify(fd: fd.raw, token: token, events: events) } catch {
            // Its events would no longer come as asked: the call fails now rather than at its deadline.
            if state == .idle { client?.idleConnectionEnded(self) } else { client?.failed(self, .closed, beforeResponse: false) }
        }
    }

    package func close() {
        guard state != .closed else { return }
        state = .closed
        if let token { reactor.deregisterBeforeClose(token: token) }
        token = nil
        session?.shutdown()
        session = nil
        fd.close()
    }
}
