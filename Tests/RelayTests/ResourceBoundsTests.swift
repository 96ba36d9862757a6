import CEpoll
import Testing
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport
@testable import Relaying

/// Hostile or unlucky peers cannot grow memory, silence the heartbeat or trip deadlines early
/// (each test reproduces a bug found in review, fixed in the same commit).
@Suite(.serialized) struct ResourceBoundsTests {
    typealias WS = WebSocketLoopbackTests

    static func upgradePhone(_ server: LoopbackRelay, serverID: String = "s1") -> RawSocket {
        WS.upgrade(server, path: "/v1/client", serverID: serverID)
    }

    static func connection(_ server: LoopbackRelay, role: Peer.Role) -> Connection? {
        server.relay.peers.values.first { $0.role == role }?.connection
    }

    static func closeFrames(_ c: RawSocket) -> [[UInt8]] {
        WS.frames(c.received).filter { $0.0 == .close }.map { $0.1 }
    }

    /// Sends `unit` repeated `count` times, over and over for 3 s, never reading; returns the
    /// largest number of bytes the relay had queued meanwhile.
    static func peakQueued(_ server: LoopbackRelay, _ c: RawSocket, unit: [UInt8], count: Int) -> Int {
        let blob = Array([[UInt8]](repeating: unit, count: count).joined())
        let end = monotonicMs() + 3_000
        var peak = 0
        while monotonicMs() < end && peak < 64 << 20 {
            c.send(blob)
            for _ in 0..<4 { server.reactor.runOnce(timeoutMs: 0) }
            peak = max(peak, server.context.queuedBytes)
        }
        return peak
    }

