import CEpoll

/// The relay's counters, named as in the Go relay (docs/operations.md) so dashboards keep working,
/// rendered in the Prometheus text format 0.0.4. Plain stored integers: one thread.
public final class Metrics {
    public enum Endpoint: Int, CaseIterable { case server, client }
    public enum UpgradeOutcome: Int, CaseIterable {
        case accept, rejectHeaders, reject409, reject404, reject429, rejectRateLimit
    }
    public enum RegisterFailure: Int, CaseIterable {
        case noServer, serverInUse, phonesAtCap, ratelimit
    }
    /// Label values by `rawValue`, as the Go relay spells them.
    private static let outcomeLabels: [StaticString] = [
        "accept", "reject_headers", "reject_409", "reject_404", "reject_429", "reject_rate_limit",
    ]
    private static let failureLabels: [StaticString] = ["no_server", "server_in_use", "phones_at_cap", "ratelimit"]
    private static let bucketLabels = LoopLatency.boundLabels.map { Array($0.utf8) }
    private static let pushOutcomeLabels = PushService.Outcome.allCases.map { Array($0.label.utf8) }

    public var framesPhoneToBinary = 0
    public var framesBinaryToPhone = 0
    public var bytesPhoneToBinary = 0
    public var bytesBinaryToPhone = 0
    public var graceExpiries = 0
    public var upgrades = [Int](repeating: 0, count: Endpoint.allCases.count * UpgradeOutcome.allCases.count)
    public var registerFailures = [Int](repeating: 0, count: RegisterFailure.allCases.count)
    public var closedByCode: [UInt16: Int] = [:]
    public var httpRejects: [Int: Int] = [:]
    public var tlsHandshakesOK = 0
    public var tlsHandshakesFailed = 0
    /// Half-open connections closed to make room (per-IP or global half-open cap).
    public var halfOpenEvictions = 0
    /// Sharded mode: upgrades refused with 421 because their server-id belongs to another shard.
    public var misroutedUpgrades = 0

    /// ACME (docs/operations.md "ACME"): the served certificate's notAfter (Unix seconds; 0: none
    /// yet) and orders by outcome.
    public var tlsCertNotAfter: Int64 = 0
    public var acmeOrdersIssued = 0
    public var acmeOrdersFailed = 0
    public var acmeEnabled = false

    public init() {}

    public func upgrade(_ e: Endpoint, _ o: UpgradeOutcome) {
        upgrades[e.rawValue * UpgradeOutcome.allCases.count + o.rawValue] += 1
    }

    public func registerFailure(_ k: RegisterFailure) { registerFailures[k.rawValue] += 1 }

    public func closed(code: CloseCode?) {
        closedByCode[code?.rawValue ?? 1006, default: 0] += 1
    }

    public struct Gauges {
        public var connectedBinaries = 0
        public var connectedPhones = 0
        public var queuedBytes = 0
        public var liveConnections = 0
        public var halfOpen = 0
        public var loopLatency = LoopLatency()
        public var logLinesDropped = 0
        public var openFileDescriptors = 0
        public var residentMemoryBytes = 0
        /// Wakes per `PushService.Outcome`; nil (no series) when push is not configured.
        public var pushWakes: [Int]?
        public init() {}
    }

    /// The exposition text is rebuilt in this buffer on every scrape: no String per line, no
    /// allocation once it has grown to the text's size.
    private let text = ExpositionBuffer(capacity: 8192)

