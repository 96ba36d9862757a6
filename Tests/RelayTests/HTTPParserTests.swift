import Testing
@testable import RelayCodecs

/// Feeds `bytes` to a fresh parser in one call.
private func parseWhole(_ bytes: [UInt8], maxHeaderBytes: Int = Limits.maxHeaderBytes) -> HTTPParseResult {
    var parser = HTTPRequestParser(maxHeaderBytes: maxHeaderBytes)
    return bytes.withUnsafeBytes { parser.parse($0) }
}

/// Feeds growing prefixes of `bytes` (the caller's accumulate-and-retry pattern), `step` bytes
/// more each call; returns the first non-`needMore` result and the prefix length it came at.
private func parseGrowing(_ bytes: [UInt8], step: Int = 1) -> (HTTPParseResult, at: Int) {
    var parser = HTTPRequestParser()
    return bytes.withUnsafeBytes { all in
        var n = 0
        while n < all.count {
            n = min(n + step, all.count)
            let r = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<n]))
            if case .needMore = r { continue }
            return (r, n)
        }
        return (.needMore, n)
    }
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

private func head(_ r: HTTPParseResult) -> (HTTPRequestHead, Int)? {
    if case .complete(let h, let n) = r { return (h, n) }
    return nil
}

private func status(_ r: HTTPParseResult) -> Int? {
    if case .failure(let s) = r { return s.code }
    return nil
}

private func isNeedMore(_ r: HTTPParseResult) -> Bool {
    if case .needMore = r { return true }
    return false
}

private let upgradeRequest = bytes(
    "GET /v1/client?x=1 HTTP/1.1\r\n" + "Host: relay.example\r\n" + "Upgrade:   websocket \t\r\n"
        + "Connection: Upgrade\r\n" + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        + "Sec-WebSocket-Version: 13\r\n" + "X-Pyrycode-Server: abc\r\n" + "X-Empty:\r\n" + "\r\n")

