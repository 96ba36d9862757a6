import RelayReactor
import RelayCodecs
import RelayLog
import RelayTransport

/// Why an ACME order failed: the server's problem document (RFC 8555 §6.7: `type`, `detail`),
/// a transport failure, or an answer we could not use.
package enum ACMEFailure: Error, Equatable, CustomStringConvertible {
    case problem(type: String, detail: String)
    case transport(HTTPSFailure)
    case unexpected(String)

    package var description: String {
        switch self {
        case .problem(let t, let d): return "\(t): \(d)"
        case .transport(let f): return "transport: \(f)"
        case .unexpected(let s): return s
        }
    }

    /// The problem's `type` (log key problem_type), or a short word for our own failures.
    package var problemType: String {
        switch self {
        case .problem(let t, _): return t
        case .transport: return "transport"
        case .unexpected: return "unexpected_response"
        }
    }
}

/// The challenges this relay can answer for an authorization (RFC 8555 §8), and where it
/// publishes the answers: http-01 tokens on --http-listen, tls-alpn-01 on the TLS listener.
package protocol ACMEChallengeResponder: AnyObject {
    /// Challenge types we can answer now, preferred first ("http-01", "tls-alpn-01").
    var supportedChallengeTypes: [String] { get }
    func publish(type: String, token: String, keyAuthorization: String, domain: String)
    func withdraw(type: String, token: String)
}