    public func render(_ g: Gauges) -> [UInt8] {
        let o = text
        o.reset()
        o.family("pyrycode_relay_connected_binaries", "gauge", "Binaries currently connected (excludes binaries in grace).")
        o.sample("pyrycode_relay_connected_binaries ", g.connectedBinaries)
        o.family("pyrycode_relay_connected_phones", "gauge", "Phones currently connected.")
        o.sample("pyrycode_relay_connected_phones ", g.connectedPhones)
        o.family("pyrycode_relay_frames_forwarded_total", "counter", "Frames forwarded, by direction.")
        o.sample("pyrycode_relay_frames_forwarded_total{direction=\"phone_to_binary\"} ", framesPhoneToBinary)
        o.sample("pyrycode_relay_frames_forwarded_total{direction=\"binary_to_phone\"} ", framesBinaryToPhone)
        o.family("pyrycode_relay_grace_expiries_total", "counter", "Grace periods that expired without a reclaim.")
        o.sample("pyrycode_relay_grace_expiries_total ", graceExpiries)
        o.family("pyrycode_relay_ws_upgrade_attempts_total", "counter", "WebSocket upgrade attempts, by endpoint and outcome.")
        for e in Endpoint.allCases {
            for oc in UpgradeOutcome.allCases {
                o.append("pyrycode_relay_ws_upgrade_attempts_total{endpoint=\"")
                o.append(e == .server ? "server" : "client")
                o.append("\",outcome=\"")
                o.append(Metrics.outcomeLabels[oc.rawValue])
                o.sample("\"} ", upgrades[e.rawValue * UpgradeOutcome.allCases.count + oc.rawValue])
            }
        }
        o.family("pyrycode_relay_register_failures_total", "counter", "Registrations refused, by kind.")
        for k in RegisterFailure.allCases {
            o.append("pyrycode_relay_register_failures_total{kind=\"")
            o.append(Metrics.failureLabels[k.rawValue])
            o.sample("\"} ", registerFailures[k.rawValue])
        }
        o.family("pyrycode_relay_bytes_relayed_total", "counter", "Payload bytes relayed, by direction.")
        o.sample("pyrycode_relay_bytes_relayed_total{direction=\"phone_to_binary\"} ", bytesPhoneToBinary)
        o.sample("pyrycode_relay_bytes_relayed_total{direction=\"binary_to_phone\"} ", bytesBinaryToPhone)
        o.family("pyrycode_relay_queued_bytes", "gauge", "Bytes queued for writing across all connections.")
        o.sample("pyrycode_relay_queued_bytes ", g.queuedBytes)
        o.family("pyrycode_relay_live_connections", "gauge", "Live WebSocket connections.")
        o.sample("pyrycode_relay_live_connections ", g.liveConnections)
        o.family("pyrycode_relay_half_open_connections", "gauge", "Connections not yet upgraded.")
        o.sample("pyrycode_relay_half_open_connections ", g.halfOpen)
        o.family("pyrycode_relay_half_open_evictions_total", "counter", "Connections not yet upgraded closed to make room (--max-half-open, --max-half-open-per-ip).")
        o.sample("pyrycode_relay_half_open_evictions_total ", halfOpenEvictions)
        o.family("pyrycode_relay_connections_closed_total", "counter", "WebSocket connections closed, by close code (1006: no close frame).")
        for code in closedByCode.keys.sorted() {
            o.append("pyrycode_relay_connections_closed_total{code=\"")
            o.appendDecimal(Int(code))
            o.sample("\"} ", closedByCode[code]!)
        }
        o.family("pyrycode_relay_http_rejects_total", "counter", "HTTP requests answered with an error status.")
        for s in httpRejects.keys.sorted() {
            o.append("pyrycode_relay_http_rejects_total{status=\"")
            o.appendDecimal(s)
            o.sample("\"} ", httpRejects[s]!)
        }
        o.family("pyrycode_relay_tls_handshakes_total", "counter", "TLS handshakes, by result.")
        o.sample("pyrycode_relay_tls_handshakes_total{result=\"ok\"} ", tlsHandshakesOK)
        o.sample("pyrycode_relay_tls_handshakes_total{result=\"failed\"} ", tlsHandshakesFailed)
        o.family("pyrycode_relay_loop_iteration_seconds", "histogram", "Event-loop iteration durations (events, timers and writes of one epoll_wait wake-up).")
        var cumulative: UInt64 = 0
        for (i, label) in Metrics.bucketLabels.enumerated() {
            cumulative += g.loopLatency.counts[i]
            o.append("pyrycode_relay_loop_iteration_seconds_bucket{le=\"")
            o.append(label)
            o.sample("\"} ", cumulative)
        }
        o.sample("pyrycode_relay_loop_iteration_seconds_bucket{le=\"+Inf\"} ", g.loopLatency.count)
        o.append("pyrycode_relay_loop_iteration_seconds_sum ")
        o.appendSeconds(nanoseconds: g.loopLatency.sumNs)
        o.append(byte: 0x0A)
        o.sample("pyrycode_relay_loop_iteration_seconds_count ", g.loopLatency.count)
        o.family("pyrycode_relay_log_lines_dropped_total", "counter", "Log lines dropped because stderr did not take them in time (slow reader, buffer full).")
        o.sample("pyrycode_relay_log_lines_dropped_total ", g.logLinesDropped)
        if let wakes = g.pushWakes {
            o.family("pyrycode_relay_push_wakes_total", "counter", "push_wake requests, by outcome.")
            for outcome in PushService.Outcome.allCases {
                o.append("pyrycode_relay_push_wakes_total{outcome=\"")
                o.append(Metrics.pushOutcomeLabels[outcome.rawValue])
                o.sample("\"} ", wakes[outcome.rawValue])
            }
        }
        o.family("pyrycode_relay_misrouted_upgrades_total", "counter", "Upgrades refused with 421 because their server-id belongs to another shard (--shard).")
        o.sample("pyrycode_relay_misrouted_upgrades_total ", misroutedUpgrades)
        if acmeEnabled { renderACME(o) }
        o.family("process_open_fds", "gauge", "Open file descriptors.")
        o.sample("process_open_fds ", g.openFileDescriptors)
        o.family("process_resident_memory_bytes", "gauge", "Resident set size.")
        o.sample("process_resident_memory_bytes ", g.residentMemoryBytes)
        return o.bytes
    }
}

