import CEpoll

/// The relay: one `ConnectionDelegate` for every public connection. It routes requests
/// (SPEC §5.2), admits upgrades (§6, §10), drives the registry (§8) and forwards (§9).
/// Everything runs on the reactor thread.
public final class RelayService: ConnectionDelegate {
    public let config: RelayConfig
    public let context: IOContext
    public let metrics = Metrics()
    let registry: Registry
    var rateLimiter = RateLimiter()
    var connections: [ConnHandle: Connection] = [:]
    var perIP: [String: Int] = [:]
    var liveWebSockets = 0
    var halfOpen: [ObjectIdentifier: Connection] = [:]
    var halfOpenOrder: [Connection] = []
    var halfOpenHead = 0
    var nextHandle: UInt64 = 1
    var registryTimers: [UInt64: RegistryTimer] = [:]
    var nextTimerKey: UInt64 = 1
    let startedMs: Int64
    public private(set) var draining = false
    /// Called when draining finishes (no WebSocket left).
    public var onDrained: (() -> Void)?
    var random = SystemRandom()

    static let registryTimerKind: UInt8 = 200
    static let housekeepingKind: UInt8 = 201
    static let housekeepingMs: Int64 = 60_000
    static let trimKind: UInt8 = 202
    /// Quiet time after the last accept before freed heap pages are returned to the kernel.
    static let trimQuietMs: Int64 = 500
    var lastAcceptMs: Int64 = 0
    /// When freed buffers last passed `Limits.trimAfterReleasedBytes` (RelayService+BufferBudget).
    var lastReleaseMs: Int64 = 0
    var trimArmed = false

    public init(config: RelayConfig, context: IOContext) {
        self.config = config
        self.context = context
        self.registry = Registry(graceMs: config.graceMs, probeTimeoutMs: config.probeTimeoutMs,
                                 maxPhonesPerServer: config.phonesPerServer)
        self.startedMs = context.reactor.now
        context.reactor.timerDelegate = { [unowned self] entry, now in self.delegateTimer(entry, now: now) }
        context.reactor.scheduleDelegate(key: 0, at: startedMs + RelayService.housekeepingMs, kind: RelayService.housekeepingKind)
        // Large message buffers come and go with every big message: keep glibc from returning
        // the heap top (brk) or mapping fresh pages (mmap) for each one; freed memory goes back to
        // the kernel in `malloc_trim` once the loop is quiet (after a storm, and every minute).
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
        _ = mallopt(M_MMAP_THRESHOLD, 4 << 20)
        // Page in the handshake's SHA-1 path once at boot: OpenSSL's provider set-up touches ~2 MB
        // of libcrypto the first time, which would otherwise land on the first client.
        _ = WebSocketHandshake.acceptKey(for: "dGhlIHNhbXBsZSBub25jZQ==")
        context.bufferBudget = config.maxBufferedBytes
        context.onLargeRelease = { [unowned self] in self.noteLargeRelease() }
    }

    public var connectedBinaries: Int { registry.connectedBinaries }
    public var connectedPhones: Int { registry.connectedPhones }
    public var liveConnectionCount: Int { liveWebSockets }
    public var halfOpenCount: Int { halfOpen.count }

    public func gauges() -> Metrics.Gauges {
        var g = Metrics.Gauges()
        g.connectedBinaries = registry.connectedBinaries
        g.connectedPhones = registry.connectedPhones
        g.liveConnections = liveWebSockets
        g.halfOpen = halfOpen.count
        g.queuedBytes = context.queuedBytes
        g.loopLatency = context.reactor.loopLatency
        return g
    }

    // MARK: accepting

    /// Takes a freshly accepted socket. `tls`: the TLS listener's current context (SPEC §4);
    /// `proxyHeader`: `--https-proxy-protocol` (SPEC §10).
    public func accept(fd: Int32, remote: SocketAddress, tls: TLSContext? = nil, proxyHeader: Bool = false) {
        guard !draining else {
            _ = close(fd)
            return
        }
        Socket.setNoDelay(fd)
        noteAccept()
        // SPEC §10: beyond the half-open cap the oldest not-yet-upgraded connection goes first.
        while halfOpen.count >= config.maxHalfOpen, let oldest = popOldestHalfOpen() {
            oldest.abort()
        }
        let c = Connection(fd: fd, remote: remote, context: context, settings: config.connection, delegate: self,
                           tls: tls, proxyHeader: proxyHeader)
        do { try c.start() } catch { return }
        halfOpen[ObjectIdentifier(c)] = c
        halfOpenOrder.append(c)
        // Entries of connections that upgraded or closed stay in the FIFO until compacted; compact
        // once dead entries outnumber live ones (amortized O(1)), so a flood of rejected upgrades
        // (429/503) cannot pin closed connections in memory (SPEC §10: rejections cost no state).
        if halfOpenOrder.count - halfOpenHead > 2 * halfOpen.count + 64 { compactHalfOpenOrder() }
    }

