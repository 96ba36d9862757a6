import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayLog
import RelayTransport
import RelayCore
import RelayPush

/// The relay: one `ConnectionDelegate` for every public connection. It routes requests
/// (docs/protocol.md §2), admits upgrades (§6, §10), drives the registry (§8) and forwards (§9).
/// Everything runs on the reactor thread.
public final class RelayService: ConnectionDelegate, TimerOwner {
    public let settings: RelaySettings
    public let context: IOContext
    public let metrics = RelayCounters()
    package let registry: Registry
    /// Admission, backpressure, shedding and close-notice rules (docs/architecture.md).
    package let core: ForwardingCore
    /// Every upgraded connection's record, which owns it.
    package var peers = PeerTable<Peer>()
    /// Where a client connects from and what it says it is — X-Pyrycode-Version (binaries),
    /// X-Pyrycode-Device-Name (phones, truncated) — from its upgrade until the line that names
    /// them (`server_claimed`, `phone_registered`, a refusal) is written or it goes: not kept in
    /// every idle record.
    package var unlogged: [ConnHandle: Unlogged] = [:]

    package struct Unlogged {
        package var label = ""
        /// The client (the peer, or the trusted X-Forwarded-For entry, port 0); unknown once taken.
        package var remote = IPEndpoint.unknown
    }
    package var halfOpen: HalfOpenTable<Connection>
    /// Armed registry deadlines by timer key, until they fire (the registry ignores a stale one):
    /// at most one per disconnect or claim within the last grace / probe window.
    package var registryTimers: [UInt64: RegistryTimer] = [:]
    package var nextTimerKey: UInt64 = 1
    package let startedMs: Int64
    public var draining: Bool { core.draining }
    /// Called when draining finishes (no WebSocket left).
    public var onDrained: (() -> Void)?
    package var random = SystemRandom()

    /// The service's own timers (`Reactor.registerTimers(for:)`).
    public enum TimerKind: UInt8 {
        /// A registry deadline (grace, claim probe); the key names it in `registryTimers`.
        case registry
        /// Every `housekeepingMs`: sweeps and `malloc_trim`.
        case housekeeping
        /// `malloc_trim` once accepts and large releases went quiet.
        case trim
        /// The end of a log-suppression interval (RelayService+LogBudget).
        case logInterval
    }
    package static let housekeepingMs: Int64 = 60_000
    /// Quiet time after the last accept before freed heap pages are returned to the kernel.
    package static let trimQuietMs: Int64 = 500
    package var lastAcceptMs: Int64 = 0
    /// When freed buffers last passed `Limits.trimAfterReleasedBytes` (RelayService+BufferBudget).
    package var lastReleaseMs: Int64 = 0
    package var trimArmed = false
    package lazy var timers = context.reactor.registerTimers(for: self)
    /// Repeatable log events (RelayService+LogBudget.swift).
    package var logBudget = LogSuppressor<RepeatedLogEvent>(perScopeBurst: Limits.logBurstPerConnection,
                                                    globalBurst: Limits.logBurstGlobal)
    /// FCM wakes (docs/protocol.md §9); nil when push is not configured.
    public var push: PushService?

    public init(settings: RelaySettings, context: IOContext) {
        self.settings = settings
        self.context = context
        self.registry = Registry(graceMs: settings.graceMs, probeTimeoutMs: settings.probeTimeoutMs,
                                 maxPhonesPerServer: settings.phonesPerServer)
        self.core = ForwardingCore(outboxBudget: settings.outboxBudget, maxBufferedBytes: settings.maxBufferedBytes,
                                   maxConnections: settings.maxConnections,
                                   maxConnectionsPerIP: settings.maxConnectionsPerIP, shard: settings.shard)
        self.startedMs = context.reactor.now
        self.halfOpen = HalfOpenTable(limit: settings.maxHalfOpen, perKeyLimit: settings.maxHalfOpenPerIP)
        super.init()
        precondition(context.application == nil, "one relay service per loop")
        context.application = Unmanaged.passUnretained(self).toOpaque()
        timers.schedule(.housekeeping, at: startedMs + RelayService.housekeepingMs)
        scheduleLogInterval(from: startedMs)
        // Large message buffers come and go with every big message: keep glibc from returning
        // the heap top (brk) or mapping fresh pages (mmap) for each one; freed memory goes back to
        // the kernel in `malloc_trim` once the loop is quiet (after a storm, and every minute).
        _ = mallopt(M_TRIM_THRESHOLD, 64 << 20)
        _ = mallopt(M_MMAP_THRESHOLD, 4 << 20)
        // Page in the handshake's SHA-1 path once at boot: OpenSSL's provider set-up touches ~2 MB
        // of libcrypto the first time, which would otherwise land on the first client.
        _ = WebSocketHandshake.acceptKey(for: "dGhlIHNhbXBsZSBub25jZQ==")
        context.bufferBudget = settings.maxBufferedBytes
        context.onLargeRelease = { [unowned self] in self.noteLargeRelease() }
    }

