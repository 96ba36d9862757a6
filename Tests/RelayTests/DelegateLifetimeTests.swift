import CEpoll
import Glibc
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport

/// A connection calls its delegate borrowed (no retain per message), so a delegate whose own
/// callback closes its connection — and so loses its last owner in `connectionDidClose`, as a
/// relay `Peer` that sheds itself does — must still live until that callback returns.
@Suite struct DelegateLifetimeTests {
    final class Events { var list: [String] = [] }
    final class Holder { var delegate: SelfClosing? }

    /// Upgrades; on its first message closes its own connection, then notes it got back.
    final class SelfClosing: ConnectionDelegate {
        let events: Events
        unowned let holder: Holder
        init(events: Events, holder: Holder) {
            self.events = events
            self.holder = holder
        }
        deinit { events.list.append("deinit") }
        override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
            guard case .accept(let key) = WebSocketHandshake.validate(head) else { return .drop }
            return .upgrade(acceptKey: key, extraHeaders: [])
        }
        override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
            c.abort()
            events.list.append("callback returned")  // `self` must still be alive here
        }
        override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
            events.list.append("closed")
            holder.delegate = nil  // the application lets go of it, as the relay does of a peer
        }
    }

    @Test func aDelegateClosedByItsOwnCallbackLivesUntilTheIterationEnds() throws {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer { _ = close(pair[1]) }
        let reactor = try Reactor()
        let events = Events()
        let holder = Holder()
        holder.delegate = SelfClosing(events: events, holder: holder)
        weak var gone = holder.delegate
        let connection = Connection(fd: FileDescriptor(pair[0]), remote: SocketAddress(ip: "192.0.2.7", port: 1)!,
                                    context: IOContext(reactor: reactor), settings: ConnectionSettings(),
                                    delegate: holder.delegate!)
        try connection.start()
        let request = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        _ = Array(request.utf8).withUnsafeBytes { write(pair[1], $0.baseAddress, $0.count) }
        for _ in 0..<100 where !connection.wasUpgraded { reactor.runOnce(timeoutMs: 10) }
        try #require(connection.wasUpgraded)

        let frame = FrameEncoder.maskedFrame(opcode: .text, payload: Array("{}".utf8), maskKey: 0x0102_0304)
        _ = frame.withUnsafeBytes { write(pair[1], $0.baseAddress, $0.count) }
        for _ in 0..<100 where events.list.isEmpty { reactor.runOnce(timeoutMs: 10) }
        // Closed inside the callback, which then returned to a live object; freed at the end of
        // that loop iteration, not leaked.
        #expect(events.list == ["closed", "callback returned", "deinit"])
        #expect(gone == nil)
    }
}
