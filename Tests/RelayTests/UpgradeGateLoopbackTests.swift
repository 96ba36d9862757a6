import Testing
@testable import RelayCodecs
@testable import RelayCore
@testable import RelayOperations
@testable import Relaying

/// The upgrade routes' statuses over loopback sockets, byte for byte: the header gate
/// (server-id, body), the RFC 6455 checks, and their order.
@Suite(.serialized) struct UpgradeGateLoopbackTests {
    static let plain400 = Array(("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + "Content-Length: 0\r\nConnection: close\r\n\r\n").utf8)

    /// An upgrade request for `path` with the given server-id bytes; `lines` are added after the
    /// usual ones, `requestLine` replaces the first line, `upgrade: false` drops `Upgrade`.
    static func request(
        _ path: String = "/v1/server", serverID: [UInt8], requestLine: String? = nil, host: String = "x",
        upgrade: Bool = true, version: String = "13", lines: [String] = []
    ) -> [UInt8] {
        var raw = Array(((requestLine ?? "GET \(path) HTTP/1.1") + "\r\nHost: \(host)\r\n"
            + (upgrade ? "Upgrade: websocket\r\n" : "")
            + "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + "Sec-WebSocket-Version: \(version)\r\nX-Pyrycode-Version: 1\r\nX-Pyrycode-Token: t\r\n"
            + "User-Agent: test\r\n").utf8)
        raw += Array("X-Pyrycode-Server: ".utf8) + serverID + [0x0D, 0x0A]
        for line in lines { raw += Array((line + "\r\n").utf8) }
        return raw + [0x0D, 0x0A]
    }

    /// Sends `bytes` on a new connection and returns everything received until the relay closes
    /// it (nil if it did not close within the pump deadline).
    static func answer(_ server: LoopbackRelay, _ bytes: [UInt8]) -> [UInt8]? {
        let c = RawSocket(port: server.port)
        #expect(c.send(bytes) == bytes.count)
        guard server.pump(until: { c.poll(); return c.eof }) else { return nil }
        return c.received
    }

    /// Sends `bytes` and waits for a complete response head; returns the received text.
    static func head(_ server: LoopbackRelay, _ bytes: [UInt8], keep: inout [RawSocket]) -> String {
        let c = RawSocket(port: server.port)
        keep.append(c)
        #expect(c.send(bytes) == bytes.count)
        server.pump { c.poll(); return c.text.contains("\r\n\r\n") || c.eof }
        return c.text
    }

    static func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }

    func rejectHeaders(_ server: LoopbackRelay, _ e: Endpoint) -> Int {
        server.relay.metrics.upgrades[e.rawValue * RelayCounters.UpgradeOutcome.allCases.count
            + RelayCounters.UpgradeOutcome.rejectHeaders.rawValue]
    }

    @Test func distinctRawServerIDsNeverMeet() throws {
        let server = try LoopbackRelay()
        // A binary claiming `coll\xFF` is refused, so nothing holds "coll\u{FFFD}"...
        #expect(Self.answer(server, Self.request(serverID: Self.ascii("coll") + [0xFF])) == Self.plain400)
        #expect(server.relay.connectedBinaries == 0)
        // ...and phones with `coll\xFE` / `coll\xC3` are refused at the gate, not sent to 4404.
        for tail: [UInt8] in [[0xFE], [0xC3]] {
            #expect(Self.answer(server, Self.request("/v1/client", serverID: Self.ascii("coll") + tail)) == Self.plain400)
        }
        #expect(rejectHeaders(server, .server) == 1)
        #expect(rejectHeaders(server, .client) == 2)
    }

    @Test func serverIDsOutsideVisibleASCIIOrOver128BytesGet400() throws {
        let server = try LoopbackRelay()
        let refused: [[UInt8]] = [
            Self.ascii("a b"), Self.ascii("a") + [0x01] + Self.ascii("b"), Self.ascii("a") + [0x7F] + Self.ascii("b"),
            [UInt8](repeating: 0x61, count: 129), Self.ascii("caf") + [0xC3, 0xA9],
        ]
        for id in refused {
            #expect(Self.answer(server, Self.request(serverID: id)) == Self.plain400, "\(id.prefix(8))…")
        }
        var keep: [RawSocket] = []
        let longest = (0..<128).map { UInt8(0x21 + $0 % 94) }  // every visible byte, 128 in all
        #expect(Self.head(server, Self.request(serverID: longest), keep: &keep).hasPrefix("HTTP/1.1 101 "))
        #expect(server.pump { server.relay.connectedBinaries == 1 })
    }

    @Test func upgradeWithABodyGets400AndNothingAfterIt() throws {
        let server = try LoopbackRelay()
        // A masked ping as a 14-byte "body": parsed as a frame it would be answered with a pong.
        let ping = FrameEncoder.maskedFrame(opcode: .ping, fin: true, payload: Self.ascii("bodyping"), maskKey: 0x0102_0304)
        #expect(ping.count == 14)
        let withLength = Self.request(serverID: Self.ascii("s-body"), lines: ["Content-Length: 14"]) + ping
        #expect(Self.answer(server, withLength) == Self.plain400)
        let chunked = Self.request(serverID: Self.ascii("s-body"), lines: ["Transfer-Encoding: chunked"])
            + Self.ascii("e\r\n") + ping + Self.ascii("\r\n0\r\n\r\n")
        #expect(Self.answer(server, chunked) == Self.plain400)
        #expect(rejectHeaders(server, .server) == 2)
        #expect(server.relay.connectedBinaries == 0)
        // An explicit empty body is no body.
        var keep: [RawSocket] = []
        let empty = Self.request(serverID: Self.ascii("s-body"), lines: ["Content-Length: 0"])
        #expect(Self.head(server, empty, keep: &keep).hasPrefix("HTTP/1.1 101 "))
    }

    @Test func rfc6455StatusesAndHeaders() throws {
        let server = try LoopbackRelay()
        let id = Self.ascii("s-status")
        #expect(Self.answer(server, Self.request(serverID: id, version: "8")) == Self.ascii(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                + "Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"))
        let upgradeRequired = Self.ascii(
            "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                + "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n\r\n")
        #expect(Self.answer(server, Self.request(serverID: id, requestLine: "GET /v1/server HTTP/1.0")) == upgradeRequired)
        #expect(Self.answer(server, Self.request(serverID: id, upgrade: false)) == upgradeRequired)
        #expect(Self.answer(server, Self.request(serverID: id, requestLine: "POST /v1/server HTTP/1.1")) == Self.ascii(
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                + "Allow: GET\r\nConnection: close\r\n\r\n"))
        #expect(rejectHeaders(server, .server) == 4)
    }

