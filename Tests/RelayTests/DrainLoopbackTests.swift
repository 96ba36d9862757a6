import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport

/// The output water marks of docs/protocol.md §7.5 on a real socket: once a queue has reached its
/// high-water mark, `connectionDidDrain` fires as soon as it falls to the low-water mark — while
/// bytes still wait, not only when the queue is empty.
@Suite struct DrainLoopbackTests {
    /// Upgrades every request and records each drain with the queue's size at that moment.
    final class Recorder: ConnectionDelegate {
        var upgraded = false
        var drainedAt: [Int] = []
        override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
            guard case .accept(let key) = WebSocketHandshake.validate(head) else { return .drop }
            return .upgrade(acceptKey: key, extraHeaders: [])
        }
        override func connectionDidUpgrade(_ c: Connection) { upgraded = true }
        override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {}
        override func connectionDidDrain(_ c: Connection) { drainedAt.append(c.queuedBytes) }
        override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {}
    }

    @Test func drainFiresAtTheLowWaterMarkWhileBytesStillWait() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        let client = pair[1]
        defer { _ = close(client) }
        // Small kernel buffers, so the queue is ours to watch rather than the kernel's.
        var small: Int32 = 4_096
        _ = setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &small, 4)
        _ = setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, 4)

        let reactor = try Reactor()
        let recorder = Recorder()
        let c = Connection(fd: FileDescriptor(pair[0]), remote: SocketAddress(ip: "127.0.0.1", port: 1)!,
                           context: IOContext(reactor: reactor), settings: ConnectionSettings(), delegate: recorder)
        try c.start()
        let request = "GET /v1/server HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        #expect(Array(request.utf8).withUnsafeBytes { write(client, $0.baseAddress, $0.count) } == request.utf8.count)
        for _ in 0..<100 where !recorder.upgraded { reactor.runOnce(timeoutMs: 10) }
        #expect(recorder.upgraded)

        let highWater = 64 * 1024, lowWater = 16 * 1024
        c.backpressure.highWater = highWater
        c.backpressure.lowWater = lowWater
        let message = [UInt8](repeating: 0x61, count: 1_024)
        for _ in 0..<128 { message.withUnsafeBytes { c.sendFrame(opcode: .binary, payload: $0) } }
        reactor.runOnce(timeoutMs: 0)
        #expect(c.queuedBytes > highWater)

        // The client reads 4 KiB per loop iteration: the queue shrinks a little each time.
        var sink = [UInt8](repeating: 0, count: 4_096)
        var rounds = 0
        while recorder.drainedAt.isEmpty && c.queuedBytes > 0 && rounds < 10_000 {
            _ = sink.withUnsafeMutableBytes { read(client, $0.baseAddress, $0.count) }
            reactor.runOnce(timeoutMs: 0)
            rounds += 1
        }
        #expect(recorder.drainedAt.count == 1)
        let at = recorder.drainedAt.first ?? -1
        #expect(at > 0 && at <= lowWater, "drained with \(at) bytes queued")
    }
}