@Suite struct HTTPParserTests {
    @Test func parsesARequestInOnePiece() throws {
        let (h, length) = try #require(head(parseWhole(upgradeRequest)))
        #expect(length == upgradeRequest.count)
        #expect(h.method == "GET")
        #expect(h.target == "/v1/client?x=1")
        #expect(h.path == "/v1/client")
        #expect(h.versionMinor == 1)
        #expect(h.headers.map(\.name) == [
            "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
            "x-pyrycode-server", "x-empty",
        ])
        #expect(h.value("upgrade") == "websocket")  // OWS (SP and HTAB) trimmed on both sides
        #expect(h.value("x-empty") == "")
        #expect(h.value("missing") == nil)
        #expect(h.contentLength == nil)
        #expect(!h.hasTransferEncoding)
        #expect(h.keepAlive)
    }

    @Test func byteByByteGivesTheSameHead() throws {
        let (whole, wholeLength) = try #require(head(parseWhole(upgradeRequest)))
        let (r, at) = parseGrowing(upgradeRequest)
        #expect(at == upgradeRequest.count)  // needMore for every shorter prefix
        let (h, length) = try #require(head(r))
        #expect(length == wholeLength)
        #expect(h.method == whole.method && h.target == whole.target && h.path == whole.path)
        #expect(h.versionMinor == whole.versionMinor)
        #expect(h.headers.map(\.name) == whole.headers.map(\.name))
        #expect(h.headers.map(\.value) == whole.headers.map(\.value))
    }

    @Test func examinesEachByteOnce() throws {
        // Already-validated bytes are not validated again (O(n) over many calls): overwrite them
        // with NULs, which would fail a rescan from the start, and the parser does not notice.
        // (Real callers never change passed bytes: a line's strings are cut when it ends.)
        var buffer = bytes("GET /v1/client HTTP/1.1\r\nHost: a\r\nX-Long: ")
        var parser = HTTPRequestParser()
        #expect(isNeedMore(buffer.withUnsafeBytes { parser.parse($0) }))
        let seen = buffer.count
        for i in 0..<seen { buffer[i] = 0 }
        buffer += bytes("value\r\n\r\n")
        let (_, n) = try #require(head(buffer.withUnsafeBytes { parser.parse($0) }))
        #expect(n == buffer.count)
    }

    @Test func reportsWhereTheHeadEnds() throws {
        let extra: [UInt8] = [0x81, 0x85, 0x37, 0xFA]  // a WebSocket frame sent right behind it
        let (_, length) = try #require(head(parseWhole(upgradeRequest + extra)))
        #expect(length == upgradeRequest.count)
    }

    @Test func resultIsStickyUntilReset() throws {
        var parser = HTTPRequestParser()
        let first = bytes("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        let second = bytes("HEAD /other HTTP/1.1\r\nHost: b\r\n\r\n")
        _ = first.withUnsafeBytes { parser.parse($0) }
        // Without reset, the finished head is returned again, whatever is passed.
        #expect(try #require(head(second.withUnsafeBytes { parser.parse($0) })).0.path == "/healthz")
        parser.reset()
        let (h, n) = try #require(head(second.withUnsafeBytes { parser.parse($0) }))
        #expect(h.method == "HEAD" && h.path == "/other" && n == second.count)
    }

    @Test func toleratesBareLFAndLeadingEmptyLines() throws {
        let (h, n) = try #require(head(parseWhole(bytes("\r\n\nGET / HTTP/1.1\nHost: a\nX: 1\r\n\n"))))
        #expect(h.path == "/" && h.value("x") == "1")
        #expect(n == 33)
    }

    @Test func versions() throws {
        #expect(try #require(head(parseWhole(bytes("GET / HTTP/1.0\r\n\r\n")))).0.versionMinor == 0)
        // RFC 9110 §6.2: a higher minor version is processed as 1.1.
        #expect(try #require(head(parseWhole(bytes("GET / HTTP/1.2\r\nHost: a\r\n\r\n")))).0.versionMinor == 2)
        #expect(status(parseWhole(bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))) == 505)
        #expect(status(parseWhole(bytes("GET / HTTP/0.9\r\n\r\n"))) == 505)
        #expect(status(parseWhole(bytes("GET / http/1.1\r\n"))) == 400)  // HTTP-name is case-sensitive
        #expect(status(parseWhole(bytes("GET / HTTP/1.1 \r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET / HTTP/11\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET / HTTP/1.10\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET /\r\n"))) == 400)  // HTTP/0.9 simple request
    }

    @Test func malformedRequestLines() {
        #expect(status(parseWhole(bytes("GET  / HTTP/1.1\r\n"))) == 400)  // empty target
        #expect(status(parseWhole(bytes(" GET / HTTP/1.1\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET\t/ HTTP/1.1\r\n"))) == 400)
        #expect(status(parseWhole(bytes("G(T / HTTP/1.1\r\n"))) == 400)  // not a tchar
        #expect(status(parseWhole([0x47, 0x45, 0x54, 0x20, 0x2F, 0x00, 0x20])) == 400)  // NUL in target
        #expect(status(parseWhole([0x47, 0x45, 0x54, 0x20, 0x2F, 0xC3, 0xA9])) == 400)  // non-ASCII target
        #expect(status(parseWhole(bytes("GET / HTTP/1.1\rHost: a\r\n\r\n"))) == 400)  // bare CR
    }

    @Test func methodIsCaseSensitiveAndKeptAsSent() throws {
        #expect(try #require(head(parseWhole(bytes("get / HTTP/1.1\r\nHost: a\r\n\r\n")))).0.method == "get")
    }

    @Test func malformedHeaderLines() {
        let start = "GET / HTTP/1.1\r\nHost: a\r\n"
        #expect(status(parseWhole(bytes(start + "X-A: 1\r\n folded\r\n\r\n"))) == 400)  // obs-fold
        #expect(status(parseWhole(bytes(start + "X-A: 1\r\n\tfolded\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET / HTTP/1.1\r\n Host: a\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "X-A : 1\r\n\r\n"))) == 400)  // SP before colon
        #expect(status(parseWhole(bytes(start + "X-A\t: 1\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "no colon here\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "NoColon\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + ": empty name\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "X-A: 1\r2\r\n\r\n"))) == 400)  // bare CR in value
        #expect(status(parseWhole(bytes(start) + [0x58, 0x00, 0x3A, 0x20, 0x31])) == 400)  // NUL in name
        #expect(status(parseWhole(bytes(start) + [0x58, 0x3A, 0x20, 0x00])) == 400)  // NUL in value
        #expect(status(parseWhole(bytes(start) + [0x58, 0x3A, 0x20, 0x7F])) == 400)  // DEL in value
        #expect(status(parseWhole(bytes(start) + [0x58, 0x3A, 0x20, 0x1B])) == 400)  // ESC in value
        #expect(status(parseWhole(bytes(start + "\r\r\n"))) == 400)
    }

    @Test func obsTextAndTabsInValuesAreAccepted() throws {
        let req = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf") + [0xC3, 0xA9, 0x09, 0x21, 0xFF] + bytes("\r\n\r\n")
        let (h, _) = try #require(head(parseWhole(req)))
        #expect(h.value("x-name") == "caf\u{E9}\t!\u{FFFD}")  // invalid UTF-8 (0xFF) decodes as U+FFFD
    }

    @Test func nonHTTPBytesFailOnTheFirstByte() {
        // TLS ClientHello record header: handshake(0x16), TLS 1.0 (0x03 0x01).
        #expect(status(parseWhole([0x16])) == 400)
        #expect(status(parseWhole([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03])) == 400)
        // PROXY v2 signature on a listener that does not expect it.
        #expect(status(parseWhole([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A])) == 400)
        #expect(status(parseWhole([0x00])) == 400)
        #expect(status(parseWhole([0xFF, 0xFF])) == 400)
        #expect(isNeedMore(parseWhole(bytes("GET"))))
    }

    @Test func headAtTheLimitIsAcceptedAndOneByteMoreIs431() throws {
        let limit = Limits.maxHeaderBytes
        let prefix = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
        let suffix = "\r\n\r\n"
        let pad = String(repeating: "p", count: limit - prefix.utf8.count - suffix.utf8.count)
        let exact = bytes(prefix + pad + suffix)
        #expect(exact.count == limit)
        #expect(try #require(head(parseWhole(exact))).1 == limit)
        let over = bytes(prefix + pad + "p" + suffix)
        #expect(over.count == limit + 1)
        #expect(status(parseWhole(over)) == 431)
    }

    @Test func decides431AsSoonAsTheLimitIsExceeded() {
        let limit = Limits.maxHeaderBytes
        let unterminated = bytes("GET / HTTP/1.1\r\nX-Pad: " + String(repeating: "p", count: limit))
        var parser = HTTPRequestParser()
        unterminated.withUnsafeBytes { all in
            #expect(isNeedMore(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<limit]))))
            #expect(status(parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<(limit + 1)]))) == 431)
        }
    }

    @Test func oneMebibyteOfGarbageIsDecidedWithinTheLimit() {
        let mib = 1 << 20
        let letters = [UInt8](repeating: UInt8(ascii: "A"), count: mib)  // one endless method token
        let (r1, at1) = parseGrowing(letters, step: 1024)
        #expect(status(r1) == 431)
        #expect(at1 == Limits.maxHeaderBytes + 1024)  // the first chunk past the limit
        #expect(status(parseWhole(letters)) == 431)

        var noise = [UInt8](repeating: 0, count: mib)
        var x: UInt32 = 0x9E37_79B9
        for i in noise.indices {  // xorshift: arbitrary binary bytes
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            noise[i] = UInt8(truncatingIfNeeded: x)
        }
        let (r2, at2) = parseGrowing(noise, step: 1024)
        #expect(status(r2) == 400)
        #expect(at2 == 1024)

        let headerFlood = bytes("GET / HTTP/1.1\r\n") + [UInt8](repeating: UInt8(ascii: "x"), count: mib)
        #expect(status(parseWhole(headerFlood)) == 431)
    }

    @Test func headerCountIsCapped() throws {
        func request(headers n: Int) -> [UInt8] {
            bytes("GET / HTTP/1.1\r\nHost: a\r\n" + String(repeating: "a:\r\n", count: n - 1) + "\r\n")
        }
        #expect(try #require(head(parseWhole(request(headers: 100)))).0.headers.count == 100)
        #expect(status(parseWhole(request(headers: 101))) == 431)
        // 10,000 tiny headers (40 KB): refused at the 101st line, long before the byte limit.
        let flood = request(headers: 10_000)
        #expect(status(parseWhole(flood)) == 431)
        let (r, at) = parseGrowing(flood, step: 64)
        #expect(status(r) == 431)
        #expect(at < 512)
    }

    @Test func hostIsRequiredOnceIn11() throws {
        #expect(status(parseWhole(bytes("GET / HTTP/1.1\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"))) == 400)
        #expect(try #require(head(parseWhole(bytes("GET / HTTP/1.0\r\n\r\n")))).0.value("host") == nil)
    }

    @Test func bodyFramingIsReportedOrRefused() throws {
        let start = "POST /v1/server HTTP/1.1\r\nHost: a\r\n"
        #expect(try #require(head(parseWhole(bytes(start + "Content-Length: 5\r\n\r\n")))).0.contentLength == 5)
        #expect(try #require(head(parseWhole(bytes(start + "Content-Length: 0\r\n\r\n")))).0.contentLength == 0)
        #expect(
            try #require(head(parseWhole(bytes(start + "Content-Length: 7\r\ncontent-length: 7\r\n\r\n")))).0
                .contentLength == 7)
        let te = try #require(head(parseWhole(bytes(start + "Transfer-Encoding: chunked\r\n\r\n")))).0
        #expect(te.hasTransferEncoding && te.contentLength == nil)
        #expect(status(parseWhole(bytes(start + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "Content-Length: -1\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "Content-Length: 1e3\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "Content-Length: 5, 5\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "Content-Length:\r\n\r\n"))) == 400)
        #expect(status(parseWhole(bytes(start + "Content-Length: 9999999999999999999\r\n\r\n"))) == 400)
        #expect(
            status(parseWhole(bytes(start + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"))) == 400)
    }

    @Test func keepAlive() throws {
        func ka(_ s: String) throws -> Bool { try #require(head(parseWhole(bytes(s)))).0.keepAlive }
        #expect(try ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(try !ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        #expect(try !ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n"))
        #expect(try !ka("GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: Close\r\n\r\n"))
        #expect(try !ka("GET / HTTP/1.0\r\n\r\n"))
        #expect(try ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
        #expect(try !ka("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"))
    }

    @Test func tokenLists() throws {
        let req = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive ,, UpGrade\r\nConnection: te\r\nUpgrade: websockets\r\n\r\n"
        let (h, _) = try #require(head(parseWhole(bytes(req))))
        #expect(h.hasToken("connection", "upgrade"))
        #expect(h.hasToken("connection", "KEEP-ALIVE"))
        #expect(h.hasToken("connection", "te"))  // second line counts too
        #expect(!h.hasToken("connection", "close"))
        #expect(!h.hasToken("upgrade", "websocket"))  // whole tokens only
        #expect(h.count("connection") == 2)
        #expect(h.values("connection") == ["keep-alive ,, UpGrade", "te"])
    }

    // RFC 9110 §5.6.1: elements between commas, OWS (space, tab) around them, empty ones skipped;
    // whole elements only, ASCII case-insensitive.
    @Test func listElementsAreFoundWhole() {
        func has(_ list: String, _ token: String) -> Bool {
            var l = list, t = token
            return l.withUTF8 { a in t.withUTF8 { b in HTTPGrammar.listContains(a, b) } }
        }
        for list in ["upgrade", "Upgrade", " \tUPGRADE\t ", "a,upgrade", "upgrade,a", "a , upgrade , b", ",,upgrade,,", "x,\tupgrade"] {
            #expect(has(list, "upgrade"), "\(list)")
        }
        for list in ["", ",", " , ", "upgrades", "xupgrade", "up grade", "upgrade2,a", "a,pgrade", "upgrad", "\"upgrade\""] {
            #expect(!has(list, "upgrade"), "\(list)")
        }
    }
}

@Suite struct HTTPResponseTests {
    @Test func errorResponseBytes() {
        #expect(
            HTTPResponse.error(.notFound, close: true)
                == bytes(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n"
                        + "Connection: close\r\n\r\n"))
        #expect(
            HTTPResponse.error(.tooManyRequests, close: false)
                == bytes("HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n"))
        #expect(
            HTTPResponse.error(.headersTooLarge, close: true).prefix(49)
                == ArraySlice(bytes("HTTP/1.1 431 Request Header Fields Too Large\r\nCon")))
    }

    @Test func okResponseBytes() {
        let body = bytes("{\"status\":\"ok\"}")
        #expect(
            HTTPResponse.ok(
                body: body, contentType: "application/json; charset=utf-8",
                extraHeaders: [("Cache-Control", "no-store")], close: false)
                == bytes(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 15\r\n"
                        + "Cache-Control: no-store\r\n\r\n{\"status\":\"ok\"}"))
        #expect(
            HTTPResponse.ok(body: [], contentType: "text/plain", extraHeaders: [], close: true)
                == bytes("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    }

    @Test func switchingProtocolsBytes() {
        #expect(
            HTTPResponse.switchingProtocols(accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                == bytes(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"))
        #expect(
            HTTPResponse.switchingProtocols(
                accept: "x", extraHeaders: [("Sec-WebSocket-Extensions", "permessage-deflate")])
                == bytes(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        + "Sec-WebSocket-Accept: x\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
    }
}
