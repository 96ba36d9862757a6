import CEpoll
import RelayReactor
import RelayCodecs
import RelayLog
import RelayTransport

/// Keeps the TLS listener supplied with a certificate for `--domain` from ACME (docs/operations.md
/// "ACME"): the cache is read at boot (a restart does not order again), the expiry checked at boot
/// and every `Limits.acmeCheckIntervalMs`, and an order placed when the certificate is missing or
/// within `--acme-renew-before` of its notAfter. A new pair is written to the cache and swapped
/// into the listener like a SIGHUP reload: new connections get it, existing ones keep theirs.
/// A failed order is retried with backoff (`--acme-retry-min` doubling to 1 h) while the old
/// certificate, if any, keeps serving. Boot never waits for the CA.
package final class ACMEManager: ACMEChallengeResponder, TimerOwner {
    package enum TimerKind: UInt8 {
        /// Every `Limits.acmeCheckIntervalMs`: is the certificate due for renewal?
        case check
        /// After a failed order (key: the retry generation it was armed in).
        case retry
    }

    package let domain: String
    package let reactor: Reactor
    package let cache: CertCache
    package let tls: TLSHolder
    package let counters: ACMECounters
    package let renewBeforeMs: Int64
    package let retryMinMs: Int64
    private let http: HTTPSSending
    private let directoryURL: HTTPSURL
    private var client: ACMEClient?
    private var ordering = false
    private var retryDelayMs: Int64
    /// Retry timers carry the generation they were armed in; a later order makes them stale.
    private var retryGeneration: UInt64 = 0
    /// The served certificate, once there is one.
    package private(set) var served: CertificateInfo?
    /// Why there is no certificate yet (for /healthz on --http-listen): the last failure's type.
    package private(set) var lastFailure: String?
    /// http-01 key authorizations by token (RFC 8555 §8.3), served on --http-listen.
    package private(set) var http01: [String: String] = [:]
    /// Whether --http-listen is bound: only then is http-01 offered.
    package var httpListenerReady = false
    /// tls-alpn-01 on the TLS listener: always available.
    private let alpnChallenge = TLSALPNChallenge()
    private lazy var timers = reactor.registerTimers(for: self)

    /// `http`: the process's outbound HTTPS client; its response cap must fit a certificate chain
    /// (`Limits.acmeMaxCertificateBytes`).
    package init(domain: String, directoryURL: HTTPSURL, cache: CertCache, tls: TLSHolder, counters: ACMECounters,
         reactor: Reactor, http: HTTPSSending, renewBeforeMs: Int64, retryMinMs: Int64) {
        self.domain = domain
        self.directoryURL = directoryURL
        self.cache = cache
        self.tls = tls
        self.counters = counters
        self.reactor = reactor
        self.renewBeforeMs = renewBeforeMs
        self.retryMinMs = retryMinMs
        retryDelayMs = retryMinMs
        self.http = http
        alpnChallenge.attach(to: tls.current)
    }

    package func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        switch kind {
        case .check:
            check()
            timers.schedule(.check, at: now + Limits.acmeCheckIntervalMs)
        case .retry:
            if key == retryGeneration { check() }
        }
    }

    /// Boot: serve the cached pair if it is good, then check (which may order, asynchronously).
    package func start() {
        loadCachedCertificate()
        timers.schedule(.check, at: reactor.now + Limits.acmeCheckIntervalMs)
        check()
    }

    // MARK: ACMEChallengeResponder

    /// http-01 first, as Go's autocert; tls-alpn-01 needs only the TLS port (RFC 8737).
    package var supportedChallengeTypes: [String] { httpListenerReady ? ["http-01", "tls-alpn-01"] : ["tls-alpn-01"] }

    package func publish(type: String, token: String, keyAuthorization: String, domain: String) {
        if type == "http-01" { http01[token] = keyAuthorization }
        if type == "tls-alpn-01", !alpnChallenge.set(domain: domain, keyAuthorization: keyAuthorization) {
            Log.error("acme_challenge_certificate_failed", ["domain": domain])
        }
        Log.info("acme_challenge_published", ["domain": domain, "challenge": type])
    }

    package func withdraw(type: String, token: String) {
        if type == "http-01" { http01[token] = nil }
        if type == "tls-alpn-01" { alpnChallenge.clear() }
    }

    // MARK: certificate lifecycle

    private func loadCachedCertificate() {
        guard let chain = cache.read(CertCache.chainFile(domain)) else { return }
        guard let info = CertificateInfo(chainPEM: chain, domain: domain), info.matchesDomain else {
            Log.warn("acme_cache_invalid", ["domain": domain, "reason": "certificate unreadable or for another name"])
            return
        }
        install(info, reason: "cache")
    }

    /// Builds a context from the cache files and swaps it in. False when the pair does not load
    /// (e.g. the key does not match the chain): logged, and the caller re-orders.
    @discardableResult
    private func install(_ info: CertificateInfo, reason: String) -> Bool {
        do {
            let context = try TLSContext(certFile: cache.path(CertCache.chainFile(domain)), keyFile: cache.path(CertCache.keyFile(domain)))
            alpnChallenge.attach(to: context)
            tls.install(context)
        } catch {
            Log.warn("acme_cache_invalid", ["domain": domain, "reason": truncatedUTF8(error.description, maxBytes: Limits.acmeProblemMaxBytes)])
            return false
        }
        served = info
        lastFailure = nil
        counters.tlsCertNotAfter = info.notAfter
        Log.info("acme_certificate_installed", ["domain": domain, "serial": info.serial,
                                                "not_after": String(info.notAfter), "reason": reason])
        return true
    }

    private var renewalDue: Bool {
        guard let served else { return true }
        return (served.notAfter * 1000) - renewBeforeMs <= Int64(time(nil)) * 1000
    }

    private func check() {
        guard renewalDue, !ordering else { return }
        placeOrder()
    }

    private func placeOrder() {
        let accountKey: ACMEKey
        do { accountKey = try loadOrCreateAccountKey() } catch {
            return failed(.unexpected(error.description))
        }
        if client == nil {
            let c = ACMEClient(reactor: reactor, http: http, directoryURL: directoryURL, accountKey: accountKey)
            c.responder = self
            client = c
        }
        let certKey: ACMEKey
        do { certKey = try ACMEKey.generate() } catch { return failed(.unexpected(error.description)) }
        ordering = true
        retryGeneration += 1
        Log.info("acme_order_started", ["domain": domain, "reason": served == nil ? "no certificate" : "renewal due"])
        client!.order(domain: domain, certificateKey: certKey) { [self] result in
            ordering = false
            switch result {
            case .failure(let f): failed(f)
            case .success(let chain): issued(chain: chain, key: certKey)
            }
        }
    }

    private func issued(chain: [UInt8], key: ACMEKey) {
        guard let info = CertificateInfo(chainPEM: chain, domain: domain), info.matchesDomain else {
            return failed(.unexpected("issued certificate unreadable or for another name"))
        }
        // Staged beside the served pair and loaded from there first: a pair that does not load
        // never replaces the one on disk. Then the key is renamed into place before the chain:
        // a crash between the two leaves a new key with the old chain, which the boot check
        // finds mismatched and re-orders.
        let staged = ".next", keyFile = CertCache.keyFile(domain), chainFile = CertCache.chainFile(domain)
        if let e = cache.write(keyFile + staged, key.pem()) ?? cache.write(chainFile + staged, chain) {
            return failed(.unexpected("cert cache: \(e)"))
        }
        guard (try? TLSContext(certFile: cache.path(chainFile + staged), keyFile: cache.path(keyFile + staged))) != nil else {
            return failed(.unexpected("issued pair does not load"))
        }
        if let e = cache.promote(keyFile + staged, to: keyFile) ?? cache.promote(chainFile + staged, to: chainFile) {
            return failed(.unexpected("cert cache: \(e)"))
        }
        guard install(info, reason: served == nil ? "issued" : "renewed") else {
            return failed(.unexpected("issued pair does not load"))
        }
        counters.ordersIssued += 1
        retryDelayMs = retryMinMs
    }

    private func failed(_ f: ACMEFailure) {
        counters.ordersFailed += 1
        lastFailure = f.problemType
        var detail = f.description
        if case .problem(_, let d) = f { detail = d }
        Log.error("acme_order_failed", ["domain": domain, "problem_type": f.problemType,
                                        "detail": truncatedUTF8(detail, maxBytes: Limits.acmeProblemMaxBytes),
                                        "retry_in": retryDelayMs % 1000 == 0 ? "\(retryDelayMs / 1000)s" : "\(retryDelayMs)ms"])
        retryGeneration += 1
        timers.schedule(.retry, at: reactor.now + retryDelayMs, key: retryGeneration)
        retryDelayMs = min(retryDelayMs * 2, Limits.acmeRetryMaxMs)
    }

    private func loadOrCreateAccountKey() throws(TLSError) -> ACMEKey {
        if let client { return client.accountKey }
        if let pem = cache.read(CertCache.accountKeyFile) {
            if let k = ACMEKey.load(pem: pem) { return k }
            Log.warn("acme_cache_invalid", ["reason": "account key unreadable; a new account is made"])
        } else if !cache.isMissing(CertCache.accountKeyFile) {
            // It exists but could not be read now (EMFILE in a connection flood, EIO): replacing
            // it would lose the account for good. This order fails and is retried later.
            throw TLSError(subject: cache.path(CertCache.accountKeyFile), reason: "cannot read the ACME account key")
        }
        let k = try ACMEKey.generate()
        if let e = cache.write(CertCache.accountKeyFile, k.pem()) {
            Log.warn("acme_account_key_not_saved", ["err": truncatedUTF8(e, maxBytes: Limits.acmeProblemMaxBytes)])
        }
        return k
    }
}
