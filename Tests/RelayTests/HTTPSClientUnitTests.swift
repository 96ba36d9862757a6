import Testing
@testable import RelayCodecs
@testable import RelayTransport

/// The pure parts of the outbound client: URL, request bytes, response parser (RFC 9112),
/// resolver configuration, A records.
@Suite struct HTTPSURLTests {
    @Test func partsAndDefaults() {
        let u = HTTPSURL("https://FCM.googleapis.com/v1/projects/p/messages:send")!
        #expect(u.host == "fcm.googleapis.com" && u.port == 443 && u.path == "/v1/projects/p/messages:send")
        #expect(u.hostHeader == "fcm.googleapis.com")
        #expect(HTTPSURL("HTTPS://h:8443")! == HTTPSURL("https://h:8443/")!)
        #expect(HTTPSURL("https://h:8443")!.hostHeader == "h:8443")
        #expect(HTTPSURL("https://h?a=1#frag")!.path == "/?a=1")
        #expect(HTTPSURL("https://h/p?q=1#f")!.path == "/p?q=1")
        let v6 = HTTPSURL("https://[::1]:9443/t")!
        #expect(v6.host == "::1" && v6.port == 9443 && v6.hostIsIPLiteral && v6.hostHeader == "[::1]:9443")
        #expect(HTTPSURL("https://127.0.0.1/")!.hostIsIPLiteral)
        #expect(!HTTPSURL("https://localhost/")!.hostIsIPLiteral)
    }

    @Test func refused() {
        for bad in ["http://h/", "https://", "https:///p", "ftp://h", "https://u:p@h/", "https://h:0/", "https://h:65536/",
                    "https://h:/", "https://h:x/", "https://h/a b", "https://[::1/", "https://[zz]/", "https://::1/",
                    "https://h\u{e9}/", "https://h/\r\n", "https://a%20b/", "https://[fe80::1%25eth0]/"] {
            #expect(HTTPSURL(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct HTTPSRequestTests {
    let url = HTTPSURL("https://h/p")!

    @Test func clientHeadersAreAddedUnlessGiven() {
        let r = HTTPSRequest(method: "GET", url: url, headers: [("Host", "other"), ("User-Agent", "x"), ("Connection", "close")])
        #expect(String(decoding: r.serialized()!, as: UTF8.self)
            == "GET /p HTTP/1.1\r\nHost: other\r\nUser-Agent: x\r\nConnection: close\r\n\r\n")
        let post = HTTPSRequest(method: "POST", url: url)
        #expect(String(decoding: post.serialized()!, as: UTF8.self)
            == "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: keep-alive\r\nUser-Agent: pyrycode-relay\r\n\r\n")
    }

    @Test func unsafeRequestsAreRefused() {
        #expect(HTTPSRequest(method: "GET", url: url, headers: [("X", "a\nb")]).serialized() == nil)
        #expect(HTTPSRequest(method: "GET", url: url, headers: [("X", "a\u{0}b")]).serialized() == nil)
        #expect(HTTPSRequest(method: "GET", url: url, headers: [("X Y", "a")]).serialized() == nil)
        #expect(HTTPSRequest(method: "GET", url: url, headers: [("", "a")]).serialized() == nil)
        #expect(HTTPSRequest(method: "GET", url: url, headers: [("transfer-encoding", "chunked")]).serialized() == nil)
        #expect(HTTPSRequest(method: "", url: url).serialized() == nil)
        #expect(HTTPSRequest(method: "GET\r\n", url: url).serialized() == nil)
    }
}

@Suite struct HTTPResponseParserTests {
    func parse(_ s: String, eof: Bool = false, head: Bool = false) -> HTTPResponseParser.Outcome {
        HTTPResponseParser.parse(Array(s.utf8), eof: eof, bodyless: head)
    }

    func complete(_ s: String, eof: Bool = false, head: Bool = false) -> HTTPResponseParser.Parsed? {
        if case .complete(let p) = parse(s, eof: eof, head: head) { return p }
        return nil
    }

    func isMalformed(_ s: String, eof: Bool = false) -> Bool {
        if case .malformed = parse(s, eof: eof) { return true }
        return false
    }

    func needsMore(_ s: String, eof: Bool = false) -> Bool { needsMore(Array(s.utf8), eof: eof) }

    func needsMore(_ bytes: [UInt8], eof: Bool = false) -> Bool {
        if case .needMore = HTTPResponseParser.parse(bytes, eof: eof) { return true }
        return false
    }