    deinit { context.application = nil }  // a later service may serve this loop

    public var connectedBinaries: Int { registry.connectedBinaries }
    public var connectedPhones: Int { registry.connectedPhones }
    public var liveConnectionCount: Int { core.liveConnections }
    public var halfOpenCount: Int { halfOpen.count }

    /// Descriptors that do not belong to a connection (stdio, epoll, timerfd, signalfd, listeners
    /// and their spares, the instance lock, the notify socket), counted once by walking
    /// /proc/self/fd; nil until the first scrape and after `recountDescriptors()`.
    private var fixedDescriptors: Int?

    /// The process's open descriptors without a directory walk per scrape (a walk costs time in
    /// proportion to the open fds, on the loop): the fixed ones plus the connections' own count.
    /// Exact while no transient fd (a /proc read, a TLS file load) is open, which is always the
    /// case between two events on the one thread.
    package func openDescriptors() -> Int {
        let fixed = fixedDescriptors ?? (openFileDescriptorCount() - context.connectionDescriptors)
        fixedDescriptors = fixed
        return fixed + context.connectionDescriptors
    }

    /// The fixed set changed (listeners closed at shutdown): walk /proc/self/fd again at the next scrape.
    public func recountDescriptors() { fixedDescriptors = nil }

    // MARK: accepting

    /// Takes a freshly accepted socket. `tls`: the TLS listener's current context (docs/operations.md);
    /// `proxyHeader`: `--https-proxy-protocol` (docs/protocol.md §3.3).
    public func accept(fd: consuming FileDescriptor, remote: SocketAddress, tls: TLSContext? = nil, proxyHeader: Bool = false) {
        guard !draining else { return }  // `fd` closes as it goes
        Socket.setNoDelay(fd.raw)
        noteAccept()
        let key = halfOpenKey(remote: remote, proxyHeader: proxyHeader)
        makeHalfOpenRoom(for: key, remote: remote)
        let c = Connection(fd: fd, remote: remote, context: context, settings: settings.connection, delegate: self,
                           tls: tls, proxyHeader: proxyHeader)
        do { try c.start() } catch { return }
        halfOpen.insert(c, key: key)
    }

    /// A connection storm leaves the heap fragmented by short-lived request-parsing allocations
    /// between long-lived connection records; once accepts have been quiet for a moment, free
    /// pages go back to the kernel (malloc_trim), so RSS tracks live connections.
    private func noteAccept() {
        lastAcceptMs = context.reactor.now
        armTrim(at: lastAcceptMs + RelayService.trimQuietMs)
    }

    package func armTrim(at deadline: Int64) {
        if !trimArmed {
            trimArmed = true
            timers.schedule(.trim, at: deadline)
        }
    }

    // MARK: ConnectionDelegate until the upgrade (overrides live in the class body, not in extensions)
    // The peer record is a connection's delegate from the upgrade on (`admit`), so its
    // WebSocket events never reach the service.

    public override func connection(_ c: Connection, tlsHandshakeFinished ok: Bool) {
        if ok { metrics.tlsHandshakesOK += 1 } else { metrics.tlsHandshakesFailed += 1 }
    }

    public override func connection(_ c: Connection, proxiedFrom source: SocketAddress) {
        connection(c, wasProxiedFrom: source)
    }

    /// A connection before its upgrade needs room (its peer's record asks once upgraded).
    public override func connection(_ c: Connection, needsBufferRoom bytes: Int) {
        shedLargestHolders(growing: nil, by: bytes)
    }

