import CEpoll
import Testing
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport

/// Memory held by unfinished messages and by phone backlogs, over real loopback sockets: what
/// is charged to the global budget (`--max-buffered-bytes`), who is shed over it and how, and
/// the close frame a phone gets when its own outbox overflows.
@Suite(.serialized) struct BufferBudgetTests {
    typealias WS = WebSocketLoopbackTests

    static func phone(_ server: LoopbackRelay) -> (RawSocket, Connection) {
        // Strong references: a connection freed meanwhile could hand its address (and so its
        // ObjectIdentifier) to the new one.
        let before = server.relay.peers.values.map(\.connection)
        let p = WS.upgrade(server, path: "/v1/client", serverID: "s1")
        let c = server.relay.peers.values.map(\.connection).first { new in !before.contains { $0 === new } }!
        return (p, c)
    }

    /// Sends every byte, running the loop whenever the socket is full.
    static func sendAll(_ server: LoopbackRelay, _ s: RawSocket, _ bytes: [UInt8]) {
        var off = 0
        let end = monotonicMs() + 10_000
        while off < bytes.count && monotonicMs() < end {
            off += s.send(Array(bytes[off...]))
            server.reactor.runOnce(timeoutMs: 0)
        }
        precondition(off == bytes.count, "send stalled")
    }

    /// A masked text frame carrying a JSON string of `length` bytes (mask key 0: fast to build).
    static func jsonFrame(_ length: Int, fin: Bool = true, opcode: Opcode = .text) -> [UInt8] {
        let body = [UInt8(ascii: "\"")] + [UInt8](repeating: UInt8(ascii: "a"), count: length - 2) + [UInt8(ascii: "\"")]
        return FrameEncoder.maskedFrame(opcode: opcode, fin: fin, payload: body, maskKey: 0)
    }

    static func closeFrames(_ s: RawSocket) -> [[UInt8]] {
        WS.frames(s.received).filter { $0.0 == .close }.map { $0.1 }
    }

    static let budgetClose: [UInt8] = [0x03, 0xF3] + Array(Connection.bufferBudgetReason.utf8)

    // The charge is the buffers' capacity, and it follows the bytes the peer sent: a header
    // announcing 200 KB costs one growth step, not 200 KB; a finished message frees it at once.
    @Test func heldBytesFollowWhatArrivedAndAreFreedWhenTheMessageCompletes() throws {
        let server = try LoopbackRelay()
        let binary = WS.upgrade(server)
        let (p, pc) = Self.phone(server)
        let frame = Self.jsonFrame(200_000)
        Self.sendAll(server, p, Array(frame[..<24]))
        #expect(server.pump { pc.heldBytes > 0 })
        #expect(pc.heldBytes <= 24 + Limits.inputGrowthStep, "charged \(pc.heldBytes) for 24 bytes")
        #expect(server.context.heldBytes == pc.heldBytes)
        Self.sendAll(server, p, Array(frame[24..<150_000]))
        #expect(server.pump { pc.heldBytes >= 150_000 })
        #expect(pc.heldBytes <= frame.count, "more than the frame: \(pc.heldBytes)")
        Self.sendAll(server, p, Array(frame[150_000...]))
        #expect(server.pump { binary.poll(); return binary.received.count > 200_000 })
        #expect(pc.heldBytes == 0 && server.context.heldBytes == 0)

        // Fragments: the assembly is charged while the message is open.
        Self.sendAll(server, p, Self.jsonFrame(100_000, fin: false))
        #expect(server.pump { pc.heldBytes >= 100_000 })
        #expect(server.context.heldBytes == pc.heldBytes)
        Self.sendAll(server, p, FrameEncoder.maskedFrame(opcode: .continuation, payload: [], maskKey: 0))
        #expect(server.pump { pc.heldBytes == 0 })

        // A connection that leaves with a partial message gives its charge back.
        Self.sendAll(server, p, Array(Self.jsonFrame(100_000)[..<60_000]))
        #expect(server.pump { pc.heldBytes > 0 })
        p.close()
        #expect(server.pump { server.context.heldBytes == 0 && server.relay.connectedPhones == 0 })
    }

