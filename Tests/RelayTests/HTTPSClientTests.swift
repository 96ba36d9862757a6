import CEpoll
import Foundation  // Process, Pipe, JSONSerialization: the Python interop server (test-only).
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport
@testable import Relaying
@testable import RelayOperations

/// The outbound HTTPS client against TLS servers on loopback, all on one reactor driven by the
/// test: certificates from TestPKI (trusted through SSL_CERT_FILE, as an operator would).
@Suite struct HTTPSClientTests {
    typealias Outcome = Result<HTTPSResponse, HTTPSFailure>

    final class Box {
        var outcomes: [Outcome] = []
        var last: Outcome? { outcomes.last }
    }

    let reactor: Reactor

    init() throws {
        _ = TestPKI.dir
        reactor = try Reactor()
    }

    func client(deadlineMs: Int64 = 5_000, maxResponseBytes: Int = 4_096,
                resolver: ResolverConfiguration? = nil) throws -> HTTPSClient {
        if let resolver {
            return try HTTPSClient(reactor: reactor, deadlineMs: deadlineMs, maxResponseBytes: maxResponseBytes,
                                   resolverConfiguration: { resolver })
        }
        return try HTTPSClient(reactor: reactor, deadlineMs: deadlineMs, maxResponseBytes: maxResponseBytes)
    }

    /// Sends one request and pumps the loop until it completes.
    @discardableResult
    func call(_ c: HTTPSClient, _ url: String, method: String = "POST", headers: [(name: String, value: String)] = [],
              body: String = "") -> Outcome? {
        let box = Box()
        c.send(HTTPSRequest(method: method, url: HTTPSURL(url)!, headers: headers, body: Array(body.utf8))) {
            box.outcomes.append($0)
        }
        pump(reactor, timeoutMs: 8_000) { !box.outcomes.isEmpty }
        return box.last
    }

    static func ok(_ text: String = "ok") -> HTTPSTestServer.Reply {
        .send(HTTPSTestServer.response(headers: ["X-Answer: yes"], body: text))
    }

