import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// The outbound HTTPS client on the reactor (push wakes; ACME later): one request, one response,
/// never blocking the loop and never using a thread. A call is: resolve (AsyncResolver: /etc/hosts,
/// then UDP DNS), connect to each address in turn, TLS with the certificate and host name verified
/// (OutboundTLSContext), one HTTP/1.1 request with Content-Length, the response read up to
/// `maxResponseBytes` — all within `deadlineMs`. No redirects: a 3xx is returned as a response.
///
/// Keep-alive: after a response the connection waits for the next call to the same host:port
/// (`Limits.httpsClientIdleMs`, at most `Limits.httpsClientMaxIdleConnections` of them); the server
/// closing it or saying `Connection: close` ends it. A reused connection that turns out to be dead
/// — it fails or ends before the first response byte — is retried once on a fresh connection.
/// (A request can then reach a server twice if that server processed it and closed without
/// answering; the callers' requests — a wake, a token fetch, an ACME POST with its one-time
/// nonce — tolerate that.)
///
/// Timers are this client's own (`Reactor.registerTimers(for:)`), keyed by call or connection id;
/// its resolver has its own.
public final class HTTPSClient: HTTPSSending, TimerOwner {
    public enum TimerKind: UInt8 {
        /// The call's overall deadline (key: call id).
        case deadline
        /// The call starts, from the timer pass after `send` (key: call id).
        case start
        /// A connect attempt's share of the deadline (key: connection id).
        case connect
        /// A kept-alive connection waited `idleTimeoutMs` (key: connection id).
        case idle
    }

    package let reactor: Reactor
    package let deadlineMs: Int64
    package let maxResponseBytes: Int
    package let tls: OutboundTLSContext
    package let resolver: AsyncResolver
    package var idleTimeoutMs = Limits.httpsClientIdleMs
    package var maxIdleConnections = Limits.httpsClientMaxIdleConnections
    /// How long a lookup may take within a call (tests shorten it).
    package var resolveTimeoutMs = Limits.dnsResolveTimeoutMs
    /// The least time one connect attempt gets (tests shorten it).
    package var minConnectAttemptMs = Limits.httpsClientMinConnectAttemptMs

    private var calls: [UInt64: HTTPSCall] = [:]
    /// Every open connection, by id (timers find them here).
    private var connections: [UInt64: HTTPSClientConnection] = [:]
    /// Idle kept-alive connections per host:port, the most recently used last.
    private var idle: [String: [HTTPSClientConnection]] = [:]
    private var idleCount = 0
    private lazy var timers = reactor.registerTimers(for: self)

    /// Verifies server certificates against the system trust store (SSL_CTX_set_default_verify_paths,
    /// so SSL_CERT_FILE works) and the host name (SNI + X509 host check; IP literal → IP check).
    public convenience init(reactor: Reactor, deadlineMs: Int64 = Limits.httpsClientDeadlineMs,
                            maxResponseBytes: Int = Limits.httpsClientMaxResponseBytes) throws {
        try self.init(reactor: reactor, deadlineMs: deadlineMs, maxResponseBytes: maxResponseBytes,
                      resolverConfiguration: ResolverConfiguration.system)
    }

    /// Tests point the resolver at a fake nameserver.
    package init(reactor: Reactor, deadlineMs: Int64, maxResponseBytes: Int,
         resolverConfiguration: @escaping () -> ResolverConfiguration) throws {
        self.reactor = reactor
        self.deadlineMs = deadlineMs
        self.maxResponseBytes = maxResponseBytes
        tls = try OutboundTLSContext()
        resolver = AsyncResolver(reactor: reactor, configuration: resolverConfiguration)
    }

    /// Nothing outlives the client: its connections and lookups are closed (no completion runs).
    deinit {
        for c in connections.values { c.close() }
        resolver.cancelAll()
    }

    /// Number of calls not yet completed (for the push service's in-flight cap and for tests).
    public var inFlight: Int { calls.count }
    /// Open connections, busy or idle (tests, metrics).
    public var openConnections: Int { connections.count }
    /// Kept-alive connections waiting for a call.
    public var idleConnections: Int { idleCount }

    /// Completion runs on the reactor thread, exactly once, never synchronously inside send().
    public func send(_ request: HTTPSRequest, completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void) {
        let now = monotonicMs()
        let call = HTTPSCall(id: takeID(), request: request, bytes: request.serialized(), deadline: now + deadlineMs,
                        completion: completion)
        calls[call.id] = call
        timers.schedule(.deadline, at: call.deadline, key: call.id)
        // Started from the next timer pass, so even an instant failure completes after send() returns.
        timers.schedule(.start, at: now, key: call.id)
    }

    private func takeID() -> UInt64 { OutboundIDs.next() }

    // MARK: timers