    // Over the budget the largest holder goes first, with 1011 and a reason; the connection
    // whose growth hit the budget and a smaller holder keep working.
    @Test func overBudgetTheLargestAssemblerIsClosed1011() throws {
        let budget = 400 * 1024
        let server = try LoopbackRelay { $0.maxBufferedBytes = budget }
        let binary = WS.upgrade(server)
        let (big, bigC) = Self.phone(server)
        let (small, smallC) = Self.phone(server)
        let (grower, growerC) = Self.phone(server)
        let bigFrame = Self.jsonFrame(240_000)
        Self.sendAll(server, big, Array(bigFrame[..<230_000]))
        #expect(server.pump { bigC.heldBytes >= 230_000 })
        Self.sendAll(server, small, Array(Self.jsonFrame(100_000)[..<90_000]))
        #expect(server.pump { smallC.heldBytes >= 90_000 })
        let growerFrame = Self.jsonFrame(240_000)
        var peak = 0
        var off = 0
        while off < growerFrame.count {
            let n = min(8_192, growerFrame.count - off)
            Self.sendAll(server, grower, Array(growerFrame[off..<(off + n)]))
            off += n
            for _ in 0..<3 { server.reactor.runOnce(timeoutMs: 0) }
            peak = max(peak, server.context.heldBytes)
        }
        // The grower's message went through whole.
        #expect(server.pump { binary.poll(); return binary.received.count > 240_000 })
        #expect(growerC.state == .open && smallC.state == .open)
        #expect(bigC.localCloseCode == .internalError)
        #expect(server.pump { big.poll(); return !Self.closeFrames(big).isEmpty })
        #expect(Self.closeFrames(big) == [Self.budgetClose])
        #expect(peak <= budget, "held \(peak) bytes over a \(budget) budget")
        #expect(Self.closeFrames(small).isEmpty)
    }

    // A growth that cannot fit even after every other holder is gone is refused: the grower is
    // closed 1011 rather than allowed past the budget.
    @Test func aGrowthThatCannotFitClosesTheGrower() throws {
        let budget = 64 * 1024
        let server = try LoopbackRelay { $0.maxBufferedBytes = budget }
        let binary = WS.upgrade(server)
        defer { withExtendedLifetime(binary) {} }
        let (p, pc) = Self.phone(server)
        Self.sendAll(server, p, Array(Self.jsonFrame(200_000)[..<150_000]))
        #expect(server.pump { p.poll(); return !Self.closeFrames(p).isEmpty })
        #expect(Self.closeFrames(p) == [Self.budgetClose])
        #expect(pc.heldBytes == 0 && server.context.bufferedBytes <= budget)
    }

    // A frame header cut short holds a buffer too: the 30 s message deadline (here shortened)
    // starts with its first byte, so it cannot be held forever.
    @Test func aPartialFrameHeaderMeetsTheMessageDeadline() throws {
        let server = try LoopbackRelay { $0.connection.messageAssemblyTimeoutMs = 300 }
        let c = WS.upgrade(server)
        Self.sendAll(server, c, [0x81])
        #expect(server.pump(timeoutMs: 3_000) { c.poll(); return !Self.closeFrames(c).isEmpty })
        #expect(Self.closeFrames(c) == [[0x03, 0xF0] + Array("message timeout".utf8)])
    }

    // A ping that arrives in two pieces leaves no deadline behind once it is whole: an idle
    // connection afterwards is not closed `message timeout`.
    @Test func aSplitPingLeavesNoMessageDeadlineArmed() throws {
        let server = try LoopbackRelay { $0.connection.messageAssemblyTimeoutMs = 300 }
        let c = WS.upgrade(server)
        let ping = FrameEncoder.maskedFrame(opcode: .ping, payload: Array("hello".utf8), maskKey: 0x01020304)
        Self.sendAll(server, c, Array(ping[..<3]))
        server.pump(timeoutMs: 50) { false }
        Self.sendAll(server, c, Array(ping[3...]))
        #expect(server.pump { c.poll(); return WS.frames(c.received).contains { $0.0 == .pong } })
        // Three deadlines' worth of idle time: nothing may close it.
        server.pump(timeoutMs: 900) { c.poll(); return !Self.closeFrames(c).isEmpty }
        #expect(Self.closeFrames(c).isEmpty)
    }

    // MARK: phone backlog (docs/operations.md, "Memory")

    static func connID(_ server: LoopbackRelay, _ binary: RawSocket, _ phone: RawSocket) -> String {
        Self.sendAll(server, phone, FrameEncoder.maskedFrame(opcode: .text, payload: Array("{}".utf8), maskKey: 3))
        _ = server.pump { binary.poll(); return !WS.frames(binary.received).isEmpty }
        let env = String(decoding: WS.frames(binary.received).last!.1, as: UTF8.self)
        binary.received.removeAll()
        let idStart = env.range(of: "\"conn_id\":\"")!.upperBound
        return String(env[idStart...].prefix { $0 != "\"" })
    }

