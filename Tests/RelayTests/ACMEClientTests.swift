import CEpoll
import Testing
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayTransport
@testable import RelayACME

/// The RFC 8555 client against a scripted ACME server (a fake HTTPSSending on the test's reactor):
/// the order of requests, JWS headers (jwk then kid, nonce, url), badNonce retried with the fresh
/// nonce, Retry-After honoured, problems surfaced. End to end against Pebble: tests/interop/test_acme.py.
@Suite struct ACMEClientTests {
    /// Answers requests one loop turn later (never inside send()), from `handle`.
    final class FakeCA: HTTPSSending {
        var pending: [(HTTPSRequest, (Result<HTTPSResponse, HTTPSFailure>) -> Void)] = []
        var handle: (HTTPSRequest, [String: String], JSONValue?) -> HTTPSResponse = { _, _, _ in HTTPSResponse(status: 500) }
        /// Every request: path, protected header (POSTs), reactor time.
        var log: [(path: String, protected: [String: String], at: Int64)] = []
        var issued = 0
        /// The nonce the badNonce answer carried.
        var carriedByBadNonce: String?
        let reactor: Reactor
        init(reactor: Reactor) { self.reactor = reactor }

        func send(_ request: HTTPSRequest, completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void) {
            pending.append((request, completion))
        }

        func freshNonce() -> String {
            issued += 1
            return "nonce-\(issued)"
        }

        func deliver() {
            let now = pending
            pending = []
            for (req, done) in now {
                var protected: [String: String] = [:]
                var payload: JSONValue? = nil
                if req.method == "POST", let jws = JSONValue.parse(req.body),
                   let p = jws["protected"]?.stringValue.flatMap(b64url), case .object(let o)? = JSONValue.parse(p) {
                    for (k, v) in o { protected[k] = v.stringValue ?? (k == "jwk" ? "present" : "?") }
                    payload = jws["payload"]?.stringValue.flatMap(b64url).flatMap { $0.isEmpty ? nil : JSONValue.parse($0) }
                }
                log.append((req.url.path, protected, reactor.now))
                done(.success(handle(req, protected, payload)))
            }
        }
    }

    final class Responder: ACMEChallengeResponder {
        var supportedChallengeTypes = ["http-01"]
        var published: [String: String] = [:]
        var withdrawn: [String] = []
        func publish(type: String, token: String, keyAuthorization: String, domain: String) { published[token] = keyAuthorization }
        func withdraw(type: String, token: String) { withdrawn.append(token) }
    }

