import RelayReactor
import RelayCodecs
import RelayLog
import RelayTransport
import RelayCore

/// Sends the FCM pushes binaries ask for (docs/protocol.md §9), on the reactor thread through an
/// `HTTPSSending` client that never blocks the loop. Admission after the envelope is known to be a
/// wake: a valid request → the server-id's bucket → the in-flight cap; a refused wake is only
/// counted and reported to the caller (which logs it), never queued or retried. An admitted wake
/// ends in exactly one outcome log line and one counter.
///
/// One access token serves every wake until shortly before it expires; wakes that arrive while
/// it is being fetched wait for that one fetch (they hold their in-flight slots meanwhile).
public final class PushService {
    public enum Outcome: Int, CaseIterable, Sendable {
        case sent, unregistered, sendFailed, tokenFetchFailed, dropped
        public var label: String { ["sent", "unregistered", "send_failed", "token_fetch_failed", "dropped"][rawValue] }
    }

    /// Why a wake was refused: the fixed `reason` of `binary_forwarder_push_wake_dropped`.
    public enum Drop: String, Sendable {
        case notConfigured = "push not configured"
        case invalid = "invalid wake"
        case rateLimited = "rate limited"
        case tooManyInFlight = "too many wakes in flight"
    }

    package let key: ServiceAccountKey
    package let sendURL: HTTPSURL
    package let client: HTTPSSending
    package let now: () -> Int64
    package let wallSeconds: () -> Int
    /// Per outcome, indexed by `Outcome.rawValue` (`pyrycode_relay_push_wakes_total`).
    public private(set) var counts = [Int](repeating: 0, count: Outcome.allCases.count)
    /// Admitted wakes without an outcome yet (≤ `Limits.pushMaxInFlight`).
    public private(set) var inFlight = 0
    package var buckets = RateLimiter<String>(burst: Limits.pushBurst, refillMs: Limits.pushRefillMs, idleMs: Limits.pushBucketIdleMs)
    private var accessToken: String?
    private var accessTokenValidUntil: Int64 = 0
    private var fetching = false
    private var waiting: [Wake] = []

    package struct Wake {
        package let serverID: String
        package let token: String
        package var fingerprint: String { PushService.fingerprint(token) }
    }

    /// `baseURL`: `https://fcm.googleapis.com`, or `PYRYCODE_RELAY_FCM_BASE_URL` in tests.
    public init?(key: ServiceAccountKey, baseURL: String, client: HTTPSSending,
                 now: @escaping () -> Int64, wallSeconds: @escaping () -> Int = { wallClock().seconds }) {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        guard let url = HTTPSURL(base + PushMessages.sendPath) else { return nil }
        self.key = key
        self.sendURL = url
        self.client = client
        self.now = now
        self.wallSeconds = wallSeconds
    }

    /// One wake request (`value`: the bytes of the envelope's `push_wake`). nil: admitted, its
    /// outcome comes later; otherwise the refusal, already counted as `dropped`.
    public func wake(serverID: String, _ value: UnsafeRawBufferPointer) -> Drop? {
        let t = now()
        guard let token = PushMessages.wakeToken(value) else { return dropped(.invalid) }
        guard buckets.allow(serverID, now: t) else { return dropped(.rateLimited) }
        guard inFlight < Limits.pushMaxInFlight else { return dropped(.tooManyInFlight) }
        inFlight += 1
        let w = Wake(serverID: serverID, token: token)
        if let access = accessToken, t < accessTokenValidUntil {
            send(w, access: access)
        } else {
            waiting.append(w)
            if !fetching { fetchToken() }
        }
        return nil
    }

    /// Forgets idle server-id buckets (called from the relay's housekeeping).
    public func sweep(now: Int64) { buckets.sweep(now: now) }

    private func dropped(_ d: Drop) -> Drop {
        counts[Outcome.dropped.rawValue] += 1
        return d
    }

    private func fetchToken() {
        guard let request = PushMessages.tokenRequest(key: key, issuedAt: wallSeconds()) else {
            // Signing with a key that loaded at boot does not fail short of memory exhaustion.
            tokenFetched(.failure(PushFailure("signing failed")))
            return
        }
        fetching = true
        client.send(request) { [weak self] result in
            self?.tokenFetched(PushMessages.accessToken(result))
        }
    }

    private func tokenFetched(_ result: Result<PushMessages.AccessToken, PushFailure>) {
        fetching = false
        let ready = waiting
        waiting = []
        switch result {
        case .success(let t):
            accessToken = t.value
            accessTokenValidUntil = now() + max(0, Int64(t.expiresInSeconds) * 1000 - Limits.pushTokenRefreshMarginMs)
            for w in ready { send(w, access: t.value) }
        case .failure(let f):
            // Nothing cached: the next wake tries again.
            for w in ready { finish(w, .tokenFetchFailed, err: "token: " + f.text) }
        }
    }

    private func send(_ w: Wake, access: String) {
        client.send(PushMessages.sendRequest(url: sendURL, accessToken: access, token: w.token)) { [weak self] result in
            self?.sent(w, PushMessages.sendOutcome(result), access: access)
        }
    }

    private func sent(_ w: Wake, _ outcome: PushMessages.SendOutcome, access: String) {
        switch outcome {
        case .sent(let id):
            finish(w, .sent, messageID: id)
        case .unregistered(let f):
            finish(w, .unregistered, err: f.text)
        case .failed(let f, let unauthenticated):
            // A token FCM no longer accepts (revoked, clock skew) is not used again.
            if unauthenticated && accessToken == access { accessToken = nil }
            finish(w, .sendFailed, err: f.text)
        }
    }

    private func finish(_ w: Wake, _ outcome: Outcome, err: String = "", messageID: String? = nil) {
        inFlight -= 1
        counts[outcome.rawValue] += 1
        let fp = w.fingerprint
        switch (outcome, messageID) {
        case (.sent, let id?):
            Log.info("push_wake_sent", ["server_id": w.serverID, "token_fp": fp, "fcm_message_id": id])
        case (.sent, nil):
            Log.info("push_wake_sent", ["server_id": w.serverID, "token_fp": fp])
        default:
            Log.warn("push_wake_send_failed", ["server_id": w.serverID, "token_fp": fp, "reason": outcome.label, "err": err])
        }
    }

    /// `token_fp`: the first 8 hex digits of SHA-256(token) — enough to match log lines about one
    /// phone, useless for recovering the token.
    public static func fingerprint(_ token: String) -> String {
        let d = sha256(Array(token.utf8))
        return Hex.string(UInt32(d[0]) << 24 | UInt32(d[1]) << 16 | UInt32(d[2]) << 8 | UInt32(d[3]), digits: 8)
    }
}