    /// Floods `phone` (which does not read) from `binary` with 50 KB messages until the relay
    /// gives up on it: first one at a time until one stays queued (the kernel's buffers are full,
    /// a frame is partly written), then past the outbox budget.
    static func floodUntilOverflow(_ server: LoopbackRelay, _ binary: RawSocket, _ connID: String, _ pc: Connection) {
        var small: Int32 = 4096
        _ = setsockopt(pc.fd, SOL_SOCKET, SO_SNDBUF, &small, 4)
        let frame = "\"" + String(repeating: "x", count: 50_000) + "\""
        let env = FrameEncoder.maskedFrame(opcode: .text, payload: Array("{\"conn_id\":\"\(connID)\",\"frame\":\(frame)}".utf8), maskKey: 0)
        var sent = 0
        while sent < 400 {
            Self.sendAll(server, binary, env)
            sent += 1
            if !server.pump(timeoutMs: 100, until: { pc.queuedBytes == 0 }) { break }
        }
        while pc.localCloseCode == nil && sent < 800 {
            Self.sendAll(server, binary, env)
            for _ in 0..<2 { server.reactor.runOnce(timeoutMs: 0) }
            sent += 1
        }
    }

    /// Parses the server's bytes; nil unless they are whole frames from the first byte to the last.
    static func wholeFrames(_ bytes: [UInt8]) -> [(Opcode, [UInt8])]? {
        var off = 0
        var out: [(Opcode, [UInt8])] = []
        while off < bytes.count {
            guard let n = bytes[off...].withUnsafeBytes({ FrameEncoder.frameLength($0) }), off + n <= bytes.count else { return nil }
            let frame = WS.frames(Array(bytes[off..<(off + n)]))
            guard frame.count == 1 else { return nil }
            out.append(frame[0])
            off += n
        }
        return out
    }

    // The phone that stopped reading gets, once it reads again, the frames the kernel already
    // had, the rest of the frame being written, then a close frame 1011 `phone backlog full`:
    // every byte parses as whole frames. The binary hears 1011 in the close notice.
    @Test func anOverflowingPhoneGetsACloseFrameBehindWholeFrames() throws {
        let server = try LoopbackRelay { $0.outboxBudget = 256 * 1024 }
        let binary = WS.upgrade(server)
        let (phone, pc) = Self.phone(server)
        let id = Self.connID(server, binary, phone)
        Self.floodUntilOverflow(server, binary, id, pc)
        #expect(pc.localCloseCode == .internalError)
        // The socket takes less than one 50 KB frame: the rest of the first one stays queued,
        // with the close frame behind it; the frames after it are gone.
        #expect(pc.queuedBytes > 22 && pc.queuedBytes < 50_000 + 22, "queued after the cut: \(pc.queuedBytes)")
        // Now it reads.
        #expect(server.pump { phone.poll(); return phone.eof })
        guard let frames = Self.wholeFrames(phone.received) else {
            Issue.record("the phone's stream is not whole frames (\(phone.received.count) bytes)")
            return
        }
        #expect(frames.last?.0 == .close)
        #expect(frames.last?.1 == [0x03, 0xF3] + Array("phone backlog full".utf8))
        let data = frames.dropLast().filter { $0.0 == .text }
        #expect(!data.isEmpty && data.allSatisfy { $0.1.count == 50_002 })
        phone.close()
        #expect(server.pump { binary.poll(); return String(decoding: binary.received, as: UTF8.self).contains("\"close_code\":1011") })
        #expect(server.pump { server.relay.metrics.closedByCode[1011] == 1 })
    }

    // A phone that never reads again cannot receive the close frame: it is dropped at the
    // write-stall timeout (shortened here), and the binary hears 1011.
    @Test func anOverflowingPhoneThatNeverReadsIsDroppedAtTheWriteStall() throws {
        let server = try LoopbackRelay {
            $0.outboxBudget = 256 * 1024
            $0.connection.writeStallTimeoutMs = 400
        }
        let binary = WS.upgrade(server)
        let (phone, pc) = Self.phone(server)
        let id = Self.connID(server, binary, phone)
        Self.floodUntilOverflow(server, binary, id, pc)
        #expect(pc.localCloseCode == .internalError && pc.state == .closing, "state \(pc.state)")
        let t0 = monotonicMs()
        // It left the registry at once: the binary hears 1011 before the socket goes.
        #expect(server.relay.connectedPhones == 0)
        #expect(server.pump { binary.poll(); return String(decoding: binary.received, as: UTF8.self).contains("\"close_code\":1011") })
        #expect(server.pump(timeoutMs: 3_000) { pc.state == .closed })
        #expect(monotonicMs() - t0 <= 1_500)
        #expect(server.relay.metrics.closedByCode[1011] == 1)
        phone.poll()
        #expect(Self.closeFrames(phone).isEmpty, "the close frame cannot have been written")
    }
}
