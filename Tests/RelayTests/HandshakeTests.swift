import Testing
@testable import RelayCodecs

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Parses a request head from text (CRLF line endings added) through the real parser.
private func request(_ lines: [String]) throws -> HTTPRequestHead {
    var parser = HTTPRequestParser()
    let raw = bytes(lines.joined(separator: "\r\n") + "\r\n\r\n")
    let result = raw.withUnsafeBytes { parser.parse($0) }
    guard case .complete(let head, _) = result else {
        Issue.record("not a complete head: \(result)")
        throw CancellationError()
    }
    return head
}

private let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
private let version = "Sec-WebSocket-Version: 13"

/// The RFC 6455 §1.3 example request, with the given lines replacing the defaults by name.
private func upgrade(
    line: String = "GET /v1/server HTTP/1.1", upgrade: String? = "Upgrade: websocket",
    connection: String? = "Connection: Upgrade", version: String? = version, key: [String] = [key],
    extra: [String] = []
) throws -> HTTPRequestHead {
    try request([line, "Host: relay.example"] + [upgrade, connection, version].compactMap { $0 } + key + extra)
}

private func rejection(_ r: HandshakeResult) -> (Int, [(String, String)])? {
    if case .reject(let status, let headers) = r { return (status.code, headers) }
    return nil
}

private func accepted(_ r: HandshakeResult) -> String? {
    if case .accept(let k) = r { return k }
    return nil
}

private let upgradeRequiredHeaders = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]

private func expectRejected(
    _ head: HTTPRequestHead, _ code: Int, _ headers: [(String, String)],
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let (c, h) = rejection(WebSocketHandshake.validate(head)) else {
        Issue.record("accepted", sourceLocation: sourceLocation)
        return
    }
    #expect(c == code, sourceLocation: sourceLocation)
    #expect(h.map(\.0) == headers.map(\.0), sourceLocation: sourceLocation)
    #expect(h.map(\.1) == headers.map(\.1), sourceLocation: sourceLocation)
}

@Suite struct HandshakeTests {
    @Test func acceptKeyMatchesRFC6455Example() {
        // RFC 6455 §1.3 and §1.2 examples.
        #expect(WebSocketHandshake.acceptKey(for: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        #expect(WebSocketHandshake.acceptKey(for: "x3JJHMbDL1EzLkh9GBhXDw==") == "HSmrc0sMlYUkAGmm5OPpG2HaGWk=")
    }

    @Test func acceptsAValidRequest() throws {
        #expect(accepted(WebSocketHandshake.validate(try upgrade())) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func tokensAreCaseInsensitiveAndListsAreSearched() throws {
        let head = try upgrade(
            upgrade: "Upgrade: WebSocket", connection: "Connection: keep-alive, UPGRADE",
            extra: ["Origin: https://anything.example", "Sec-WebSocket-Protocol: chat"])
        #expect(accepted(WebSocketHandshake.validate(head)) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let split = try upgrade(connection: "Connection: keep-alive", extra: ["Connection: Upgrade"])
        #expect(accepted(WebSocketHandshake.validate(split)) != nil)
    }

    @Test func nonGETGives405() throws {
        expectRejected(try upgrade(line: "POST /v1/server HTTP/1.1"), 405, [("Allow", "GET")])
        expectRejected(try upgrade(line: "get /v1/server HTTP/1.1"), 405, [("Allow", "GET")])
        // The method is checked first: before the HTTP version and the upgrade headers.
        expectRejected(try upgrade(line: "PUT /v1/server HTTP/1.1", upgrade: nil), 405, [("Allow", "GET")])
        expectRejected(try upgrade(line: "POST /v1/server HTTP/1.0"), 405, [("Allow", "GET")])
    }

    @Test func http10UpgradeGives426() throws {
        expectRejected(try upgrade(line: "GET /v1/server HTTP/1.0"), 426, upgradeRequiredHeaders)
        // Checked before the upgrade headers, the version and the key.
        expectRejected(try upgrade(line: "GET /v1/server HTTP/1.0", upgrade: nil), 426, upgradeRequiredHeaders)
        expectRejected(
            try upgrade(line: "GET /v1/server HTTP/1.0", version: "Sec-WebSocket-Version: 8", key: []), 426,
            upgradeRequiredHeaders)
        #expect(accepted(WebSocketHandshake.validate(try upgrade(line: "GET /v1/server HTTP/1.2"))) != nil)
    }