    /// A connection closed before its upgrade.
    public override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        halfOpen.remove(c)
    }

    // MARK: HTTP (docs/protocol.md §2, §2–§3)

    public override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
        // Request bodies are never read (docs/protocol.md §3), so a request that carries one cannot persist.
        let keepAlive = head.keepAlive && !draining && !head.carriesBody
        if let domain = settings.domain, !hostMatches(head.value("host"), domain) {
            return reject(.misdirected, close: true)
        }
        switch head.path {
        case "/healthz":
            // docs/protocol.md §2: any method. RFC 9110 §9.3.2: a HEAD response carries the headers only.
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

    package func reject(_ status: HTTPStatus, close: Bool, extra: [(String, String)] = []) -> HTTPDisposition {
        metrics.httpRejects[status.code, default: 0] += 1
        return .respond(HTTPResponse.error(status, close: close, extraHeaders: extra), close: close)
    }

    /// Host with the port stripped, ASCII case-insensitive (RFC 9110 §4.2.3). Not Unicode case
    /// folding: `lowercased()` would let a Host with U+212A KELVIN SIGN match a domain with `k`.
    package func hostMatches(_ host: String?, _ domain: String) -> Bool {
        guard var h = host else { return false }
        if h.hasPrefix("[") {
            if let end = h.firstIndex(of: "]") { h = String(h[h.index(after: h.startIndex)..<end]) }
        } else if let colon = h.lastIndex(of: ":") {
            h = String(h[..<colon])
        }
        return HTTPGrammar.equalsIgnoringASCIICase(h.utf8, domain.utf8)
    }

    package func healthResponse(close: Bool) -> [UInt8] {
        let uptime = (context.reactor.now - startedMs) / 1000
        let body = "{\"status\":\"ok\",\"version\":\"\(settings.version)\",\"connected_binaries\":\(registry.connectedBinaries),\"connected_phones\":\(registry.connectedPhones),\"uptime_seconds\":\(uptime)}"
        return HTTPResponse.ok(body: Array(body.utf8), contentType: "application/json; charset=utf-8",
                               extraHeaders: [("Cache-Control", "no-store")], close: close)
    }

    /// The client of docs/protocol.md §3.3: the peer, or the first X-Forwarded-For entry when
    /// trusted (its port is unknown: 0). Nil when it is not an IP address.
    package func clientAddress(_ c: Connection, _ head: HTTPRequestHead) -> IPEndpoint? {
        if settings.trustXForwardedFor, let xff = head.value("x-forwarded-for") {
            let first = xff.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return SocketAddress(ip: String(first.trimmingASCIISpaces()), port: 0).map(IPEndpoint.init)
        }
        return c.remote.isIP ? c.remote : nil
    }

    /// The admission order is `ForwardingCore.admit`'s (the Host check, 421, came first); here
    /// each refusal is answered, counted and logged, and an admitted connection gets its record.
    package func admit(_ c: Connection, _ head: HTTPRequestHead, endpoint: Endpoint) -> HTTPDisposition {
        let client = clientAddress(c, head)
        let acceptKey: String
        switch core.admit(head, endpoint: endpoint, key: client.flatMap { ClientKey($0) }, now: context.reactor.now) {
        case .admit(let k):
            acceptKey = k
        case .refuse(let refusal):
            return refuse(c, head, endpoint: endpoint, refusal)
        }
        // Admitted, so the client is an IP; the gate made sure the server-id header is there.
        let peer = peers.insert {
            Peer(role: endpoint == .server ? .binary : .phone, handle: $0, connection: c,
                 serverID: registry.sharedServerID(head.value("x-pyrycode-server")!), client: ClientKey(client!)!)
        }
        let label = endpoint == .server
            ? head.value("x-pyrycode-version") ?? ""
            : head.value("x-pyrycode-device-name").map { truncatedUTF8($0, maxBytes: 64) } ?? ""
        unlogged[peer.handle] = Unlogged(label: label, remote: client!)
        c.delegate = peer
        halfOpen.remove(c)
        return .upgrade(acceptKey: acceptKey, extraHeaders: perMessageDeflateHeader(c, head))
    }

    /// The address and label of `handle` for its one log line (empty when taken already); the
    /// table is released with its last entry, so a storm's peak is not kept.
    package func takeUnlogged(_ handle: ConnHandle) -> Unlogged {
        guard let entry = unlogged.removeValue(forKey: handle) else { return Unlogged() }
        if unlogged.isEmpty { unlogged = [:] }
        return entry
    }

    package func refuse(_ c: Connection, _ head: HTTPRequestHead, endpoint: Endpoint,
                        _ refusal: AdmissionRefusal) -> HTTPDisposition {
        let path = head.path
        switch refusal {
        case .rateLimited:
            metrics.upgrade(endpoint, .rejectRateLimit)
            metrics.registerFailure(.ratelimit)
            logRepeated(.ratelimitRejected, ["remote": c.remote.ipString, "path": path])
            return reject(.tooManyRequests, close: true)
        case .overCapacity:
            // As the Go relay: one warn line per 503, no upgrade series (it never reached a handler).
            logRepeated(.connCapReached, ["remote": c.remote.ipString, "path": path])
            return reject(.serviceUnavailable, close: true)
        case .clientOverCapacity:
            // Counted like a rate-limit refusal: outcome and kind move together, as in Go's pairs.
            metrics.upgrade(endpoint, .rejectRateLimit)
            metrics.registerFailure(.ratelimit)
            logRepeated(.ipConnCapReached, ["remote": c.remote.ipString, "path": path])
            return reject(.tooManyRequests, close: true)
        case .badHeaders:
            metrics.upgrade(endpoint, .rejectHeaders)
            return reject(.badRequest, close: true)
        case .otherShard(let shard):
            return rejectMisrouted(c, path: path, shard: shard)
        case .handshake(let status, let extra):
            metrics.upgrade(endpoint, .rejectHeaders)
            return reject(status, close: true, extra: extra)
        }
    }

    /// docs/architecture.md ("v2 = static shards"): the proxy sent a server-id of another shard.
    /// 421 (RFC 9110 §15.5.20: this server cannot answer for the request's target) and a counter,
    /// so a wrong proxy map shows at once rather than as 4404s for binaries that are online
    /// elsewhere. Not an upgrade outcome: the request never reached the registry of its shard.
    package func rejectMisrouted(_ c: Connection, path: String, shard: ShardAssignment) -> HTTPDisposition {
        metrics.misroutedUpgrades += 1
        logRepeated(.upgradeMisrouted, ["remote": c.remote.ipString, "path": path, "shard": shard.description])
        return reject(.misdirected, close: true)
    }

    // MARK: timers

    public func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        switch kind {
        case .registry:
            guard let t = registryTimers.removeValue(forKey: key) else { return }
            perform(registry.timerFired(t, now: now))
        case .logInterval:
            endLogInterval(now: now)
        case .trim:
            let quietAt = max(lastAcceptMs, lastReleaseMs) + RelayService.trimQuietMs
            if now < quietAt {
                timers.schedule(.trim, at: quietAt)
            } else {
                trimArmed = false
                context.releasedBytes = 0
                // The storm's request heads filled the block pool; idle connections hold no
                // buffer, so its blocks go back with the rest (it refills on the next reads).
                context.pool.trim()
                _ = malloc_trim(0)
            }
        case .housekeeping:
            core.rateLimiter.sweep(now: now)
            push?.sweep(now: now)
            context.pool.trim()
            context.releasedBytes = 0
            _ = malloc_trim(0)
            timers.schedule(.housekeeping, at: now + RelayService.housekeepingMs)
        }
    }

    // MARK: shutdown (docs/operations.md)

    /// Closes every WebSocket with 1001 `shutting down` and drops half-open connections.
    public func beginDrain() {
        guard !draining else { return }
        core.beginDrain()
        for c in halfOpen.elements { c.abort() }
        for p in peers.values { p.connection.close(code: .goingAway, reason: "shutting down") }
        checkDrained()
    }

    package func checkDrained() {
        if draining && peers.isEmpty { onDrained?() }
    }
}

/// Random 32-bit values from the kernel CSPRNG (getrandom), for connection ids (docs/protocol.md §2–§3).
/// Fetched 64 at a time, each handed out once: one system call per 64 connections, not per connection.
package struct SystemRandom {
    private var block = [UInt32](repeating: 0, count: 64)
    private var next = 64

    package mutating func next32() -> UInt32 {
        if next == block.count {
            block.withUnsafeMutableBytes { b in
                var filled = 0
                while filled < b.count {
                    let n = getrandom(b.baseAddress! + filled, b.count - filled, 0)
                    if n > 0 { filled += n }  // < 0: EINTR (the pool is initialised long before we run)
                }
            }
            next = 0
        }
        defer { next += 1 }
        return block[next]
    }
}

extension RelayService {
    /// `--permessage-deflate`: each leg negotiates on its own (RFC 7692 §7); off, offers are declined.
    package func perMessageDeflateHeader(_ c: Connection, _ head: HTTPRequestHead) -> [(String, String)] {
        guard settings.permessageDeflate, let header = c.acceptPerMessageDeflate(head) else { return [] }
        return [header]
    }
}
