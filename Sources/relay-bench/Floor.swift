import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayTransport

/// The yardstick of docs/benchmarks.md: a trivial single-threaded epoll TCP forwarder. It reads the
/// upgrade request head once (to pair a `/v1/server` connection with the `/v1/client` ones naming
/// the same `X-Pyrycode-Server`), answers a canned 101 carrying `X-Relay-Bench-Floor: 1` (so the
/// generator knows frames arrive unwrapped), and from then on copies bytes to the partner without
/// parsing: read into one shared buffer, write to the partner, queue only what the partner's
/// socket refuses (and stop reading the source until it drains). Phone → binary goes to the
/// group's binary; binary → phone goes to the group's first phone (fan-in is not a floor
/// scenario). Same syscall pattern as the relay: one read and one write per readiness event.
final class FloorServer {
    let reactor: Reactor
    let buffer: UnsafeMutableRawPointer
    let bufferSize = 64 * 1024
    var groups: [String: FloorGroup] = [:]
    var listener: Listener?
    var accepted = 0

    init(reactor: Reactor) {
        self.reactor = reactor
        buffer = .allocate(byteCount: bufferSize, alignment: 16)
    }

    func listen(on address: SocketAddress) throws(Errno) {
        listener = try Listener(socket: try Socket.listen(on: address), reactor: reactor) { [unowned self] fd, _ in
            let raw = fd.release()  // the floor closes its sockets itself
            Socket.setNoDelay(raw)
            let c = FloorConnection(fd: raw, server: self)
            do { try c.start() } catch { return }
            self.accepted += 1
        }
    }
}

final class FloorGroup {
    var binary: FloorConnection?
    var phones: [FloorConnection] = []
}

final class FloorConnection: EventHandler {
    let server: FloorServer
    var fd: Int32
    var token: Token!
    var head: [UInt8] = []
    var isBinary = false
    var serverID = ""
    var upgraded = false
    unowned(unsafe) var partner: FloorConnection?
    var pending = ByteBuffer()
    var interest: UInt32 = 0
    /// A partner that could not take our bytes: we stopped reading until it drains.
    var blockedSource: FloorConnection?
    var closed = false

    init(fd: Int32, server: FloorServer) {
        self.fd = fd
        self.server = server
    }

    func start() throws(Errno) {
        interest = Reactor.readable
        token = try server.reactor.register(fd: fd, events: interest, handler: self)
    }

    private static let response: [UInt8] = Array(
        ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Relay-Bench-Floor: 1\r\n\r\n").utf8)

    override func handleEvent(_ events: UInt32) {
        if events & Reactor.writable != 0 { drain() }
        guard events & (Reactor.readable | Reactor.hangup) != 0, !closed else { return }
        if !upgraded { readHead(); return }
        let n = CEpoll.read(fd, server.buffer, server.bufferSize)
        if n == 0 || (n < 0 && pyry_errno() != EAGAIN && pyry_errno() != EINTR) { teardown(); return }
        guard n > 0, let p = partner else { return }
        p.send(server.buffer, n, from: self)
    }

    private func readHead() {
        var tmp = [UInt8](repeating: 0, count: 4096)
        let n = tmp.withUnsafeMutableBytes { CEpoll.read(fd, $0.baseAddress, 4096) }
        if n <= 0 {
            if n == 0 || (pyry_errno() != EAGAIN && pyry_errno() != EINTR) { teardown() }
            return
        }
        head.append(contentsOf: tmp[0..<n])
        guard let end = headEnd() else { return }
        let text = String(decoding: head[0..<end], as: UTF8.self)
        let leftover = Array(head[end...])
        head = []
        isBinary = text.hasPrefix("GET /v1/server")
        for line in text.split(separator: "\r\n") where line.lowercased().hasPrefix("x-pyrycode-server:") {
            serverID = String(line.dropFirst("x-pyrycode-server:".count).trimmingASCIISpaces())
        }
        let group = server.groups[serverID] ?? FloorGroup()
        server.groups[serverID] = group
        if isBinary {
            group.binary = self
            partner = group.phones.first
            for ph in group.phones { ph.partner = self }
        } else {
            group.phones.append(self)
            partner = group.binary
            if let b = group.binary, b.partner == nil { b.partner = self }
        }
        upgraded = true
        FloorConnection.response.withUnsafeBytes { send($0.baseAddress!, $0.count, from: nil) }
        if !leftover.isEmpty, let p = partner {
            leftover.withUnsafeBytes { p.send($0.baseAddress!, $0.count, from: self) }
        }
    }

    private func headEnd() -> Int? {
        guard head.count >= 4 else { return nil }
        for i in 3..<head.count where head[i] == 10 && head[i - 1] == 13 && head[i - 2] == 10 && head[i - 3] == 13 {
            return i + 1
        }
        return nil
    }

    /// Writes `n` bytes now; what the socket refuses is queued and `source` stops reading.
    func send(_ p: UnsafeRawPointer, _ n: Int, from source: FloorConnection?) {
        guard !closed else { return }
        var off = 0
        if pending.isEmpty {
            while off < n {
                let w = CEpoll.write(fd, p + off, n - off)
                if w > 0 { off += w; continue }
                if w < 0 && (pyry_errno() == EAGAIN || pyry_errno() == EINTR) { break }
                teardown()
                return
            }
            if off == n { return }
        }
        pending.append(p + off, n - off)
        setInterest(interest | Reactor.writable)
        if let s = source, blockedSource == nil {
            blockedSource = s
            s.setInterest(s.interest & ~Reactor.readable)
        }
    }

    private func drain() {
        while !pending.isEmpty {
            let w = CEpoll.write(fd, UnsafeRawPointer(pending.readable.baseAddress!), pending.count)
            if w > 0 { pending.consume(w); continue }
            if w < 0 && (pyry_errno() == EAGAIN || pyry_errno() == EINTR) { return }
            teardown()
            return
        }
        pending.release()
        setInterest(interest & ~Reactor.writable)
        if let s = blockedSource {
            blockedSource = nil
            s.setInterest(s.interest | Reactor.readable)
        }
    }

    func setInterest(_ e: UInt32) {
        guard !closed, e != interest else { return }
        interest = e
        do { try server.reactor.modify(fd: fd, token: token, events: e) } catch { teardown() }
    }

    func teardown() {
        guard !closed else { return }
        closed = true
        try? server.reactor.deregister(fd: fd, token: token)  // closed below either way
        _ = CEpoll.close(fd)
        fd = -1
        pending.release()
        if let g = server.groups[serverID] {
            // Partners hold unowned references: unlink before this object can go away.
            if let b = g.binary, b.partner === self { b.partner = g.phones.first { $0 !== self } }
            for ph in g.phones where ph.partner === self { ph.partner = nil }
            if g.binary === self { g.binary = nil }
            g.phones.removeAll { $0 === self }
            if g.binary == nil && g.phones.isEmpty { server.groups[serverID] = nil }
        }
        if let s = blockedSource { s.setInterest(s.interest | Reactor.readable) }
    }
}