    @Test func missingUpgradeOrConnectionGives426() throws {
        expectRejected(try upgrade(upgrade: nil), 426, upgradeRequiredHeaders)
        expectRejected(try upgrade(upgrade: "Upgrade: h2c"), 426, upgradeRequiredHeaders)
        expectRejected(try upgrade(upgrade: "Upgrade: websocket2"), 426, upgradeRequiredHeaders)
        expectRejected(try upgrade(connection: nil), 426, upgradeRequiredHeaders)
        expectRejected(try upgrade(connection: "Connection: keep-alive"), 426, upgradeRequiredHeaders)
        expectRejected(try upgrade(connection: "Connection: upgraded"), 426, upgradeRequiredHeaders)
        // Checked before the version and key.
        expectRejected(try upgrade(upgrade: nil, version: nil, key: []), 426, upgradeRequiredHeaders)
    }

    @Test func wrongWebSocketVersionGives400NamingVersion13() throws {
        let versionHeader = [("Sec-WebSocket-Version", "13")]
        expectRejected(try upgrade(version: nil), 400, versionHeader)
        expectRejected(try upgrade(version: "Sec-WebSocket-Version: 8"), 400, versionHeader)
        expectRejected(try upgrade(version: "Sec-WebSocket-Version: 13, 8"), 400, versionHeader)
        expectRejected(try upgrade(version: "Sec-WebSocket-Version:"), 400, versionHeader)
        expectRejected(try upgrade(version: "Sec-WebSocket-Version: 013"), 400, versionHeader)
        expectRejected(try upgrade(extra: ["Sec-WebSocket-Version: 13"]), 400, versionHeader)  // twice
        // Checked before the key.
        expectRejected(try upgrade(version: "Sec-WebSocket-Version: 7", key: []), 400, versionHeader)
    }

    @Test func badKeysGive400() throws {
        expectRejected(try upgrade(key: []), 400, [])
        expectRejected(try upgrade(key: [key, key]), 400, [])
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key:"]), 400, [])
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"]), 400, [])  // no padding
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ==="]), 400, [])
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j"]), 400, [])  // 15 bytes
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZTEx"]), 400, [])  // 18 bytes
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ=="]), 400, [])
        expectRejected(try upgrade(key: ["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ-_"]), 400, [])  // base64url
    }

    @Test func keyIsUsedTrimmed() throws {
        let head = try upgrade(key: ["Sec-WebSocket-Key: \t dGhlIHNhbXBsZSBub25jZQ== "])
        #expect(accepted(WebSocketHandshake.validate(head)) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func full426ResponseBytes() throws {
        guard case .reject(let status, let headers) = WebSocketHandshake.validate(try upgrade(upgrade: nil)) else {
            Issue.record("accepted")
            return
        }
        #expect(
            HTTPResponse.error(status, close: true, extraHeaders: headers)
                == bytes(
                    "HTTP/1.1 426 Upgrade Required\r\n" + "Content-Type: text/plain; charset=utf-8\r\n"
                        + "Content-Length: 0\r\n" + "Upgrade: websocket\r\n" + "Sec-WebSocket-Version: 13\r\n"
                        + "Connection: Upgrade, close\r\n" + "\r\n"))
    }

    @Test func full405ResponseBytes() throws {
        guard case .reject(let status, let headers) = WebSocketHandshake.validate(try upgrade(line: "POST / HTTP/1.1"))
        else {
            Issue.record("accepted")
            return
        }
        #expect(
            HTTPResponse.error(status, close: true, extraHeaders: headers)
                == bytes(
                    "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        + "Content-Length: 0\r\nAllow: GET\r\nConnection: close\r\n\r\n"))
    }

    @Test func full400VersionResponseBytes() throws {
        let head = try upgrade(version: "Sec-WebSocket-Version: 8")
        guard case .reject(let status, let headers) = WebSocketHandshake.validate(head) else {
            Issue.record("accepted")
            return
        }
        #expect(
            HTTPResponse.error(status, close: true, extraHeaders: headers)
                == bytes(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        + "Content-Length: 0\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n"))
    }
}

@Suite struct Base64Tests {
    @Test func encodesRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=",
            "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
        #expect(Base64.encode([0xFB, 0xFF, 0xBF]) == "+/+/")
        #expect(Base64.decode("+/+/") == [0xFB, 0xFF, 0xBF])
    }

    @Test func decodingIsStrict() {
        #expect(Base64.decode("Zg") == nil)        // padding required
        #expect(Base64.decode("Zg=") == nil)
        #expect(Base64.decode("Z===") == nil)
        #expect(Base64.decode("Zg=a") == nil)      // '=' only at the end
        #expect(Base64.decode("Zg==Zg==") == nil)  // padding only in the last quantum
        #expect(Base64.decode("Zm9v\r\n") == nil)  // no whitespace
        #expect(Base64.decode(" Zm9v") == nil)
        #expect(Base64.decode("Zm9-") == nil)      // not base64url
        #expect(Base64.decode("Zh==") == [0x66])   // non-zero pad bits accepted, as Go's StdEncoding
    }
}