    @Test func requestAndResponseBytesAreExact() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok("{\"name\":\"x\"}") }
        let c = try client()
        let box = Box()
        c.send(HTTPSRequest(method: "POST", url: HTTPSURL("https://127.0.0.1:\(server.port)/v1/send?x=1")!,
                            headers: [("Authorization", "Bearer abc"), ("Content-Type", "application/json")],
                            body: Array("hello".utf8))) { box.outcomes.append($0) }
        #expect(box.outcomes.isEmpty, "the completion never runs inside send()")
        #expect(c.inFlight == 1)
        #expect(pump(reactor) { !box.outcomes.isEmpty })
        let response = try box.last!.get()
        #expect(response.status == 200)
        #expect(response.header("x-answer") == "yes")
        #expect(response.headers.contains { $0.name == "content-length" && $0.value == "12" })
        #expect(String(decoding: response.body, as: UTF8.self) == "{\"name\":\"x\"}")
        #expect(c.inFlight == 0)
        #expect(box.outcomes.count == 1)
        let expected = "POST /v1/send?x=1 HTTP/1.1\r\nAuthorization: Bearer abc\r\nContent-Type: application/json\r\n"
            + "Host: 127.0.0.1:\(server.port)\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
            + "User-Agent: pyrycode-relay\r\n\r\nhello"
        #expect(server.requests.map { String(decoding: $0.bytes, as: UTF8.self) } == [expected])
    }

    @Test func chunkedResponseThroughEtcHostsLocalhost() throws {
        let chunked = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n7;ext=1\r\npedia i\r\n"
            + "B\r\nn \r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n"
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(Array(chunked.utf8)) }
        let c = try client()  // the system's /etc/hosts and resolv.conf: `localhost` never reaches DNS
        let response = try call(c, "https://localhost:\(server.port)/")!.get()
        #expect(response.status == 201)
        #expect(String(decoding: response.body, as: UTF8.self) == "Wikipedia in \r\nchunks.")
        #expect(server.requests.first.map { String(decoding: $0.bytes, as: UTF8.self).contains("\r\nHost: localhost:\(server.port)\r\n") } == true)
        #expect(c.idleConnections == 1, "a chunked body ends the message: the connection is kept")
    }

    @Test func untrustedCertificateFailsBeforeAnyRequestByte() throws {
        let server = try HTTPSTestServer(reactor: reactor, certificate: "rogue") { _, _, _ in Self.ok() }
        let c = try client()
        let outcome = call(c, "https://127.0.0.1:\(server.port)/", body: "secret")
        #expect(outcome == .failure(.tls("certificate: unable to get local issuer certificate")))
        #expect(pump(reactor) { server.handshakeFailures == 1 }, "the server saw the handshake fail")
        #expect(server.applicationBytes == 0)
        #expect(c.openConnections == 0)
    }

    @Test func certificateForAnotherHostFailsBeforeAnyRequestByte() throws {
        let server = try HTTPSTestServer(reactor: reactor, certificate: "wronghost") { _, _, _ in Self.ok() }
        let c = try client()
        #expect(call(c, "https://localhost:\(server.port)/", body: "secret") == .failure(.tls("certificate: hostname mismatch")))
        #expect(call(c, "https://127.0.0.1:\(server.port)/", body: "secret") == .failure(.tls("certificate: IP address mismatch")))
        #expect(pump(reactor) { server.handshakeFailures == 2 })
        #expect(server.applicationBytes == 0)
    }

    @Test func hangingServerTimesOutAtTheDeadlineWhileTheLoopServesOthers() throws {
        let hanging = try HTTPSTestServer(reactor: reactor) { _, _, _ in .hang }
        let good = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok() }
        let c = try client(deadlineMs: 600)
        let slow = Box(), quick = Box()
        let started = monotonicMs()
        c.send(HTTPSRequest(method: "POST", url: HTTPSURL("https://127.0.0.1:\(hanging.port)/")!)) { slow.outcomes.append($0) }
        #expect(pump(reactor) { hanging.requests.count == 1 }, "the request reached the hanging server")
        c.send(HTTPSRequest(method: "GET", url: HTTPSURL("https://127.0.0.1:\(good.port)/")!)) { quick.outcomes.append($0) }
        #expect(pump(reactor) { !quick.outcomes.isEmpty })
        #expect(slow.outcomes.isEmpty, "the other call completed while the hanging one waited")
        #expect((try? quick.last!.get().status) == 200)
        #expect(pump(reactor) { !slow.outcomes.isEmpty })
        let elapsed = monotonicMs() - started
        #expect(slow.last == .failure(.timeout))
        #expect(elapsed >= 600 && elapsed < 2_000, "\(elapsed) ms")
        #expect(c.inFlight == 0)
        #expect(c.openConnections == 1, "the hung connection is closed; the good one stays idle")
    }

    @Test func responseBeyondTheCapFails() throws {
        let big = String(repeating: "x", count: 5_000)
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok(big) }
        let c = try client()
        #expect(call(c, "https://127.0.0.1:\(server.port)/") == .failure(.responseTooLarge))
        #expect(c.openConnections == 0)
        // Exactly the cap (head + body = 4,096 bytes; "Content-Length: 0" grows by 3 digits) is fine.
        let fits = String(repeating: "y", count: 4_096 - 3 - HTTPSTestServer.response(headers: ["X-Answer: yes"], body: "").count)
        #expect(HTTPSTestServer.response(headers: ["X-Answer: yes"], body: fits).count == 4_096)
        server.reply = { _, _, _ in Self.ok(fits) }
        #expect((try? call(c, "https://127.0.0.1:\(server.port)/")?.get().body.count) == fits.count)
    }

    @Test func keptAliveConnectionIsReused() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, n, _ in Self.ok("answer \(n)") }
        let c = try client()
        let first = try call(c, "https://127.0.0.1:\(server.port)/a")!.get()
        let second = try call(c, "https://127.0.0.1:\(server.port)/b")!.get()
        #expect(String(decoding: first.body, as: UTF8.self) == "answer 0")
        #expect(String(decoding: second.body, as: UTF8.self) == "answer 1")
        #expect(server.accepted == 1)
        #expect(server.requests.map(\.connection) == [0, 0])
        #expect(c.idleConnections == 1)
    }

    @Test func connectionCloseIsHonoured() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in
            .send(HTTPSTestServer.response(headers: ["Connection: close"], body: "bye"))
        }
        let c = try client()
        _ = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(c.openConnections == 0)
        _ = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(server.accepted == 2)
    }

    @Test func serverClosingAnIdleConnectionLeadsToAFreshOne() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok() }
        let c = try client()
        _ = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(c.idleConnections == 1)
        server.closeAll()
        #expect(pump(reactor) { c.idleConnections == 0 }, "the client notices the close while idle")
        #expect((try? call(c, "https://127.0.0.1:\(server.port)/")?.get().status) == 200)
        #expect(server.accepted == 2)
    }

    @Test func idleConnectionIsClosedAfterTheIdleLimit() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok() }
        let c = try client()
        c.idleTimeoutMs = 150
        let started = monotonicMs()
        _ = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(c.idleConnections == 1)
        #expect(pump(reactor) { c.openConnections == 0 })
        #expect(monotonicMs() - started >= 150)
        #expect(pump(reactor) { server.connections.allSatisfy(\.closed) }, "the server sees the close")
        _ = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(server.accepted == 2)
    }

    @Test func timersReachTheClientWhateverOwnerRegistersAfterIt() throws {
        // The push service may build its client before the relay service registers its timers.
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .hang }
        let c = try client(deadlineMs: 300)
        let relay = RelayService(settings: RelaySettings(), context: IOContext(reactor: reactor))
        #expect(call(c, "https://127.0.0.1:\(server.port)/") == .failure(.timeout))
        #expect(server.requests.count == 1)
        _ = relay
    }

    @Test func twoClientsOnOneReactorEachGetTheirOwnTimers() throws {
        // The push service and ACME each build a client: the one installed first must still see
        // its deadlines and starts, though the second client's delegate is in front of it.
        let hanging = try HTTPSTestServer(reactor: reactor) { _, _, _ in .hang }
        let good = try HTTPSTestServer(reactor: reactor) { _, _, _ in Self.ok() }
        let first = try client(deadlineMs: 400)
        let second = try client(deadlineMs: 5_000)
        let slow = Box(), quick = Box()
        first.send(HTTPSRequest(method: "POST", url: HTTPSURL("https://127.0.0.1:\(hanging.port)/")!)) { slow.outcomes.append($0) }
        second.send(HTTPSRequest(method: "POST", url: HTTPSURL("https://127.0.0.1:\(good.port)/")!)) { quick.outcomes.append($0) }
        #expect(pump(reactor, timeoutMs: 4_000) { !slow.outcomes.isEmpty && !quick.outcomes.isEmpty })
        #expect(slow.last == .failure(.timeout))
        #expect((try? quick.last?.get().status) == 200)
        #expect(first.inFlight == 0 && second.inFlight == 0)
    }

    @Test func staleReusedConnectionIsRetriedOnceOnAFreshOne() throws {
        // The server closes its first connection on the second request without answering: a
        // kept-alive connection that died just as it was reused.
        let server = try HTTPSTestServer(reactor: reactor) { conn, n, _ in conn == 0 && n == 1 ? .close : Self.ok("fresh") }
        let c = try client()
        _ = try call(c, "https://127.0.0.1:\(server.port)/", body: "one")!.get()
        let retried = try call(c, "https://127.0.0.1:\(server.port)/", body: "two")!.get()
        #expect(String(decoding: retried.body, as: UTF8.self) == "fresh")
        #expect(server.accepted == 2)
        #expect(server.requests.map(\.connection) == [0, 0, 1])
    }

    @Test func freshConnectionClosedBeforeAnswerIsNotRetried() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .close }
        let c = try client()
        #expect(call(c, "https://127.0.0.1:\(server.port)/") == .failure(.closed))
        #expect(server.accepted == 1)
    }

    @Test func malformedResponseFails() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(Array("HTTP/1.1 2OO OK\r\n\r\n".utf8)) }
        let c = try client()
        #expect(call(c, "https://127.0.0.1:\(server.port)/") == .failure(.malformedResponse))
    }

    @Test func redirectIsReturnedNotFollowed() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in
            .send(HTTPSTestServer.response(status: 302, headers: ["Location: https://127.0.0.1:1/"], body: ""))
        }
        let c = try client()
        let r = try call(c, "https://127.0.0.1:\(server.port)/")!.get()
        #expect(r.status == 302)
        #expect(server.accepted == 1)
    }

    @Test func refusedPortFailsWithConnect() throws {
        let c = try client()
        let port = try closedPort()
        #expect(call(c, "https://127.0.0.1:\(port)/") == .failure(.connect))
        #expect(call(c, "https://[::1]:\(port)/") == .failure(.connect))
    }

    @Test func headerInjectionIsRefusedWithoutConnecting() throws {
        let c = try client()
        #expect(call(c, "https://127.0.0.1:1/", headers: [("X-Evil", "a\r\nHost: b")]) == .failure(.invalidRequest))
        #expect(call(c, "https://127.0.0.1:1/", headers: [("Content-Length", "3")]) == .failure(.invalidRequest))
        #expect(call(c, "https://127.0.0.1:1/", method: "GE T") == .failure(.invalidRequest))
        #expect(c.openConnections == 0)
    }

    /// A port nothing listens on: bound and closed again.
    func closedPort() throws -> UInt16 {
        var any = SocketAddress(ip: "127.0.0.1", port: 1)!
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        var fd = try Socket.listen(on: any)
        defer { fd.close() }
        return Socket.localAddress(fd.raw).port
    }
}