/// A growable byte buffer written through a pointer, for the Prometheus text format: fixed text
/// from `StaticString`s, integers formatted in place.
final class ExpositionBuffer {
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit { base.deallocate() }

    func reset() { count = 0 }

    /// The text so far, copied out.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    @inline(__always)
    private func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    private func grow(_ n: Int) {
        let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: max(capacity * 2, count + n))
        grown.update(from: base, count: count)
        base.deallocate()
        base = grown
        capacity = max(capacity * 2, count + n)
    }

    func append(byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    func append(_ s: StaticString) {
        let n = s.utf8CodeUnitCount
        reserve(n)
        (base + count).update(from: s.utf8Start, count: n)
        count += n
    }

    func append(_ bytes: [UInt8]) {
        reserve(bytes.count)
        bytes.withUnsafeBufferPointer { b in
            if let p = b.baseAddress { (base + count).update(from: p, count: b.count) }
        }
        count += bytes.count
    }

    func family(_ name: StaticString, _ type: StaticString, _ help: StaticString) {
        append("# HELP "); append(name); append(byte: 0x20); append(help)
        append("\n# TYPE "); append(name); append(byte: 0x20); append(type); append(byte: 0x0A)
    }

    /// `prefix` (the series and a space) then the value and a newline.
    func sample(_ prefix: StaticString, _ value: Int) {
        append(prefix)
        appendDecimal(value)
        append(byte: 0x0A)
    }

    func sample(_ prefix: StaticString, _ value: UInt64) {
        append(prefix)
        appendDecimal(value)
        append(byte: 0x0A)
    }

    func appendDecimal(_ value: Int) {
        if value < 0 { append(byte: UInt8(ascii: "-")) }
        appendDecimal(UInt64(value.magnitude))
    }

    func appendDecimal(_ value: UInt64) {
        var digits = 1
        var v = value
        while v >= 10 { v /= 10; digits += 1 }
        appendDigits(value, digits)
    }

    /// The low `digits` decimal digits of `value`, zero-padded on the left.
    private func appendDigits(_ value: UInt64, _ digits: Int) {
        reserve(digits)
        var v = value
        var i = count + digits - 1
        while i >= count {
            base[i] = 0x30 + UInt8(v % 10)
            v /= 10
            i -= 1
        }
        count += digits
    }

    /// Nanoseconds as decimal seconds, exact: `0.0032`, `12.0`.
    func appendSeconds(nanoseconds ns: UInt64) {
        appendDecimal(ns / 1_000_000_000)
        append(byte: UInt8(ascii: "."))
        var frac = ns % 1_000_000_000
        guard frac > 0 else { append(byte: 0x30); return }
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        appendDigits(frac, digits)
    }
}

/// VmRSS of this process in bytes: the second field of /proc/self/statm (pages, proc(5)) × the
/// page size. One small read into a stack buffer: no String, no allocation.
public func residentMemoryBytes() -> Int {
    let file = FileDescriptor(pyry_open("/proc/self/statm", O_RDONLY | O_CLOEXEC, 0))
    guard file.isOpen else { return 0 }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int in
        let n = read(file.raw, buf.baseAddress, buf.count)
        guard n > 0 else { return 0 }
        var i = 0
        while i < n && buf[i] != 0x20 { i += 1 }  // skip the first field (size)
        i += 1
        var pages = 0
        while i < n, buf[i] >= 0x30, buf[i] <= 0x39 {
            pages = pages * 10 + Int(buf[i] - 0x30)
            i += 1
        }
        return pages * pageSize
    }
}

private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

extension Metrics {
    /// ACME mode only (docs/operations.md "ACME").
    func renderACME(_ o: ExpositionBuffer) {
        o.family("pyrycode_relay_tls_cert_not_after_seconds", "gauge", "Expiry of the served certificate (Unix time); 0 while there is none.")
        o.sample("pyrycode_relay_tls_cert_not_after_seconds ", Int(tlsCertNotAfter))
        o.family("pyrycode_relay_acme_orders_total", "counter", "ACME certificate orders, by outcome.")
        o.sample("pyrycode_relay_acme_orders_total{outcome=\"issued\"} ", acmeOrdersIssued)
        o.sample("pyrycode_relay_acme_orders_total{outcome=\"failed\"} ", acmeOrdersFailed)
    }
}