    // A client that pipelines requests and never reads must not make the relay queue responses
    // without bound (it answers one request at a time; TCP pushes back on the rest).
    @Test func pipelinedHealthzWithoutReadingIsBounded() throws {
        let server = try LoopbackRelay()
        let c = RawSocket(port: server.port)
        let peak = Self.peakQueued(server, c, unit: Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".utf8), count: 2000)
        #expect(peak < 8 << 20, "relay queued \(peak) bytes of responses for one non-reading client")
    }

    // Pings from a peer that never reads must not be answered into an unbounded queue.
    @Test func pingFloodWithoutReadingIsBounded() throws {
        let server = try LoopbackRelay()
        let c = WS.upgrade(server)
        let ping = FrameEncoder.maskedFrame(opcode: .ping, payload: [UInt8](repeating: 0x61, count: 125), maskKey: 9)
        let peak = Self.peakQueued(server, c, unit: ping, count: 500)
        #expect(peak < 8 << 20, "relay queued \(peak) bytes of pongs for one non-reading client")
    }

    // A claim probe's ping carries a pong deadline like the heartbeat's: a dead incumbent is
    // closed even when the newcomer that probed it leaves before the probe settles.
    @Test func deadIncumbentStillTimesOutAfterAnAbandonedProbe() throws {
        let server = try LoopbackRelay {
            $0.connection.heartbeatIntervalMs = 300
            $0.connection.heartbeatTimeoutMs = 200
            $0.probeTimeoutMs = 5_000
            $0.connection.closeHandshakeTimeoutMs = 200
        }
        let incumbent = WS.upgrade(server)          // never answers anything from now on
        let newcomer = WS.upgrade(server)           // probes the incumbent
        newcomer.close()                            // leaves before the probe settles
        server.pump(timeoutMs: 200) { false }
        // The heartbeat should now ping (or the probe ping time out) and close the silent incumbent.
        let closed = server.pump(timeoutMs: 2_000) { incumbent.poll(); return !Self.closeFrames(incumbent).isEmpty }
        #expect(closed, "dead incumbent never closed; frames seen: \(WS.frames(incumbent.received).map { $0.0 })")
        // It never answers our close either: gone after the close-handshake timeout, slot in grace.
        #expect(server.pump(timeoutMs: 2_000) { server.relay.connectedBinaries == 0 })
    }

    // Each message gets its own 30 s assembly deadline (docs/protocol.md §4), also when it starts in the same
    // read in which the previous one ends.
    @Test func assemblyDeadlineRestartsForTheNextMessage() throws {
        let server = try LoopbackRelay { $0.connection.messageAssemblyTimeoutMs = 600 }
        let c = WS.upgrade(server)
        // Message A starts at t0.
        c.send(FrameEncoder.maskedFrame(opcode: .text, fin: false, payload: Array("{\"a\":".utf8), maskKey: 7))
        server.pump(timeoutMs: 450) { false }
        // t0+450: A ends and B starts in one segment.
        c.send(FrameEncoder.maskedFrame(opcode: .continuation, fin: true, payload: Array("1}".utf8), maskKey: 7)
               + FrameEncoder.maskedFrame(opcode: .text, fin: false, payload: Array("{\"b\":".utf8), maskKey: 7))
        // B is at most ~400 ms old here: well inside its 600 ms budget.
        server.pump(timeoutMs: 400) { c.poll(); return !Self.closeFrames(c).isEmpty }
        #expect(Self.closeFrames(c).isEmpty, "closed early: \(Self.closeFrames(c))")
    }

    // The outbox charges 64 bytes only for messages not yet written (docs/protocol.md §7.5): a phone that keeps
    // up with a steady stream, always with a small backlog, is never closed `phone backlog full`.
    @Test func steadyStreamToAPhoneThatKeepsUpIsNotShed() throws {
        let budget = 1 << 20
        let server = try LoopbackRelay { $0.outboxBudget = budget }
        let binary = WS.upgrade(server)
        let phone = Self.upgradePhone(server)
        phone.send(FrameEncoder.maskedFrame(opcode: .text, payload: Array("{}".utf8), maskKey: 3))
        #expect(server.pump { binary.poll(); return !WS.frames(binary.received).isEmpty })
        let env = String(decoding: WS.frames(binary.received)[0].1, as: UTF8.self)
        let idStart = env.range(of: "\"conn_id\":\"")!.upperBound
        let connID = String(env[idStart...].prefix { $0 != "\"" })
        guard let pc = Self.connection(server, role: .phone) else { Issue.record("no phone"); return }

        func envelope(_ frameBytes: Int) -> [UInt8] {
            let frame = "\"" + String(repeating: "x", count: frameBytes) + "\""
            return FrameEncoder.maskedFrame(opcode: .text, payload: Array("{\"conn_id\":\"\(connID)\",\"frame\":\(frame)}".utf8), maskKey: 5)
        }
        // The binary's bytes its socket has not taken yet: `send` takes what fits (less when the
        // relay falls behind reading on a busy machine), and the next frame must not start inside
        // one that was cut short: the relay would read a broken frame.
        var unsent: [UInt8] = []
        func binarySends(_ bytes: [UInt8]) {
            unsent += bytes
            unsent.removeFirst(binary.send(unsent))
        }
        // Fill the kernel buffers (the phone does not read) until ~100 KB wait in user space.
        var fill = 0
        while pc.queuedBytes < 100_000 && fill < 400 {
            binarySends(envelope(50_000))
            for _ in 0..<3 { server.reactor.runOnce(timeoutMs: 0) }
            fill += 1
        }
        #expect(pc.queuedBytes > 0)
        // Steady state: the phone reads 16 KB per round, the binary sends 16 × ~1 KB per round.
        // A round in which loopback delivered less (a busy machine defers delivery) is made up
        // in the next ones: the phone keeps up on average, as the test's claim needs.
        var maxQueued = 0
        var buf = [UInt8](repeating: 0, count: 16 * 1024)
        var owed = 0, phoneRead = 0
        var rounds = 0
        while rounds < 3_000 && server.relay.connectedPhones == 1 {
            var batch: [UInt8] = []
            for _ in 0..<16 { batch += envelope(1_000) }
            binarySends(batch)
            owed += buf.count
            while owed > 0 {
                let n = buf.withUnsafeMutableBytes { CEpoll.recv(phone.fd, $0.baseAddress, min(owed, $0.count), Int32(MSG_DONTWAIT)) }
                if n <= 0 { break }
                owed -= n
                phoneRead += n
            }
            for _ in 0..<3 { server.reactor.runOnce(timeoutMs: 0) }
            binary.poll(); binary.received.removeAll()
            if server.relay.connectedPhones == 1 { maxQueued = max(maxQueued, pc.queuedBytes) }
            rounds += 1
        }
        // The stream did flow: the relay kept reading the binary and the phone got about what
        // was sent (16 frames of ~1 KB a round), so a pass cannot come from a stalled relay.
        #expect(unsent.count < 1 << 20, "the relay stopped reading the binary: \(unsent.count) bytes unsent")
        #expect(phoneRead >= rounds * 16 * 1_000 * 9 / 10, "the phone read \(phoneRead) bytes in \(rounds) rounds")
        #expect(server.relay.connectedPhones == 1,
                "phone shed after \(rounds) rounds although its queue never exceeded \(maxQueued) of \(budget) bytes")
    }
}