    /// Lazy cancellation: an entry whose call or connection moved on (or is gone) does nothing.
    public func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        switch kind {
        case .start:
            if let call = calls[key] { start(call) }
        case .deadline:
            if let call = calls[key] { finish(call, .failure(.timeout)) }
        case .connect:
            if let c = connections[key], c.state == .connecting, now >= c.connectDeadline, let call = c.call {
                close(c)
                connectNext(call)
            }
        case .idle:
            if let c = connections[key], c.state == .idle, now >= c.idleSince + idleTimeoutMs { close(c) }
        }
    }

    // MARK: the call's steps

    private func start(_ call: HTTPSCall) {
        guard call.bytes != nil else { return finish(call, .failure(.invalidRequest)) }
        if let c = takeIdle(call.request.url.originKey) {
            call.reused = true
            attach(c, to: call)
            c.beginRequest()
        } else {
            openFresh(call)
        }
    }

    private func openFresh(_ call: HTTPSCall) {
        let url = call.request.url
        if url.hostIsIPLiteral {
            call.addresses = [SocketAddress(ip: url.host, port: url.port)!]
            return connectNext(call)
        }
        let id = call.id
        let deadline = min(call.deadline, monotonicMs() + resolveTimeoutMs)
        call.lookup = resolver.resolve(url.host, port: url.port, deadline: deadline) { [weak self] addresses in
            guard let self, let call = self.calls[id] else { return }
            call.lookup = nil
            guard !addresses.isEmpty else { return self.finish(call, .failure(.resolve)) }
            call.addresses = addresses
            self.connectNext(call)
        }
    }

    /// Tries the next address; each attempt gets an even share of the remaining time, at least
    /// `Limits.httpsClientMinConnectAttemptMs` (Go's net.Dialer does the same).
    private func connectNext(_ call: HTTPSCall) {
        while call.nextAddress < call.addresses.count {
            let address = call.addresses[call.nextAddress]
            call.nextAddress += 1
            let now = monotonicMs()
            let left = call.addresses.count - call.nextAddress + 1
            let remaining = call.deadline - now
            let slice = max(remaining / Int64(left), min(remaining, minConnectAttemptMs))
            guard let c = HTTPSClientConnection(id: takeID(), address: address, url: call.request.url,
                                                client: self, connectDeadline: now + slice) else { continue }
            connections[c.id] = c
            attach(c, to: call)
            timers.schedule(.connect, at: c.connectDeadline, key: c.id)
            return
        }
        finish(call, .failure(.connect))
    }

    private func attach(_ c: HTTPSClientConnection, to call: HTTPSCall) {
        call.connection = c
        c.call = call
        c.request = call.bytes ?? []
    }

    // MARK: connection reports (HTTPSClientConnection)

    package func connectFailed(_ c: HTTPSClientConnection) {
        guard let call = c.call else { return close(c) }
        close(c)
        connectNext(call)
    }

    package func failed(_ c: HTTPSClientConnection, _ failure: HTTPSFailure, beforeResponse: Bool) {
        guard let call = c.call else { return close(c) }
        close(c)
        if beforeResponse && call.reused && !call.retried {
            call.retried = true
            call.reused = false
            call.connection = nil
            openFresh(call)
        } else {
            finish(call, .failure(failure))
        }
    }

    package func completed(_ c: HTTPSClientConnection, _ response: HTTPSResponse, reusable: Bool) {
        guard let call = c.call else { return close(c) }
        c.call = nil
        call.connection = nil
        if reusable && idleCount < maxIdleConnections {
            c.becomeIdle(now: reactor.now)
            idle[c.origin, default: []].append(c)
            idleCount += 1
            timers.schedule(.idle, at: c.idleSince + idleTimeoutMs, key: c.id)
        } else {
            close(c)
        }
        finish(call, .success(response))
    }

    package func idleConnectionEnded(_ c: HTTPSClientConnection) { close(c) }

    // MARK: bookkeeping

    private func takeIdle(_ origin: String) -> HTTPSClientConnection? {
        guard var list = idle[origin], let c = list.popLast() else { return nil }
        idle[origin] = list.isEmpty ? nil : list
        idleCount -= 1
        return c
    }

    private func close(_ c: HTTPSClientConnection) {
        if c.state == .idle, var list = idle[c.origin], let i = list.firstIndex(where: { $0 === c }) {
            list.remove(at: i)
            idle[c.origin] = list.isEmpty ? nil : list
            idleCount -= 1
        }
        connections[c.id] = nil
        c.call = nil
        c.close()
    }

    private func finish(_ call: HTTPSCall, _ result: Result<HTTPSResponse, HTTPSFailure>) {
        guard calls.removeValue(forKey: call.id) != nil else { return }
        if let id = call.lookup { resolver.cancel(id) }
        if let c = call.connection, c.call === call { close(c) }
        call.connection = nil
        call.completion(result)
    }
}

/// One call in flight.
package final class HTTPSCall {
    package let id: UInt64
    package let request: HTTPSRequest
    package let bytes: [UInt8]?  // nil: the request cannot be sent (`invalidRequest`)
    package let deadline: Int64
    package let completion: (Result<HTTPSResponse, HTTPSFailure>) -> Void
    package var lookup: UInt64?
    package var addresses: [SocketAddress] = []
    package var nextAddress = 0
    package var connection: HTTPSClientConnection?
    package var reused = false
    package var retried = false

    package init(id: UInt64, request: HTTPSRequest, bytes: [UInt8]?, deadline: Int64,
         completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void) {
        self.id = id
        self.request = request
        self.bytes = bytes
        self.deadline = deadline
        self.completion = completion
    }
}
