import CEpoll
import Testing
@testable import RelayReactor
@testable import RelayCodecs

/// WebSocket-level deadlines of docs/protocol.md §4 over real loopback sockets, with the timings shortened.
@Suite(.serialized) struct WebSocketLoopbackTests {
    static func upgrade(_ server: LoopbackRelay, path: String = "/v1/server", serverID: String = "s1") -> RawSocket {
        let c = RawSocket(port: server.port)
        c.send("GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "X-Pyrycode-Server: \(serverID)\r\nX-Pyrycode-Version: 1\r\nX-Pyrycode-Token: t\r\nUser-Agent: test\r\n\r\n")
        let ok = server.pump { c.poll(); return c.text.contains("\r\n\r\n") }
        precondition(ok && c.text.hasPrefix("HTTP/1.1 101 "), "upgrade failed: \(c.text)")
        let head = c.text.range(of: "\r\n\r\n")!
        c.received = Array(c.text[head.upperBound...].utf8)
        return c
    }

    /// Frames the server sent, as (opcode, payload), parsed with our own parser in client mode.
    static func frames(_ bytes: [UInt8]) -> [(Opcode, [UInt8])] {
        var parser = WebSocketParser(maxMessageBytes: 1 << 20, requireMasked: false)
        var out: [(Opcode, [UInt8])] = []
        var copy = bytes
        copy.withUnsafeMutableBytes { buf in
            var off = 0
            loop: while true {
                switch parser.next(UnsafeMutableRawBufferPointer(rebasing: buf[off...])) {
                case .message(let op, let p, let n): out.append((op, Array(p))); off += n
                case .ping(let p, let n): out.append((.ping, Array(p))); off += n
                case .pong(let p, let n): out.append((.pong, Array(p))); off += n
                case .close(let code, let reason, let n):
                    var payload: [UInt8] = []
                    if let c = code { payload = [UInt8(c.rawValue >> 8), UInt8(c.rawValue & 0xff)] + Array(reason) }
                    out.append((.close, payload)); off += n
                case .fragment(let n): off += n
                case .needMore, .violation: break loop
                }
            }
        }
        return out
    }

    @Test func unansweredHeartbeatClosesWith1011() throws {
        let server = try LoopbackRelay {
            $0.connection.heartbeatIntervalMs = 100
            $0.connection.heartbeatTimeoutMs = 150
        }
        let c = Self.upgrade(server)
        let start = monotonicMs()
        #expect(server.pump { c.poll(); return Self.frames(c.received).contains { $0.0 == .close } })
        let elapsed = monotonicMs() - start
        let fs = Self.frames(c.received)
        #expect(fs.first?.0 == .ping)
        #expect(fs.last?.0 == .close)
        #expect(fs.last?.1 == [0x03, 0xF3] + Array("heartbeat timeout".utf8))
        #expect(elapsed >= 240 && elapsed < 2_000)
    }

    @Test func answeredHeartbeatKeepsTheConnection() throws {
        let server = try LoopbackRelay {
            $0.connection.heartbeatIntervalMs = 50
            $0.connection.heartbeatTimeoutMs = 100
        }
        let c = Self.upgrade(server)
        var pongs = 0
        var seen = 0
        server.pump(timeoutMs: 600) {
            c.poll()
            let fs = Self.frames(c.received)
            for f in fs[seen...] where f.0 == .ping {
                c.send(FrameEncoder.maskedFrame(opcode: .pong, payload: f.1, maskKey: 0x01020304))
                pongs += 1
            }
            seen = fs.count
            return false
        }
        #expect(pongs >= 4)
        #expect(!Self.frames(c.received).contains { $0.0 == .close })
        #expect(server.relay.connectedBinaries == 1)
    }

    @Test func theBlockPoolEmptiesOnceAcceptsGoQuiet() throws {
        let server = try LoopbackRelay()
        let clients = (0..<4).map { Self.upgrade(server, serverID: "quiet\($0)") }
        #expect(server.pump { server.relay.connectedBinaries == clients.count })
        #expect(server.context.pool.cachedBlocks > 0, "the request heads and 101s left blocks behind")
        // RelayService.trimQuietMs after the last accept: idle connections hold no buffer.
        #expect(server.pump(timeoutMs: 3_000) { server.context.pool.cachedBlocks == 0 })
    }

    @Test func anIdleConnectionHoldsOneTimerEntry() throws {
        // Interval = timeout, as the defaults: the next beat checks the pong, no entry of its own.
        let server = try LoopbackRelay {
            $0.connection.heartbeatIntervalMs = 60
            $0.connection.heartbeatTimeoutMs = 60
            $0.connection.headerTimeoutMs = 50
        }
        let serviceEntries = server.reactor.timers.count
        let clients = (0..<8).map { Self.upgrade(server, serverID: "idle\($0)") }
        var pings = [Int](repeating: 0, count: clients.count)
        var seen = [Int](repeating: 0, count: clients.count)
        // Every client answers three beats (the header-timeout entries are long gone by then).
        #expect(server.pump {
            for (i, c) in clients.enumerated() {
                c.poll()
                let fs = Self.frames(c.received)
                for f in fs[seen[i]...] where f.0 == .ping {
                    c.send(FrameEncoder.maskedFrame(opcode: .pong, payload: f.1, maskKey: 0x01020304))
                    pings[i] += 1
                }
                seen[i] = fs.count
            }
            return pings.allSatisfy { $0 >= 3 }
        })
        #expect(server.relay.connectedBinaries == clients.count)
        // The service's own (housekeeping, log interval) and at most one trim besides.
        #expect(server.reactor.timers.count <= serviceEntries + 1 + clients.count)
    }

    @Test func unfinishedFragmentedMessageClosesWith1008() throws {
        let server = try LoopbackRelay { $0.connection.messageAssemblyTimeoutMs = 150 }
        let c = Self.upgrade(server)
        c.send(FrameEncoder.maskedFrame(opcode: .text, fin: false, payload: Array("{\"a\":".utf8), maskKey: 7))
        let start = monotonicMs()
        #expect(server.pump { c.poll(); return Self.frames(c.received).contains { $0.0 == .close } })
        #expect(monotonicMs() - start >= 140)
        #expect(Self.frames(c.received).last?.1.prefix(2) == [0x03, 0xF0])
    }

    @Test func peerThatNeverAnswersOurCloseIsDroppedAfterTheCloseTimeout() throws {
        let server = try LoopbackRelay { $0.connection.closeHandshakeTimeoutMs = 150 }
        let second = Self.upgrade(server, serverID: "quiet")
        // Draining sends 1001 to every connection; this peer never answers it.
        server.relay.beginDrain()
        let start = monotonicMs()
        #expect(server.pump { second.poll(); return second.eof })
        #expect(monotonicMs() - start >= 140)
        #expect(Self.frames(second.received).contains { $0.0 == .close && $0.1.prefix(2) == [0x03, 0xE9] })
    }

    @Test func unmaskedClientFrameIsAProtocolError() throws {
        let server = try LoopbackRelay()
        let c = Self.upgrade(server)
        c.send([0x81, 0x02, 0x7b, 0x7d])  // unmasked text "{}"
        #expect(server.pump { c.poll(); return c.eof })
        #expect(Self.frames(c.received).last?.1 == [0x03, 0xEA])
    }
}