/// One RFC 8555 client for one account key, on the reactor: directory (§7.1.1), nonces (§7.2,
/// `badNonce` retried with the fresh nonce, §6.5), account (§7.3, terms agreed, no contact, as
/// Go's autocert), order (§7.4), authorization and challenge (§7.5), finalize with a CSR, polling
/// with Retry-After honoured (§7.4, RFC 9110 §10.2.3), certificate download (§7.4.2, PEM chain).
/// Every request is a JWS (§6.2) signed ES256; POST-as-GET (§6.3) for reads.
package final class ACMEClient: TimerOwner {
    package enum TimerKind: UInt8 {
        /// A Retry-After wait ended (key: the waiting continuation).
        case poll
    }

    package let reactor: Reactor
    package let http: HTTPSSending
    package let directoryURL: HTTPSURL
    package let accountKey: ACMEKey
    package weak var responder: ACMEChallengeResponder?

    private var directory: (newNonce: String, newAccount: String, newOrder: String)?
    private var kid: String?
    private var nonce: String?
    private var waiting: [UInt64: () -> Void] = [:]
    private var nextWaitKey: UInt64 = 1
    private lazy var timers = reactor.registerTimers(for: self)

    package init(reactor: Reactor, http: HTTPSSending, directoryURL: HTTPSURL, accountKey: ACMEKey) {
        self.reactor = reactor
        self.http = http
        self.directoryURL = directoryURL
        self.accountKey = accountKey
    }

    package func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        waiting.removeValue(forKey: key)?()
    }

    package typealias Done<T> = (Result<T, ACMEFailure>) -> Void

    /// Runs one whole order for `domain`; `completion` gets the PEM chain (leaf first).
    package func order(domain: String, certificateKey: ACMEKey, completion: @escaping Done<[UInt8]>) {
        loadDirectory { [self] r in
            guard case .success = r else { return completion(r.map { [] }) }
            ensureAccount { [self] r in
                guard case .success = r else { return completion(r.map { [] }) }
                let payload = "{\"identifiers\":[{\"type\":\"dns\",\"value\":\(JSONValue.quote(domain))}]}"
                post(directory!.newOrder, payload: payload) { [self] r in
                    switch r {
                    case .failure(let f): completion(.failure(f))
                    case .success(let resp):
                        guard let orderURL = resp.header("location"), let order = JSONValue.parse(resp.body),
                              let authzs = order["authorizations"]?.arrayValue?.compactMap(\.stringValue),
                              let finalize = order["finalize"]?.stringValue else {
                            return completion(.failure(.unexpected("newOrder: no order object")))
                        }
                        authorize(authzs[...], domain: domain) { [self] r in
                            guard case .success = r else { return completion(r.map { [] }) }
                            finish(orderURL: orderURL, finalize: finalize, domain: domain, key: certificateKey, completion: completion)
                        }
                    }
                }
            }
        }
    }

    // MARK: steps

    private func loadDirectory(_ done: @escaping Done<Void>) {
        if directory != nil { return done(.success(())) }
        http.send(HTTPSRequest(method: "GET", url: directoryURL)) { [self] r in
            switch r {
            case .failure(let f): done(.failure(.transport(f)))
            case .success(let resp):
                guard resp.status == 200, let d = JSONValue.parse(resp.body),
                      let nn = d["newNonce"]?.stringValue, HTTPSURL(nn) != nil,
                      let na = d["newAccount"]?.stringValue, HTTPSURL(na) != nil,
                      let no = d["newOrder"]?.stringValue, HTTPSURL(no) != nil else {
                    return done(.failure(.unexpected("directory: status \(resp.status), no https newNonce/newAccount/newOrder")))
                }
                directory = (nn, na, no)
                done(.success(()))
            }
        }
    }

    private func ensureAccount(_ done: @escaping Done<Void>) {
        if kid != nil { return done(.success(())) }
        // RFC 8555 §7.3: an existing account for this key answers 200 with its URL, a new one 201.
        post(directory!.newAccount, payload: "{\"termsOfServiceAgreed\":true}", useJWK: true) { [self] r in
            switch r {
            case .failure(let f): done(.failure(f))
            case .success(let resp):
                guard let loc = resp.header("location"), !loc.isEmpty else {
                    return done(.failure(.unexpected("newAccount: no Location")))
                }
                kid = loc
                done(.success(()))
            }
        }
    }

    private func authorize(_ urls: ArraySlice<String>, domain: String, _ done: @escaping Done<Void>) {
        guard let url = urls.first else { return done(.success(())) }
        post(url, payload: nil) { [self] r in
            switch r {
            case .failure(let f): done(.failure(f))
            case .success(let resp):
                guard let authz = JSONValue.parse(resp.body), let status = authz["status"]?.stringValue else {
                    return done(.failure(.unexpected("authorization: no status")))
                }
                // Authorizations may be reused (RFC 8555 §7.1.4): a valid one needs no challenge.
                if status == "valid" { return authorize(urls.dropFirst(), domain: domain, done) }
                guard status == "pending" else { return done(.failure(.unexpected("authorization status \(status)"))) }
                let offered = authz["challenges"]?.arrayValue ?? []
                let types = responder?.supportedChallengeTypes ?? []
                guard let (type, challenge) = types.lazy.compactMap({ t in offered.first { $0["type"]?.stringValue == t }.map { (t, $0) } }).first,
                      let token = challenge["token"]?.stringValue, let churl = challenge["url"]?.stringValue else {
                    return done(.failure(.unexpected("authorization: no challenge of a type we answer (\(types.joined(separator: ",")))")))
                }
                responder?.publish(type: type, token: token, keyAuthorization: token + "." + accountKey.thumbprint, domain: domain)
                // RFC 8555 §7.5.1: an empty object tells the server to validate.
                post(churl, payload: "{}") { [self] r in
                    if case .failure(let f) = r {
                        responder?.withdraw(type: type, token: token)
                        return done(.failure(f))
                    }
                    pollAuthorization(url, polls: 0) { [self] r in
                        responder?.withdraw(type: type, token: token)
                        guard case .success = r else { return done(r) }
                        authorize(urls.dropFirst(), domain: domain, done)
                    }
                }
            }
        }
    }

    private func pollAuthorization(_ url: String, polls: Int, _ done: @escaping Done<Void>) {
        post(url, payload: nil) { [self] r in
            switch r {
            case .failure(let f): done(.failure(f))
            case .success(let resp):
                let authz = JSONValue.parse(resp.body)
                switch authz?["status"]?.stringValue {
                case "valid": done(.success(()))
                case "pending":
                    guard polls < Limits.acmeMaxPolls else { return done(.failure(.unexpected("authorization still pending"))) }
                    after(resp) { [self] in pollAuthorization(url, polls: polls + 1, done) }
                default:
                    // The failed challenge carries the reason (RFC 8555 §7.1.4 "error").
                    let err = authz?["challenges"]?.arrayValue?.lazy.compactMap { $0["error"] }.first
                    done(.failure(ACMEClient.problem(err) ?? .unexpected("authorization \(authz?["status"]?.stringValue ?? "unreadable")")))
                }
            }
        }
    }

    private func finish(orderURL: String, finalize: String, domain: String, key: ACMEKey, completion: @escaping Done<[UInt8]>) {
        let csr: [UInt8]
        do { csr = try key.csr(domain: domain) } catch { return completion(.failure(.unexpected(error.description))) }
        post(finalize, payload: "{\"csr\":\"\(Base64.urlEncode(csr))\"}") { [self] r in
            switch r {
            case .failure(let f): completion(.failure(f))
            case .success(let resp): afterFinalize(orderURL: orderURL, response: resp, polls: 0, completion: completion)
            }
        }
    }

    private func afterFinalize(orderURL: String, response: HTTPSResponse, polls: Int, completion: @escaping Done<[UInt8]>) {
        let order = JSONValue.parse(response.body)
        switch order?["status"]?.stringValue {
        case "valid":
            guard let cert = order?["certificate"]?.stringValue else {
                return completion(.failure(.unexpected("order valid without certificate URL")))
            }
            post(cert, payload: nil, accept: "application/pem-certificate-chain") { r in
                switch r {
                case .failure(let f): completion(.failure(f))
                case .success(let resp):
                    guard resp.body.starts(with: Array("-----BEGIN CERTIFICATE-----".utf8)) else {
                        return completion(.failure(.unexpected("certificate: not a PEM chain")))
                    }
                    completion(.success(resp.body))
                }
            }
        case "processing", "ready":
            guard polls < Limits.acmeMaxPolls else { return completion(.failure(.unexpected("order still processing"))) }
            after(response) { [self] in
                post(orderURL, payload: nil) { [self] r in
                    switch r {
                    case .failure(let f): completion(.failure(f))
                    case .success(let resp): afterFinalize(orderURL: orderURL, response: resp, polls: polls + 1, completion: completion)
                    }
                }
            }
        default:
            completion(.failure(ACMEClient.problem(order?["error"]) ?? .unexpected("order \(order?["status"]?.stringValue ?? "unreadable")")))
        }
    }

    // MARK: transport

    /// The wait a Retry-After value asks for, within [acmePollMinMs, acmePollMaxMs]. Clamped in
    /// seconds before the multiplication: a CA's huge value must not overflow it (a trap).
    package static func pollDelayMs(retryAfter: String?) -> Int64 {
        guard let retryAfter, let s = Int64(Substring(retryAfter).trimmingASCIISpaces()) else { return Limits.acmePollMinMs }
        let seconds = min(max(s, 0), Limits.acmePollMaxMs / 1000)
        return min(max(seconds * 1000, Limits.acmePollMinMs), Limits.acmePollMaxMs)
    }

    /// Waits for the response's Retry-After (seconds form; RFC 8555 §7.4 "processing"), bounded
    /// to [acmePollMinMs, acmePollMaxMs]; the date form or no header → the minimum.
    private func after(_ response: HTTPSResponse, _ body: @escaping () -> Void) {
        let ms = ACMEClient.pollDelayMs(retryAfter: response.header("retry-after"))
        let key = nextWaitKey
        nextWaitKey += 1
        waiting[key] = body
        timers.schedule(.poll, at: reactor.now + ms, key: key)
    }

    private func freshNonce(_ done: @escaping Done<String>) {
        if let n = nonce {
            nonce = nil
            return done(.success(n))
        }
        // RFC 8555 §7.2: GET is allowed (204) and, unlike HEAD, needs no special body rule.
        http.send(HTTPSRequest(method: "GET", url: HTTPSURL(directory!.newNonce)!)) { r in
            switch r {
            case .failure(let f): done(.failure(.transport(f)))
            case .success(let resp):
                guard let n = resp.header("replay-nonce"), !n.isEmpty else { return done(.failure(.unexpected("newNonce: no Replay-Nonce"))) }
                done(.success(n))
            }
        }
    }

    /// A JWS POST (RFC 8555 §6.2); `payload` nil is POST-as-GET (§6.3). A `badNonce` answer
    /// (§6.5) is retried with the nonce it carried, up to `Limits.acmeBadNonceRetries` times.
    private func post(_ url: String, payload: String?, useJWK: Bool = false, accept: String? = nil,
                      attempt: Int = 0, _ done: @escaping Done<HTTPSResponse>) {
        // Every URL comes from the server (directory, Location, order fields): https only.
        guard let target = HTTPSURL(url) else { return done(.failure(.unexpected("not an https URL"))) }
        freshNonce { [self] r in
            let n: String
            switch r {
            case .failure(let f): return done(.failure(f))
            case .success(let v): n = v
            }
            let key = useJWK ? "\"jwk\":\(accountKey.jwk)" : "\"kid\":\(JSONValue.quote(kid ?? ""))"
            let protected = "{\"alg\":\"ES256\",\(key),\"nonce\":\(JSONValue.quote(n)),\"url\":\(JSONValue.quote(url))}"
            let p64 = Base64.urlEncode(Array(protected.utf8))
            let b64 = Base64.urlEncode(Array((payload ?? "").utf8))
            let signature: [UInt8]
            do { signature = try accountKey.sign(Array((p64 + "." + b64).utf8)) } catch {
                return done(.failure(.unexpected("\(error)")))
            }
            let body = "{\"protected\":\"\(p64)\",\"payload\":\"\(b64)\",\"signature\":\"\(Base64.urlEncode(signature))\"}"
            var headers = [(name: "Content-Type", value: "application/jose+json")]
            if let accept { headers.append((name: "Accept", value: accept)) }
            http.send(HTTPSRequest(method: "POST", url: target, headers: headers, body: Array(body.utf8))) { [self] r in
                switch r {
                case .failure(let f): done(.failure(.transport(f)))
                case .success(let resp):
                    if let fresh = resp.header("replay-nonce"), !fresh.isEmpty { nonce = fresh }
                    guard resp.status >= 400 else { return done(.success(resp)) }
                    let problem = ACMEClient.problem(JSONValue.parse(resp.body)) ?? .unexpected("HTTP \(resp.status)")
                    if case .problem(let t, _) = problem, t == "urn:ietf:params:acme:error:badNonce",
                       attempt < Limits.acmeBadNonceRetries {
                        Log.info("acme_bad_nonce_retried", ["count": String(attempt + 1)])
                        return post(url, payload: payload, useJWK: useJWK, accept: accept, attempt: attempt + 1, done)
                    }
                    // §6.7: the CA no longer knows the account this request named (a reset
                    // staging CA, a purge): the next order registers the key again instead of
                    // failing with the same kid until the process restarts.
                    if case .problem(let t, _) = problem, t == "urn:ietf:params:acme:error:accountDoesNotExist", !useJWK {
                        kid = nil
                    }
                    done(.failure(problem))
                }
            }
        }
    }

    /// An RFC 7807 problem document as a failure; `detail` is clipped for the log line.
    package static func problem(_ json: JSONValue?) -> ACMEFailure? {
        guard let type = json?["type"]?.stringValue else { return nil }
        let detail = json?["detail"]?.stringValue ?? ""
        return .problem(type: truncatedUTF8(type, maxBytes: Limits.acmeProblemMaxBytes),
                        detail: truncatedUTF8(detail, maxBytes: Limits.acmeProblemMaxBytes))
    }
}
