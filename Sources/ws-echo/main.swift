// Test-only RFC 6455 echo server on the relay's own WebSocket layer, for Autobahn|Testsuite.
// Not a route of the production relay: it shares only the transport and WebSocket code.
import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayTransport
import RelayOperations

final class EchoService: ConnectionDelegate {
    let context: IOContext
    var settings = ConnectionSettings()
    var permessageDeflate = false
    var live: [ObjectIdentifier: Connection] = [:]

    init(context: IOContext) { self.context = context }

    func accept(fd: consuming FileDescriptor, remote: SocketAddress) {
        Socket.setNoDelay(fd.raw)
        let c = Connection(fd: fd, remote: remote, context: context, settings: settings, delegate: self)
        do { try c.start() } catch { return }
        live[ObjectIdentifier(c)] = c
    }

    override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
        switch WebSocketHandshake.validate(head) {
        case .accept(let key):
            let deflate = permessageDeflate ? c.acceptPerMessageDeflate(head) : nil
            return .upgrade(acceptKey: key, extraHeaders: deflate.map { [$0] } ?? [])
        case .reject(let status, let extra): return .respond(HTTPResponse.error(status, close: true, extraHeaders: extra), close: true)
        }
    }

    override func connectionDidUpgrade(_ c: Connection) {}

    override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
        c.sendFrame(opcode: opcode, payload: payload)
    }

    override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        live[ObjectIdentifier(c)] = nil
    }
}

func fail(_ message: String) -> Never {
    var line = "ws-echo: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

var listen = "127.0.0.1:9001"
var maxMessage = Limits.maxMessageBytes
var permessageDeflate = false
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--listen":
        guard let v = args.next() else { fail("--listen needs an address") }
        listen = v
    case "--max-message-bytes":
        guard let v = args.next().flatMap({ Int($0) }), v > 0 else { fail("--max-message-bytes needs a positive integer") }
        maxMessage = v
    case "--permessage-deflate":
        permessageDeflate = true
    default: fail("unknown argument \(a)")
    }
}

do {
    let signals = try SignalChannel([SIGTERM, SIGINT])
    let reactor = try Reactor()
    let context = IOContext(reactor: reactor)
    let service = EchoService(context: context)
    service.settings.maxMessageBytes = maxMessage
    service.permessageDeflate = permessageDeflate
    let address: SocketAddress
    do { address = try SocketAddress(parsing: listen) } catch { fail("bad --listen \(listen)") }
    let listener = try Listener(socket: try Socket.listen(on: address), reactor: reactor) { fd, remote in
        service.accept(fd: fd, remote: remote)
    }
    final class SignalHandler: EventHandler {
        let channel: SignalChannel
        let reactor: Reactor
        init(_ c: SignalChannel, _ r: Reactor) { channel = c; reactor = r }
        override func handleEvent(_ events: UInt32) { while channel.next() != nil { reactor.stop() } }
    }
    let sh = SignalHandler(signals, reactor)
    _ = try reactor.register(fd: signals.fd, events: Reactor.readable, handler: sh)
    var line = "ws-echo listening on \(listener.address)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    reactor.run()
} catch {
    fail("\(error)")
}