    /// A connection storm leaves the heap fragmented by short-lived request-parsing allocations
    /// between long-lived connection records; once accepts have been quiet for a moment, free
    /// pages go back to the kernel (malloc_trim), so RSS tracks live connections.
    private func noteAccept() {
        lastAcceptMs = context.reactor.now
        armTrim(at: lastAcceptMs + RelayService.trimQuietMs)
    }

    func armTrim(at deadline: Int64) {
        if !trimArmed {
            trimArmed = true
            context.reactor.scheduleDelegate(key: 0, at: deadline, kind: RelayService.trimKind)
        }
    }

    private func popOldestHalfOpen() -> Connection? {
        while halfOpenHead < halfOpenOrder.count {
            let c = halfOpenOrder[halfOpenHead]
            halfOpenHead += 1
            if halfOpen[ObjectIdentifier(c)] != nil { return c }
        }
        return nil
    }

    private func compactHalfOpenOrder() {
        halfOpenOrder = halfOpenOrder[halfOpenHead...].filter { halfOpen[ObjectIdentifier($0)] != nil }
        halfOpenHead = 0
    }

    // MARK: HTTP (SPEC §5.2, §6)

    public func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
        // Request bodies are never read (SPEC §5), so a request that carries one cannot persist.
        let keepAlive = head.keepAlive && !draining && !head.carriesBody
        if let domain = config.domain, !hostMatches(head.value("host"), domain) {
            return reject(.misdirected, close: true)
        }
        switch head.path {
        case "/healthz":
            // SPEC §5.2: any method. RFC 9110 §9.3.2: a HEAD response carries the headers only.
            let response = healthResponse(close: !keepAlive)
            return .respond(head.method == "HEAD" ? HTTPResponse.withoutBody(response) : response, close: !keepAlive)
        case "/v1/server":
            return admit(c, head, endpoint: .server)
        case "/v1/client":
            return admit(c, head, endpoint: .client)
        default:
            return reject(.notFound, close: !keepAlive)
        }
    }

    func reject(_ status: HTTPStatus, close: Bool, extra: [(String, String)] = []) -> HTTPDisposition {
        metrics.httpRejects[status.code, default: 0] += 1
        return .respond(HTTPResponse.error(status, close: close, extraHeaders: extra), close: close)
    }

    /// SPEC §4.1: Host with the port stripped, ASCII case-insensitive.
    func hostMatches(_ host: String?, _ domain: String) -> Bool {
        guard var h = host else { return false }
        if h.hasPrefix("[") {
            if let end = h.firstIndex(of: "]") { h = String(h[h.index(after: h.startIndex)..<end]) }
        } else if let colon = h.lastIndex(of: ":") {
            h = String(h[..<colon])
        }
        return h.lowercased() == domain.lowercased()
    }

    func healthResponse(close: Bool) -> [UInt8] {
        let uptime = (context.reactor.now - startedMs) / 1000
        let body = "{\"status\":\"ok\",\"version\":\"\(RelayConfig.version)\",\"connected_binaries\":\(registry.connectedBinaries),\"connected_phones\":\(registry.connectedPhones),\"uptime_seconds\":\(uptime)}"
        return HTTPResponse.ok(body: Array(body.utf8), contentType: "application/json; charset=utf-8",
                               extraHeaders: [("Cache-Control", "no-store")], close: close)
    }

    /// The client IP of SPEC §10: the peer, or the first X-Forwarded-For entry when trusted.
    func clientIP(_ c: Connection, _ head: HTTPRequestHead) -> String? {
        if config.trustXForwardedFor, let xff = head.value("x-forwarded-for") {
            let first = xff.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let trimmed = first.trimmingASCIISpaces()
            guard !trimmed.isEmpty, SocketAddress(ip: trimmed, port: 1) != nil else { return nil }
            return SocketAddress(ip: trimmed, port: 1)!.ipString
        }
        let ip = c.remote.ipString
        return ip.isEmpty ? nil : ip
    }

    /// SPEC §6 order: Host (done) → rate limit 429 → global cap 503 → per-IP cap 429 →
    /// header gate 400 → RFC 6455 checks → 101.
    func admit(_ c: Connection, _ head: HTTPRequestHead, endpoint: Metrics.Endpoint) -> HTTPDisposition {
        let now = context.reactor.now
        let path = head.path
        guard let ip = clientIP(c, head), rateLimiter.allow(ip, now: now) else {
            metrics.upgrade(endpoint, .rejectRateLimit)
            metrics.registerFailure(.ratelimit)
            Log.warn("ratelimit_rejected", ["remote": c.remote.ipString, "path": path])
            return reject(.tooManyRequests, close: true)
        }
        if draining || liveWebSockets >= config.maxConnections {
            // As the Go relay: one warn line per 503, no upgrade series (it never reached a handler).
            Log.warn("conn_cap_reached", ["remote": c.remote.ipString, "path": path])
            return reject(.serviceUnavailable, close: true)
        }
        if perIP[ip, default: 0] >= config.maxConnectionsPerIP {
            // Counted like a rate-limit refusal: outcome and kind move together, as in Go's pairs.
            metrics.upgrade(endpoint, .rejectRateLimit)
            metrics.registerFailure(.ratelimit)
            Log.warn("ip_conn_cap_reached", ["remote": c.remote.ipString, "path": path])
            return reject(.tooManyRequests, close: true)
        }
        let required = endpoint == .server
            ? ["x-pyrycode-server", "x-pyrycode-version", "user-agent"]
            : ["x-pyrycode-server", "x-pyrycode-token", "user-agent"]
        for name in required where (head.value(name) ?? "").isEmpty {
            metrics.upgrade(endpoint, .rejectHeaders)
            return reject(.badRequest, close: true)
        }
        let acceptKey: String
        switch WebSocketHandshake.validate(head) {
        case .reject(let status, let extra):
            metrics.upgrade(endpoint, .rejectHeaders)
            return reject(status, close: true, extra: extra)
        case .accept(let key):
            acceptKey = key
        }
        let handle = ConnHandle(nextHandle)
        nextHandle += 1
        let device = head.value("x-pyrycode-device-name").map { truncatedUTF8($0, maxBytes: 64) } ?? ""
        let peer = Peer(role: endpoint == .server ? .binary : .phone, handle: handle,
                        serverID: head.value("x-pyrycode-server")!, ip: ip,
                        version: head.value("x-pyrycode-version") ?? "", deviceName: device)
        c.userInfo = peer
        connections[handle] = c
        perIP[ip, default: 0] += 1
        liveWebSockets += 1
        halfOpen[ObjectIdentifier(c)] = nil
        return .upgrade(acceptKey: acceptKey, extraHeaders: [])
    }

    // MARK: timers

    func delegateTimer(_ entry: TimerEntry, now: Int64) {
        switch entry.kind {
        case RelayService.registryTimerKind:
            guard let t = registryTimers.removeValue(forKey: entry.key) else { return }
            perform(registry.timerFired(t, now: now))
        case RelayService.trimKind:
            let quietAt = max(lastAcceptMs, lastReleaseMs) + RelayService.trimQuietMs
            if now < quietAt {
                context.reactor.scheduleDelegate(key: 0, at: quietAt, kind: RelayService.trimKind)
            } else {
                trimArmed = false
                context.releasedBytes = 0
                _ = malloc_trim(0)
            }
        case RelayService.housekeepingKind:
            rateLimiter.sweep(now: now)
            context.pool.trim()
            context.releasedBytes = 0
            _ = malloc_trim(0)
            if halfOpenHead > 1024 || halfOpenOrder.count > 2 * max(halfOpen.count, 512) { compactHalfOpenOrder() }
            context.reactor.scheduleDelegate(key: 0, at: now + RelayService.housekeepingMs, kind: RelayService.housekeepingKind)
        default:
            break
        }
    }

    // MARK: shutdown (SPEC §14)

    /// Closes every WebSocket with 1001 `shutting down` and drops half-open connections.
    public func beginDrain() {
        guard !draining else { return }
        draining = true
        for c in halfOpen.values { c.abort() }
        for c in Array(connections.values) { c.close(code: .goingAway, reason: "shutting down") }
        checkDrained()
    }

    func checkDrained() {
        if draining && connections.isEmpty { onDrained?() }
    }
}

extension Substring {
    func trimmingASCIISpaces() -> String {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}

/// Random 32-bit values from the kernel CSPRNG (getrandom), for connection ids (SPEC §6).
struct SystemRandom {
    mutating func next32() -> UInt32 {
        var v: UInt32 = 0
        while getrandom(&v, 4, 0) != 4 {}
        return v
    }
}

/// `s` cut to at most `maxBytes` UTF-8 bytes on a code point boundary (SPEC §6: device names are
/// logged truncated to 64 bytes; a cut through a multi-byte character must not drop the name).
func truncatedUTF8(_ s: String, maxBytes: Int) -> String {
    var end = s.utf8.startIndex
    for i in s.unicodeScalars.indices {
        let next = s.unicodeScalars.index(after: i)
        if s.utf8.distance(from: s.utf8.startIndex, to: next) > maxBytes { break }
        end = next
    }
    return String(s[..<end])
}
