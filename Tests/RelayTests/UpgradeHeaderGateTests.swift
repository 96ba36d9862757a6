import Testing
@testable import RelayCodecs
@testable import RelayCore

/// A phone upgrade request head whose `X-Pyrycode-Server` line carries `serverID` as raw bytes,
/// parsed by the real parser (so header values become Strings exactly as in the relay).
private func phoneHead(serverID: [UInt8], extra: [String] = []) throws -> HTTPRequestHead {
    var raw = Array(("GET /v1/client HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + "X-Pyrycode-Token: t\r\nUser-Agent: test\r\n").utf8)
    raw += Array("X-Pyrycode-Server: ".utf8) + serverID + [0x0D, 0x0A]
    for line in extra { raw += Array((line + "\r\n").utf8) }
    raw += [0x0D, 0x0A]
    var parser = HTTPRequestParser()
    guard case .complete(let head, _) = raw.withUnsafeBytes({ parser.parse($0) }) else {
        Issue.record("the parser refused the request")
        throw CancellationError()
    }
    return head
}

private func admitted(_ serverID: [UInt8], extra: [String] = []) throws -> Bool {
    UpgradeHeaderGate.admits(try phoneHead(serverID: serverID, extra: extra), endpoint: .client)
}

private func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct UpgradeHeaderGateTests {
    @Test func canonicalUUIDAndEveryVisibleASCIIByteAreAccepted() throws {
        #expect(try admitted(ascii("0f8fad5b-d9cb-469f-a165-70867728950e")))
        #expect(try admitted(ascii("x")))
        #expect(try admitted(Array(0x21...0x7E)))
    }

    @Test func lengthBoundIs128Bytes() throws {
        #expect(Limits.maxServerIDBytes == 128)
        #expect(try admitted([UInt8](repeating: 0x61, count: 128)))
        #expect(try !admitted([UInt8](repeating: 0x61, count: 129)))
        #expect(try !admitted([UInt8](repeating: 0x61, count: 4_000)))
    }

    @Test func invalidUTF8IdsAreRefusedSoTheyCannotCollide() throws {
        // All three decode to "coll\u{FFFD}": accepted, they would be one registry key.
        for tail: [UInt8] in [[0xFF], [0xFE], [0xC3]] {
            let head = try phoneHead(serverID: ascii("coll") + tail)
            #expect(head.value("x-pyrycode-server") == "coll\u{FFFD}")
            #expect(!UpgradeHeaderGate.admits(head, endpoint: .client), "coll + \(tail)")
        }
        // An overlong encoding of "A" must not become "collA".
        #expect(try !admitted(ascii("coll") + [0xC1, 0x81]))
    }

    @Test func validNonASCIIUTF8IsRefusedToo() throws {
        #expect(try !admitted(ascii("caf") + [0xC3, 0xA9]))   // é
        #expect(try !admitted([0xEF, 0xBF, 0xBD]))             // U+FFFD itself
    }

    @Test func spaceAndTabInsideTheIdAreRefused() throws {
        #expect(try !admitted(ascii("a b")))
        #expect(try !admitted(ascii("a\tb")))
        // Surrounding whitespace is OWS, not part of the value (RFC 9112 §5.1).
        #expect(try admitted(ascii(" \tab \t")))
    }

    @Test func controlBytesNeverReachTheGate() {
        // The parser refuses controls and DEL in any value first (RFC 9110 §5.5); the gate
        // would refuse them as well.
        #expect(!UpgradeHeaderGate.isValidServerID("a\u{01}b"))
        #expect(!UpgradeHeaderGate.isValidServerID("a\u{00}b"))
        #expect(!UpgradeHeaderGate.isValidServerID("a\u{7F}b"))
        #expect(!UpgradeHeaderGate.isValidServerID(""))
    }

    @Test func aRepeatedServerIDLineIsRefused() throws {
        #expect(try !admitted(ascii("a"), extra: ["X-Pyrycode-Server: b"]))
        #expect(try !admitted(ascii("a"), extra: ["X-Pyrycode-Server: a"]))
    }

    @Test func requiredHeadersPerRoute() throws {
        let phone = try phoneHead(serverID: ascii("s"))
        #expect(UpgradeHeaderGate.admits(phone, endpoint: .client))
        // No X-Pyrycode-Version: fine for a phone, not for a binary.
        #expect(!UpgradeHeaderGate.admits(phone, endpoint: .server))
        var noToken = phone
        noToken.headers.removeAll { $0.name == "x-pyrycode-token" }
        #expect(!UpgradeHeaderGate.admits(noToken, endpoint: .client))
        var emptyAgent = phone
        emptyAgent.headers = emptyAgent.headers.map { $0.name == "user-agent" ? (name: $0.name, value: "") : $0 }
        #expect(!UpgradeHeaderGate.admits(emptyAgent, endpoint: .client))
    }

    @Test func anUpgradeWithABodyIsRefused() throws {
        #expect(try !admitted(ascii("s"), extra: ["Content-Length: 14"]))
        #expect(try !admitted(ascii("s"), extra: ["Content-Length: 1"]))
        #expect(try !admitted(ascii("s"), extra: ["Transfer-Encoding: chunked"]))
        #expect(try !admitted(ascii("s"), extra: ["Transfer-Encoding: identity"]))
        #expect(try admitted(ascii("s"), extra: ["Content-Length: 0"]))
        #expect(try admitted(ascii("s"), extra: ["Content-Length: 0", "Content-Length: 0"]))
    }
}
