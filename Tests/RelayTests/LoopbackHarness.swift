import CEpoll
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport
@testable import Relaying
@testable import RelayOperations

/// A relay on an ephemeral loopback port, driven one loop step at a time from the test thread,
/// and non-blocking raw clients: no threads, no sleeps — the test pumps the loop until the
/// condition it waits for holds (bounded by a deadline).
final class LoopbackRelay {
    let reactor: Reactor
    let context: IOContext
    let relay: RelayService
    let listener: Listener
    var port: UInt16 { listener.address.port }

    /// `proxyHeader`: every connection starts with a PROXY v2 header (as `--https-proxy-protocol`, without TLS).
    init(proxyHeader: Bool = false, configure: (inout RelaySettings) -> Void = { _ in }) throws {
        var settings = RelaySettings()
        configure(&settings)
        reactor = try Reactor()
        context = IOContext(reactor: reactor)
        let relay = RelayService(settings: settings, context: context)
        self.relay = relay
        var any = SocketAddress(ip: "127.0.0.1", port: 1)!
        // Port 0: let the kernel choose (SocketAddress(parsing:) refuses 0 by design).
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        listener = try Listener(socket: try Socket.listen(on: any), reactor: reactor) { fd, remote in
            relay.accept(fd: fd, remote: remote, proxyHeader: proxyHeader)
        }
    }

    /// Runs loop steps until `done()` or `timeoutMs` passes; returns whether `done()` held.
    @discardableResult
    func pump(timeoutMs: Int64 = 5_000, until done: () -> Bool) -> Bool {
        let end = monotonicMs() + timeoutMs
        while !done() {
            if monotonicMs() > end { return false }
            reactor.runOnce(timeoutMs: 5)
        }
        return true
    }
}

/// A non-blocking TCP client socket on loopback.
final class RawSocket {
    private(set) var fd: Int32
    var received: [UInt8] = []
    private(set) var eof = false

    /// `source`: the loopback address to connect from (127.0.0.0/8 is all local on Linux).
    init(port: UInt16, from source: String? = nil) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0)
        if let source {
            try! SocketAddress(ip: source, port: 0)!.withSockAddr { sa, len throws(Errno) in
                precondition(pyry_bind(fd, sa, len) == 0, "bind \(source): errno \(pyry_errno())")
            }
        }
        let addr = SocketAddress(ip: "127.0.0.1", port: port)!
        try! addr.withSockAddr { sa, len throws(Errno) in
            _ = pyry_connect(fd, sa, len)  // EINPROGRESS on loopback completes within the first pump
        }
    }

    /// Sends as much of `bytes` as the socket takes now; returns the count sent.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBytes { p in
            let n = CEpoll.send(fd, p.baseAddress, p.count, Int32(MSG_NOSIGNAL))
            return max(n, 0)
        }
    }

    func send(_ text: String) { _ = send(Array(text.utf8)) }

    /// Reads whatever is available without blocking.
    func poll() {
        guard !eof else { return }
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { CEpoll.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 { received += buf[0..<n]; continue }
            if n == 0 || (pyry_errno() != EAGAIN && pyry_errno() != EINTR) { eof = true }
            return
        }
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    func close() {
        if fd >= 0 { _ = CEpoll.close(fd); fd = -1 }
    }

    deinit { close() }
}