    @Test func theHeaderGateComesBeforeTheRFC6455Checks() throws {
        let server = try LoopbackRelay()
        let badID = Self.ascii("a b")
        // Wrong WebSocket version, HTTP/1.0, POST: the server-id is refused first, with a plain 400.
        #expect(Self.answer(server, Self.request(serverID: badID, version: "8")) == Self.plain400)
        #expect(Self.answer(server, Self.request(serverID: badID, requestLine: "GET /v1/server HTTP/1.0")) == Self.plain400)
        #expect(Self.answer(server, Self.request(serverID: badID, requestLine: "POST /v1/server HTTP/1.1")) == Self.plain400)
        let body = Self.request(serverID: Self.ascii("ok"), requestLine: "GET /v1/server HTTP/1.0",
                                lines: ["Content-Length: 2"]) + Self.ascii("xx")
        #expect(Self.answer(server, body) == Self.plain400)
    }

    @Test func rateLimitAndHostComeBeforeTheHeaderGate() throws {
        let server = try LoopbackRelay { $0.domain = "relay.example" }
        server.relay.core.rateLimiter = RateLimiter(burst: 1)
        let badID = Self.ascii("a b")
        // Host first: 421 even for a request the gate would refuse.
        #expect(String(decoding: Self.answer(server, Self.request(serverID: badID)) ?? [], as: UTF8.self)
            .hasPrefix("HTTP/1.1 421 "))
        let rightHost = Self.request(serverID: badID, host: "RELAY.example:443")
        #expect(Self.answer(server, rightHost) == Self.plain400)  // the one token, spent by the gate's refusal
        #expect(String(decoding: Self.answer(server, rightHost) ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 429 "))
    }

    @Test func hostIsComparedASCIICaseInsensitivelyOnly() throws {
        let server = try LoopbackRelay { $0.domain = "relay.example.k" }
        // U+212A KELVIN SIGN lowercases to "k" in Unicode, not in ASCII.
        let kelvin = Self.request(serverID: Self.ascii("s"), host: "relay.example.\u{212A}")
        #expect(String(decoding: Self.answer(server, kelvin) ?? [], as: UTF8.self).hasPrefix("HTTP/1.1 421 "))
    }
}
