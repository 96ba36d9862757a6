import CEpoll
import Foundation  // Process: the test CAs and leaves are made with the openssl CLI, as an operator would.
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport

/// Test PKI for the outbound HTTPS client, made once per test process:
/// - `ca.crt` — the trusted CA. `SSL_CERT_FILE` points at it for the whole process (set once,
///   never changed: OpenSSL reads it when a client context is made, as it does for operators);
/// - `leaf.*` — signed by it for `localhost`, `push.test`, 127.0.0.1 and ::1;
/// - `rogue.*` — the same names, signed by an untrusted CA;
/// - `wronghost.*` — signed by the trusted CA, for `other.example` only.
enum TestPKI {
    static let dir: String = {
        let dir = TempDir()
        let script = """
            set -e
            ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $1.key -out $1.crt -days 2 -subj /CN=$1 2>/dev/null; }
            leaf() {
                openssl ecparam -name prime256v1 -genkey -noout -out $1.key
                openssl req -new -key $1.key -subj /CN=$1 -out $1.csr
                printf 'subjectAltName=%s\\nextendedKeyUsage=serverAuth\\n' "$3" > $1.ext
                openssl x509 -req -in $1.csr -CA $2.crt -CAkey $2.key -CAcreateserial -days 2 -extfile $1.ext -out $1.crt 2>/dev/null
            }
            ca ca
            ca rogueca
            leaf leaf ca 'DNS:localhost,DNS:push.test,IP:127.0.0.1,IP:::1'
            leaf rogue rogueca 'DNS:localhost,DNS:push.test,IP:127.0.0.1,IP:::1'
            leaf wronghost ca 'DNS:other.example'
            rm -f *.csr *.ext *.srl
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        try! p.run()
        p.waitUntilExit()
        precondition(p.terminationStatus == 0, "openssl CLI failed")
        setenv("SSL_CERT_FILE", dir.path + "/ca.crt", 1)
        pyry_ignore_sigpipe()  // as the relay does (Signals.swift): EPIPE, not a signal
        keep = dir
        atexit { TestPKI.keep = nil }  // removes the directory
        return dir.path
    }()
    private nonisolated(unsafe) static var keep: TempDir?

    static func context(_ name: String) -> TLSContext {
        try! TLSContext(certFile: dir + "/\(name).crt", keyFile: dir + "/\(name).key")
    }
}

/// Runs loop steps until `done()` or `timeoutMs` passes; returns whether `done()` held.
@discardableResult
func pump(_ reactor: Reactor, timeoutMs: Int64 = 5_000, until done: () -> Bool) -> Bool {
    let end = monotonicMs() + timeoutMs
    while !done() {
        if monotonicMs() > end { return false }
        reactor.runOnce(timeoutMs: 5)
    }
    return true
}

/// A TLS server on 127.0.0.1 on the test's own reactor (our server-side TLSSession): it records
/// what each connection sent and answers each whole request (head + Content-Length body) with
/// what `reply` decides.
final class HTTPSTestServer {
    enum Reply {
        case send([UInt8])          // answer and keep the connection
        case sendAndClose([UInt8])
        case close                  // close without answering
        case hang                   // never answer
    }

    let reactor: Reactor
    private let tls: TLSContext
    private var listener: Listener!
    var port: UInt16 { listener.address.port }
    /// (connection index, request index on that connection, raw request) → reply.
    var reply: (Int, Int, [UInt8]) -> Reply
    private(set) var connections: [ServerConnection] = []
    /// Every whole request, in arrival order, with its connection's index.
    private(set) var requests: [(connection: Int, bytes: [UInt8])] = []
    var accepted: Int { connections.count }
    var handshakeFailures: Int { connections.filter { $0.handshakeFailed }.count }
    /// Application bytes received over all connections (whole requests or not).
    var applicationBytes: Int { connections.reduce(0) { $0 + $1.applicationBytes } }

    init(reactor: Reactor, certificate: String = "leaf", reply: @escaping (Int, Int, [UInt8]) -> Reply) throws {
        self.reactor = reactor
        tls = TestPKI.context(certificate)
        self.reply = reply
        var any = SocketAddress(ip: "127.0.0.1", port: 1)!
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        listener = try Listener(socket: try Socket.listen(on: any), reactor: reactor) { [unowned self] fd, _ in
            let c = ServerConnection(index: connections.count, fd: fd.release(), server: self)
            connections.append(c)
        }
    }

    func received(_ request: [UInt8], on c: ServerConnection) -> Reply {
        let index = requests.filter { $0.connection == c.index }.count
        requests.append((c.index, request))
        return reply(c.index, index, request)
    }

    /// Closes every connection (close_notify + FIN), as a server ending idle keep-alives does.
    func closeAll() { for c in connections { c.close() } }

    static func response(status: Int = 200, headers: [String] = [], body: String) -> [UInt8] {
        var head = "HTTP/1.1 \(status) OK\r\nContent-Length: \(body.utf8.count)\r\n"
        for h in headers { head += h + "\r\n" }
        return Array((head + "\r\n" + body).utf8)
    }

    final class ServerConnection: EventHandler {
        let index: Int
        private var fd: FileDescriptor
        private var token: Token?
        private let session: TLSSession
        private unowned let server: HTTPSTestServer
        private var input: [UInt8] = []
        private var output: [UInt8] = []
        private(set) var handshakeFailed = false
        private(set) var applicationBytes = 0
        private(set) var closed = false

        init(index: Int, fd: Int32, server: HTTPSTestServer) {
            self.index = index
            self.fd = FileDescriptor(fd)
            self.server = server
            session = server.tls.makeSession(fd: fd)!
            super.init()
            token = try? server.reactor.register(fd: fd, events: Reactor.readable, handler: self)
        }

        override func handleEvent(_ events: UInt32) {
            guard !closed else { return }
            if !session.handshakeDone {
                switch session.handshake() {
                case .done: break
                case .wantRead, .wantWrite: return
                case .failed:
                    handshakeFailed = true
                    return close()
                }
            }
            flush()
            var buf = [UInt8](repeating: 0, count: 16_384)
            while !closed {
                let r = try? buf.withUnsafeMutableBytes { try session.read(into: $0.baseAddress!, count: $0.count) }
                guard let r else { return close() }
                switch r {
                case .wouldBlock: return
                case .done(0): return close()
                case .done(let n):
                    applicationBytes += n
                    input += buf[0..<n]
                    while let whole = takeRequest() { answer(server.received(whole, on: self)) }
                }
            }
        }

        /// One whole request (head + Content-Length body) off the front of `input`.
        private func takeRequest() -> [UInt8]? {
            guard let end = input.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound else { return nil }
            let head = String(decoding: input[..<end], as: UTF8.self).lowercased()
            var length = 0
            if let r = head.range(of: "content-length: ") {
                length = Int(head[r.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            guard input.count >= end + length else { return nil }
            defer { input.removeFirst(end + length) }
            return Array(input[..<(end + length)])
        }

        private func answer(_ reply: Reply) {
            switch reply {
            case .send(let bytes):
                output += bytes
                flush()
            case .sendAndClose(let bytes):
                output += bytes
                flush()
                close()
            case .close: close()
            case .hang: break
            }
        }

        private func flush() {
            while !output.isEmpty {
                guard let r = try? output.withUnsafeBytes({ try session.write(from: $0.baseAddress!, count: $0.count) }),
                      case .done(let n) = r else { return }
                output.removeFirst(n)
            }
        }

        func close() {
            guard !closed else { return }
            closed = true
            if let token { try? server.reactor.deregister(fd: fd.raw, token: token) }
            session.shutdown()
            fd.close()
        }
    }
}