    @Test func contentLength() {
        let full = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        let p = complete(full)!
        #expect(p.status == 200 && p.body == Array("hello".utf8) && p.keepAlive && p.consumed == full.utf8.count)
        #expect(p.headers.map(\.name) == ["content-type", "content-length"])
        // Every prefix is incomplete, never malformed.
        for n in 0..<full.utf8.count { #expect(needsMore(Array(full.utf8.prefix(n))), "\(n)") }
        #expect(complete(full + "extra")!.consumed == full.utf8.count)
        #expect(complete("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nhi")?.body == Array("hi".utf8))
    }

    @Test func chunked() {
        let full = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n"
        let p = complete(full)!
        #expect(String(decoding: p.body, as: UTF8.self) == "abc0123456789abcdef" && p.keepAlive)
        for n in 0..<full.utf8.count { #expect(needsMore(Array(full.utf8.prefix(n))), "\(n)") }
        #expect(isMalformed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
        #expect(isMalformed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"))
        #expect(isMalformed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n"))
    }

    @Test func framingRules() {
        // Transfer-Encoding wins over Content-Length and forbids reuse (RFC 9112 §6.3).
        let both = complete("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n")!
        #expect(both.body == [UInt8(ascii: "x")] && !both.keepAlive)
        // No length: the body runs to the close.
        #expect(needsMore("HTTP/1.1 200 OK\r\n\r\nabc"))
        let closeDelimited = complete("HTTP/1.1 200 OK\r\n\r\nabc", eof: true)!
        #expect(closeDelimited.body == Array("abc".utf8) && !closeDelimited.keepAlive)
        #expect(complete("HTTP/1.1 204 No Content\r\n\r\n")?.body == [])
        #expect(complete("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head: true)?.body == [])
        #expect(complete("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n")?.keepAlive == false)
        #expect(complete("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")?.keepAlive == false)
        let interim = complete("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")!
        #expect(interim.status == 200 && interim.headers.map(\.name) == ["content-length"])
    }

    /// Mutated responses (bytes flipped, cut, duplicated) never trap, and a complete parse never
    /// claims more bytes than it was given (a fixed-seed generator: the run is reproducible).
    @Test func mutatedInputsStayBounded() {
        var rng = SplitMix(seed: 0x5EED)
        let seeds = ["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n",
                     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 204 No\r\nConnection: close\r\n\r\n"].map { Array($0.utf8) }
        let alphabet = Array("\r\n:; 0123456789abcdefHTP/.,-chunked".utf8)
        for i in 0..<20_000 {
            var m = seeds[i % seeds.count]
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(m.count))
                switch rng.next() % 4 {
                case 0: m[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                case 1: m.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                case 2: if m.count > 1 { m.remove(at: at) }
                default: m = Array(m[..<max(1, at)])
                }
            }
            if case .complete(let p) = HTTPResponseParser.parse(m, eof: rng.next() % 2 == 0) {
                #expect(p.consumed <= m.count && p.body.count <= m.count)
            }
        }
    }

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            return z ^ (z >> 31)
        }
    }

    @Test func malformedHeads() {
        for bad in ["HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n",
                    "HTTP/1.1 101 Switching\r\n\r\n", "HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
                    "HTTP/1.1 200 OK\r\n: v\r\n\r\n", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "HTTP/1.1 200 OK\nA: b\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "HTTP/1.1 200 OK\r\nA: \u{1}\r\n\r\n"] {
            #expect(isMalformed(bad), "\(bad.debugDescription)")
        }
        #expect(complete("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")?.status == 200, "the reason phrase may be absent")
    }
}

@Suite struct ResolverConfigurationTests {
    @Test func resolvConf() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver\tfe80::1%eth0\nnameserver ::1\n"
            + "nameserver bogus\nnameserver 10.0.0.2\nnameserver 10.0.0.3\noptions ndots:1\n"
        #expect(ResolverConfiguration.parseResolvConf(text).map(\.description) == ["10.0.0.1:53", "[::1]:53", "10.0.0.2:53"])
        #expect(ResolverConfiguration.parseResolvConf("").map(\.description) == ["127.0.0.1:53"])
    }

    @Test func hosts() {
        let h = ResolverConfiguration.parseHosts("127.0.0.1 localhost vm # x\n::1\tlocalhost ip6-localhost\n# 10.0.0.1 gone\nbogus name\n10.1.1.1 Push.Test\n")
        #expect(h["localhost"] == ["127.0.0.1", "::1"])
        #expect(h["vm"] == ["127.0.0.1"] && h["ip6-localhost"] == ["::1"] && h["push.test"] == ["10.1.1.1"])
        #expect(h["gone"] == nil && h["name"] == nil && h["x"] == nil)
    }
}

@Suite struct DNSAddressRecordTests {
    @Test func aQueryAndAnswer() throws {
        let q = try DNSMessage.query(id: 0x1234, name: "a.test", type: DNSMessage.typeA)
        #expect(q == [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1])
        // Answer: a CNAME, an A, and an AAAA (ignored for an A question).
        var r: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0] + q[12...]
        r += [0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 5, 0, 2, 0xc0, 0x0c]
        r += [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 1, 2, 3]
        r += [0xc0, 0x0c, 0, 28, 0, 1, 0, 0, 0, 5, 0, 16] + Array(repeating: 0, count: 15) + [1]
        let a = try DNSMessage.parseResponse(r, type: DNSMessage.typeA)
        #expect(a.addresses == [[10, 1, 2, 3]] && a.questionName == "a.test" && a.id == 0x1234)
        #expect(try DNSMessage.parseResponse(r, type: DNSMessage.typeAAAA).addresses.count == 1)
    }
}
