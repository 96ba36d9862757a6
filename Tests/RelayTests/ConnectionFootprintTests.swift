import CEpoll
import Glibc
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport

/// What an idle WebSocket connection costs (docs/benchmarks.md, M1): one object of at most
/// 184 usable bytes (a 192-byte malloc chunk), made of compact parts, which still behave as the wide ones did.
@Suite struct ConnectionFootprintTests {
    /// Upgrades every request; notes the client address seen while admitting it.
    final class Upgrader: ConnectionDelegate {
        var upgraded = false
        var closed = false
        var remoteAtRequest = ""
        override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
            remoteAtRequest = c.remote.ipString
            guard case .accept(let key) = WebSocketHandshake.validate(head) else { return .drop }
            return .upgrade(acceptKey: key, extraHeaders: [])
        }
        override func connectionDidUpgrade(_ c: Connection) { upgraded = true }
        override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {}
        override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) { closed = true }
    }

    /// A connection over a socketpair, upgraded; the other end is `client`.
    struct Upgraded {
        let reactor: Reactor
        let connection: Connection
        let delegate: Upgrader
        let client: Int32

        init(_ settings: ConnectionSettings = ConnectionSettings()) throws {
            var pair: [Int32] = [0, 0]
            precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
            client = pair[1]
            reactor = try Reactor()
            delegate = Upgrader()
            connection = Connection(fd: FileDescriptor(pair[0]), remote: SocketAddress(ip: "192.0.2.7", port: 1)!,
                                    context: IOContext(reactor: reactor), settings: settings, delegate: delegate)
            try connection.start()
            let request = "GET /v1/server HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            _ = Array(request.utf8).withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
            for _ in 0..<100 where !delegate.upgraded { reactor.runOnce(timeoutMs: 10) }
        }
    }

    @Test func idleUpgradedConnectionIsOneObjectOfAtMost184Bytes() throws {
        let settings = ConnectionSettings()
        let u = try Upgraded(settings)
        defer { _ = close(u.client) }
        #expect(u.delegate.upgraded && u.connection.wasUpgraded)
        let usable = malloc_usable_size(Unmanaged.passUnretained(u.connection).toOpaque())
        #expect(usable <= 184, "Connection takes \(usable) usable bytes")
        // What the request phase needed is gone with it: the address was there for admission.
        #expect(u.delegate.remoteAtRequest == "192.0.2.7")
        #expect(u.connection.remote == .unknown && u.connection.remote.ipString == "")
        #expect(u.connection.settings === settings)
    }

    @Test func partsKeepTheirCompactSizes() {
        #expect(MemoryLayout<ByteBuffer>.size == 20)
        #expect(MemoryLayout<WebSocketParser>.size <= 36)
        #expect(MemoryLayout<ConnectionDeadlines>.size == 12)
        #expect(MemoryLayout<Backpressure>.size == 10)
        #expect(MemoryLayout<ShortDeadline>.size == 4)
    }

    @Test func shortDeadlineComparesAcrossTheWrapOfItsLowBits() {
        let t = Int64(UInt32.max) - 5  // the low 32 bits wrap 6 ms later
        let d = ShortDeadline(ms: t + 10)
        #expect(d.isArmed && !d.hasPassed(t) && !d.hasPassed(t + 9) && d.hasPassed(t + 10) && d.hasPassed(t + 11))
        #expect(d.ms(near: t) == t + 10 && d.ms(near: t + 20) == t + 10)
        // Far from 0 as well: the comparison is of the distance, not of the raw values.
        let late = ShortDeadline(ms: 5_000_000_000_123)
        #expect(!late.hasPassed(5_000_000_000_122) && late.hasPassed(5_000_000_000_123))
        #expect(late.hasPassed(5_000_000_000_123 + ShortDeadline.maxSpanMs))
        #expect(!ShortDeadline(ms: 5_000_000_000_123 + ShortDeadline.maxSpanMs).hasPassed(5_000_000_000_123))
    }

    @Test func unarmedShortDeadlineNeverPasses() {
        for now: Int64 in [0, 1, Int64(UInt32.max), 1 << 32, 1 << 40] {
            #expect(!ShortDeadline.unarmed.hasPassed(now) && !ShortDeadline.unarmed.isArmed)
        }
        // A time whose low 32 bits are 0 stays armed, kept 1 ms early.
        let wrap = ShortDeadline(ms: 1 << 32)
        #expect(wrap.isArmed && wrap.hasPassed(1 << 32) && !wrap.hasPassed((1 << 32) - 2))
        #expect(wrap.ms(near: 1 << 32) == (1 << 32) - 1)
    }

    @Test func eachConnectionSeesItsOwnSettingsThroughItsContext() throws {
        let context = IOContext(reactor: try Reactor())
        let a = ConnectionSettings(), b = ConnectionSettings()
        let ia = context.index(of: a), ib = context.index(of: b)
        #expect(ia != ib && context.index(of: a) == ia)
        #expect(context.connectionSettings(ia) === a && context.connectionSettings(ib) === b)
    }

    @Test func messageLimitAboveTheCeilingIsLowered() {
        #expect(WebSocketParser(maxMessageBytes: Int.max / 2).maxMessageBytes == Limits.maxMessageBytesCeiling)
        #expect(WebSocketParser(maxMessageBytes: 1_000).maxMessageBytes == 1_000)
    }

    @Test func waterMarksBeyond32BitsMeanNever() {
        var b = Backpressure()
        #expect(b.highWater == Int(UInt32.max) && b.lowWater == 0)
        b.highWater = 300_000
        b.lowWater = 100_000
        #expect(b.highWater == 300_000 && b.lowWater == 100_000)
        b.highWater = Int.max
        #expect(b.highWater >= ByteBuffer.maxCapacity)
    }

    /// The pong deadline and the linger deadline share a slot: a connection closed with a ping
    /// outstanding (its pong due in a minute) still lingers only for the close timeout.
    @Test func backlogCloseWithAPingOutstandingLingersForTheCloseTimeoutOnly() throws {
        let settings = ConnectionSettings()
        settings.heartbeatTimeoutMs = 60_000
        settings.closeHandshakeTimeoutMs = 100
        let u = try Upgraded(settings)
        defer { _ = close(u.client) }
        #expect(u.delegate.upgraded)
        u.connection.sendPing()
        #expect(u.connection.pingOutstanding)
        u.connection.closeDroppingBacklog(code: .goingAway, reason: "backlog")
        let start = monotonicMs()
        // The client never answers nor closes: the linger deadline alone ends the connection.
        while !u.delegate.closed && monotonicMs() - start < 5_000 { u.reactor.runOnce(timeoutMs: 50) }
        #expect(u.delegate.closed)
        let elapsed = monotonicMs() - start
        #expect(elapsed >= 90 && elapsed < 5_000, "closed after \(elapsed) ms")
    }

    /// A probe's ping (the relay's, not the heartbeat's) is bounded by the heartbeat timeout
    /// even when the next beat is far off: its pong deadline has a timer entry of its own.
    @Test func unansweredProbePingClosesAtTheHeartbeatTimeoutNotAtTheNextBeat() throws {
        let settings = ConnectionSettings()
        settings.heartbeatIntervalMs = 60_000
        settings.heartbeatTimeoutMs = 100
        let u = try Upgraded(settings)
        defer { _ = close(u.client) }
        #expect(u.delegate.upgraded)
        let start = monotonicMs()
        u.connection.sendPing()
        while u.connection.state == .open && monotonicMs() - start < 5_000 { u.reactor.runOnce(timeoutMs: 50) }
        let elapsed = monotonicMs() - start
        #expect(u.connection.state == .closeSent && u.connection.localCloseCode == .internalError)
        #expect(elapsed >= 90 && elapsed < 5_000, "closed after \(elapsed) ms")
    }
}