    static func b64url(_ s: String) -> [UInt8]? {
        var t = String(s.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while t.utf8.count % 4 != 0 { t += "=" }
        return Base64.decode(t)
    }

    static func json(_ status: Int, _ body: String, _ headers: [(name: String, value: String)] = []) -> HTTPSResponse {
        HTTPSResponse(status: status, headers: headers, body: Array(body.utf8))
    }

    let reactor: Reactor
    let ca: FakeCA
    let responder = Responder()
    let key: ACMEKey
    let client: ACMEClient

    init() throws {
        reactor = try Reactor()
        ca = FakeCA(reactor: reactor)
        key = try ACMEKey.generate()
        client = ACMEClient(reactor: reactor, http: ca, directoryURL: HTTPSURL("https://ca.test/dir")!, accountKey: key)
        client.responder = responder
    }

    func runOrder(timeoutMs: Int64 = 10_000) throws -> Result<[UInt8], ACMEFailure>? {
        var result: Result<[UInt8], ACMEFailure>?
        client.order(domain: "relay.example.com", certificateKey: try ACMEKey.generate()) { result = $0 }
        _ = pump(reactor, timeoutMs: timeoutMs) {
            ca.deliver()
            return result != nil
        }
        return result
    }

    /// The happy path of RFC 8555 §7 with one badNonce and Retry-After on both polls.
    func script(authzStatus: String = "pending", challengeError: String? = nil) {
        var authzPolls = 0, orderPolls = 0, badNonceSent = false
        ca.handle = { [ca] req, protected, payload in
            let nonce = [(name: "replay-nonce", value: ca.freshNonce())]
            switch req.url.path {
            case "/dir":
                return Self.json(200, #"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct","newOrder":"https://ca.test/order","meta":{"termsOfService":"x"}}"#)
            case "/nonce":
                return HTTPSResponse(status: 204, headers: nonce)
            case "/acct":
                #expect(payload == .object([("termsOfServiceAgreed", .bool(true))]))
                return Self.json(201, "{}", nonce + [(name: "location", value: "https://ca.test/acct/7")])
            case "/order":
                if !badNonceSent {
                    badNonceSent = true
                    ca.carriedByBadNonce = nonce[0].value
                    return Self.json(400, #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"stale"}"#, nonce)
                }
                #expect(payload?["identifiers"]?.arrayValue?.first == .object([("type", .string("dns")), ("value", .string("relay.example.com"))]))
                return Self.json(201, #"{"status":"pending","authorizations":["https://ca.test/authz/1"],"finalize":"https://ca.test/finalize/1"}"#,
                                 nonce + [(name: "location", value: "https://ca.test/order/1")])
            case "/authz/1":
                authzPolls += 1
                if authzPolls == 1 {
                    return Self.json(200, #"{"status":"\#(authzStatus)","challenges":[{"type":"dns-01","url":"https://ca.test/chall/9","token":"no"},{"type":"http-01","url":"https://ca.test/chall/1","token":"tok"}]}"#, nonce)
                }
                if let challengeError {
                    return Self.json(200, #"{"status":"invalid","challenges":[{"type":"http-01","status":"invalid","error":\#(challengeError)}]}"#, nonce)
                }
                if authzPolls == 2 { return Self.json(200, #"{"status":"pending"}"#, nonce + [(name: "retry-after", value: "2")]) }
                return Self.json(200, #"{"status":"valid"}"#, nonce)
            case "/chall/1":
                #expect(payload == .object([]))
                return Self.json(200, "{}", nonce)
            case "/finalize/1":
                #expect(payload?["csr"]?.stringValue.flatMap(Self.b64url)?.first == 0x30)
                return Self.json(200, #"{"status":"processing"}"#, nonce + [(name: "retry-after", value: "1")])
            case "/order/1":
                orderPolls += 1
                return Self.json(200, #"{"status":"valid","certificate":"https://ca.test/cert/1"}"#, nonce)
            case "/cert/1":
                #expect(req.headers.contains { $0.name == "Accept" && $0.value == "application/pem-certificate-chain" })
                return Self.json(200, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", nonce)
            default:
                return Self.json(404, "", nonce)
            }
        }
    }

    @Test func wholeOrderFollowsRFC8555() throws {
        script()
        let result = try #require(try runOrder())
        #expect(try result.get() == Array("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".utf8))
        let paths = ca.log.map(\.path)
        #expect(paths == ["/dir", "/nonce", "/acct", "/order", "/order", "/authz/1", "/chall/1", "/authz/1", "/authz/1",
                          "/finalize/1", "/order/1", "/cert/1"])
        let posts = ca.log.filter { !$0.protected.isEmpty }
        // §6.2: jwk for newAccount only, kid afterwards; ES256; the url is the request's.
        #expect(posts[0].protected["jwk"] == "present" && posts[0].protected["kid"] == nil)
        for p in posts.dropFirst() { #expect(p.protected["kid"] == "https://ca.test/acct/7" && p.protected["jwk"] == nil) }
        for p in posts {
            #expect(p.protected["alg"] == "ES256")
            #expect(p.protected["url"] == "https://ca.test" + p.path)
        }
        // §7.2: each nonce is used once, and the badNonce retry uses the nonce that answer carried.
        let nonces = posts.compactMap { $0.protected["nonce"] }
        #expect(Set(nonces).count == nonces.count)
        #expect(posts[1].path == "/order" && posts[2].path == "/order")
        #expect(posts[2].protected["nonce"] != nil && posts[2].protected["nonce"] == ca.carriedByBadNonce)
        // Retry-After honoured: 2 s between authorization polls, 1 s before the order poll.
        let authz = ca.log.filter { $0.path == "/authz/1" }
        #expect(authz[2].at - authz[1].at >= 2_000)
        let finalize = ca.log.first { $0.path == "/finalize/1" }!, order = ca.log.first { $0.path == "/order/1" }!
        #expect(order.at - finalize.at >= 1_000)
        // §8.1: token "." thumbprint, published while validating, withdrawn after.
        #expect(responder.published["tok"] == "tok." + key.thumbprint)
        #expect(responder.withdrawn == ["tok"])
    }

    @Test func invalidChallengeReportsTheProblemTypeAndClippedDetail() throws {
        let long = String(repeating: "x", count: 1000)
        script(challengeError: #"{"type":"urn:ietf:params:acme:error:connection","detail":"\#(long)"}"#)
        let result = try #require(try runOrder())
        guard case .failure(.problem(let type, let detail)) = result else { Issue.record("\(result)"); return }
        #expect(type == "urn:ietf:params:acme:error:connection")
        #expect(detail.utf8.count <= Limits.acmeProblemMaxBytes && detail.hasPrefix("xxx"))
        #expect(responder.withdrawn == ["tok"])
    }

    @Test func reusedValidAuthorizationNeedsNoChallenge() throws {
        script(authzStatus: "valid")
        #expect(try runOrder().map { (try? $0.get()) != nil } == true)
        #expect(responder.published.isEmpty)
        #expect(!ca.log.contains { $0.path == "/chall/1" })
    }

    @Test func noChallengeWeAnswerFailsTheOrder() throws {
        script()
        responder.supportedChallengeTypes = []
        guard case .failure(.unexpected(let why))? = try runOrder() else { Issue.record("must fail"); return }
        #expect(why.contains("no challenge"))
    }

    @Test func badNonceIsRetriedABoundedNumberOfTimes() throws {
        ca.handle = { [ca] req, _, _ in
            let nonce = [(name: "replay-nonce", value: ca.freshNonce())]
            if req.url.path == "/dir" {
                return Self.json(200, #"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct","newOrder":"https://ca.test/order"}"#)
            }
            if req.url.path == "/nonce" { return HTTPSResponse(status: 204, headers: nonce) }
            return Self.json(400, #"{"type":"urn:ietf:params:acme:error:badNonce","detail":"no"}"#, nonce)
        }
        guard case .failure(.problem(let type, _))? = try runOrder() else { Issue.record("must fail"); return }
        #expect(type == "urn:ietf:params:acme:error:badNonce")
        #expect(ca.log.filter { $0.path == "/acct" }.count == Limits.acmeBadNonceRetries + 1)
    }

    // RFC 8555 §6.7: a CA that forgot the account answers accountDoesNotExist to its kid; the
    // order fails, and the next one registers the key again and signs with the new kid.
    @Test func anAccountTheCAForgotIsRegisteredAgain() throws {
        script()  // its authorization is valid once the first order is done
        #expect(try runOrder().map { (try? $0.get()) != nil } == true)
        let scripted = ca.handle
        var known: Set<String> = []  // the CA was reset: acct/7 is gone
        ca.handle = { [ca] req, protected, payload in
            if req.url.path == "/acct" {
                known.insert("https://ca.test/acct/8")
                return Self.json(201, "{}", [(name: "replay-nonce", value: ca.freshNonce()),
                                             (name: "location", value: "https://ca.test/acct/8")])
            }
            if let kid = protected["kid"], !known.contains(kid) {
                return Self.json(400, #"{"type":"urn:ietf:params:acme:error:accountDoesNotExist","detail":"no such account"}"#,
                                 [(name: "replay-nonce", value: ca.freshNonce())])
            }
            return scripted(req, protected, payload)
        }
        guard case .failure(.problem(let type, _))? = try runOrder() else { Issue.record("must fail"); return }
        #expect(type == "urn:ietf:params:acme:error:accountDoesNotExist")
        ca.log.removeAll()
        let again = try #require(try runOrder())
        #expect((try? again.get()) != nil, "\(again) after \(ca.log.map(\.path))")
        let posts = ca.log.filter { !$0.protected.isEmpty }
        #expect(posts.first?.path == "/acct" && posts.first?.protected["jwk"] == "present")
        for p in posts.dropFirst() { #expect(p.protected["kid"] == "https://ca.test/acct/8") }
    }

    @Test func retryAfterIsBoundedWhateverTheCASays() {
        #expect(ACMEClient.pollDelayMs(retryAfter: nil) == Limits.acmePollMinMs)
        #expect(ACMEClient.pollDelayMs(retryAfter: "3") == 3_000)
        #expect(ACMEClient.pollDelayMs(retryAfter: "0") == Limits.acmePollMinMs)
        #expect(ACMEClient.pollDelayMs(retryAfter: "-5") == Limits.acmePollMinMs)
        #expect(ACMEClient.pollDelayMs(retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT") == Limits.acmePollMinMs)
        // Would overflow Int64 once multiplied by 1000 (a trap that ended the process).
        #expect(ACMEClient.pollDelayMs(retryAfter: "99999999999999999") == Limits.acmePollMaxMs)
        #expect(ACMEClient.pollDelayMs(retryAfter: "9223372036854775807") == Limits.acmePollMaxMs)
    }

    @Test func directoryWithoutHTTPSURLsIsRefused() throws {
        ca.handle = { _, _, _ in Self.json(200, #"{"newNonce":"http://ca.test/nonce","newAccount":"https://ca.test/a","newOrder":"https://ca.test/o"}"#) }
        guard case .failure(.unexpected)? = try runOrder() else { Issue.record("must fail"); return }
        #expect(ca.log.count == 1)
    }
}