/// Interop: the client against Python's `http.server` behind Python's `ssl` (another TLS stack,
/// another HTTP implementation) on loopback. The server reports what it saw — SNI, request line,
/// headers, body, the client's port (one TCP connection or several) — in its JSON answers.
@Suite struct HTTPSClientPythonInteropTests {
    static let script = #"""
        import http.server, json, ssl, sys
        seen = {}
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *a): pass
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                out = json.dumps({"sni": seen.get("sni"), "line": self.requestline, "host": self.headers.get("Host"),
                                  "length": self.headers.get("Content-Length"), "body": body.decode(),
                                  "port": self.client_address[1]}).encode()
                self.send_response(200)
                if self.path == "/chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(out), 7):
                        part = out[i:i + 7]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        def sni(sock, name, c): seen["sni"] = name
        ctx.sni_callback = sni
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        print(srv.server_address[1], flush=True)
        srv.serve_forever()
        """#

    @Test func postsAndReusesOneConnectionWithSNI() throws {
        let reactor = try Reactor()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", Self.script, TestPKI.dir + "/leaf.crt", TestPKI.dir + "/leaf.key"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        // SIGKILL: the child inherits this process's signal mask, in which other tests may have
        // blocked SIGTERM (Signals.swift uses signalfd).
        defer { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        var line: [UInt8] = []
        while !line.contains(0x0a) {
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { break }
            line += d
        }
        let port = try #require(UInt16(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)))
        let c = try HTTPSClient(reactor: reactor)
        var answers: [String] = []
        for (path, body) in [("/plain", "first"), ("/chunked", "second")] {
            var outcome: Result<HTTPSResponse, HTTPSFailure>?
            c.send(HTTPSRequest(method: "POST", url: HTTPSURL("https://localhost:\(port)\(path)")!, body: Array(body.utf8))) { outcome = $0 }
            pump(reactor, timeoutMs: 8_000) { outcome != nil }
            let r = try #require(try outcome?.get())
            #expect(r.status == 200)
            answers.append(String(decoding: r.body, as: UTF8.self))
        }
        let seen = try answers.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(seen[0]["sni"] as? String == "localhost")
        #expect(seen[0]["line"] as? String == "POST /plain HTTP/1.1")
        #expect(seen[0]["host"] as? String == "localhost:\(port)")
        #expect(seen[0]["length"] as? String == "5" && seen[0]["body"] as? String == "first")
        #expect(seen[1]["line"] as? String == "POST /chunked HTTP/1.1" && seen[1]["body"] as? String == "second")
        #expect(seen[0]["port"] as? Int == seen[1]["port"] as? Int, "the second call reused the first connection")
        #expect(c.idleConnections == 1)
    }
}
