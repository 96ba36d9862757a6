import CEpoll

/// The relay's counters, named as in the Go relay (docs/operations.md) so dashboards keep working,
/// rendered in the Prometheus text format 0.0.4. Plain stored integers: one thread.
public final class Metrics {
    public enum Endpoint: Int, CaseIterable { case server, client }
    public enum UpgradeOutcome: Int, CaseIterable {
        case accept, rejectHeaders, reject409, reject404, reject429, rejectRateLimit
        var label: String {
            ["accept", "reject_headers", "reject_409", "reject_404", "reject_429", "reject_rate_limit"][rawValue]
        }
    }
    public enum RegisterFailure: Int, CaseIterable {
        case noServer, serverInUse, phonesAtCap, ratelimit
        var label: String { ["no_server", "server_in_use", "phones_at_cap", "ratelimit"][rawValue] }
    }

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
        public init() {}
    }

    public func render(_ g: Gauges) -> [UInt8] {
        var o = ""
        o.reserveCapacity(4096)
        func family(_ name: String, _ type: String, _ help: String) {
            o += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("pyrycode_relay_connected_binaries", "gauge", "Binaries currently connected (excludes binaries in grace).")
        o += "pyrycode_relay_connected_binaries \(g.connectedBinaries)\n"
        family("pyrycode_relay_connected_phones", "gauge", "Phones currently connected.")
        o += "pyrycode_relay_connected_phones \(g.connectedPhones)\n"
        family("pyrycode_relay_frames_forwarded_total", "counter", "Frames forwarded, by direction.")
        o += "pyrycode_relay_frames_forwarded_total{direction=\"phone_to_binary\"} \(framesPhoneToBinary)\n"
        o += "pyrycode_relay_frames_forwarded_total{direction=\"binary_to_phone\"} \(framesBinaryToPhone)\n"
        family("pyrycode_relay_grace_expiries_total", "counter", "Grace periods that expired without a reclaim.")
        o += "pyrycode_relay_grace_expiries_total \(graceExpiries)\n"
        family("pyrycode_relay_ws_upgrade_attempts_total", "counter", "WebSocket upgrade attempts, by endpoint and outcome.")
        for e in Endpoint.allCases {
            for oc in UpgradeOutcome.allCases {
                let v = upgrades[e.rawValue * UpgradeOutcome.allCases.count + oc.rawValue]
                o += "pyrycode_relay_ws_upgrade_attempts_total{endpoint=\"\(e == .server ? "server" : "client")\",outcome=\"\(oc.label)\"} \(v)\n"
            }
        }
        family("pyrycode_relay_register_failures_total", "counter", "Registrations refused, by kind.")
        for k in RegisterFailure.allCases {
            o += "pyrycode_relay_register_failures_total{kind=\"\(k.label)\"} \(registerFailures[k.rawValue])\n"
        }
        family("pyrycode_relay_bytes_relayed_total", "counter", "Payload bytes relayed, by direction.")
        o += "pyrycode_relay_bytes_relayed_total{direction=\"phone_to_binary\"} \(bytesPhoneToBinary)\n"
        o += "pyrycode_relay_bytes_relayed_total{direction=\"binary_to_phone\"} \(bytesBinaryToPhone)\n"
        family("pyrycode_relay_queued_bytes", "gauge", "Bytes queued for writing across all connections.")
        o += "pyrycode_relay_queued_bytes \(g.queuedBytes)\n"
        family("pyrycode_relay_live_connections", "gauge", "Live WebSocket connections.")
        o += "pyrycode_relay_live_connections \(g.liveConnections)\n"
        family("pyrycode_relay_half_open_connections", "gauge", "Connections not yet upgraded.")
        o += "pyrycode_relay_half_open_connections \(g.halfOpen)\n"
        family("pyrycode_relay_half_open_evictions_total", "counter", "Connections not yet upgraded closed to make room (--max-half-open, --max-half-open-per-ip).")
        o += "pyrycode_relay_half_open_evictions_total \(halfOpenEvictions)\n"
        family("pyrycode_relay_connections_closed_total", "counter", "WebSocket connections closed, by close code (1006: no close frame).")
        for code in closedByCode.keys.sorted() {
            o += "pyrycode_relay_connections_closed_total{code=\"\(code)\"} \(closedByCode[code]!)\n"
        }
        family("pyrycode_relay_http_rejects_total", "counter", "HTTP requests answered with an error status.")
        for s in httpRejects.keys.sorted() {
            o += "pyrycode_relay_http_rejects_total{status=\"\(s)\"} \(httpRejects[s]!)\n"
        }
        family("pyrycode_relay_tls_handshakes_total", "counter", "TLS handshakes, by result.")
        o += "pyrycode_relay_tls_handshakes_total{result=\"ok\"} \(tlsHandshakesOK)\n"
        o += "pyrycode_relay_tls_handshakes_total{result=\"failed\"} \(tlsHandshakesFailed)\n"
        family("pyrycode_relay_loop_iteration_seconds", "histogram", "Event-loop iteration durations (events, timers and writes of one epoll_wait wake-up).")
        var cumulative: UInt64 = 0
        for (i, label) in LoopLatency.boundLabels.enumerated() {
            cumulative += g.loopLatency.counts[i]
            o += "pyrycode_relay_loop_iteration_seconds_bucket{le=\"\(label)\"} \(cumulative)\n"
        }
        o += "pyrycode_relay_loop_iteration_seconds_bucket{le=\"+Inf\"} \(g.loopLatency.count)\n"
        o += "pyrycode_relay_loop_iteration_seconds_sum \(Double(g.loopLatency.sumNs) / 1e9)\n"
        o += "pyrycode_relay_loop_iteration_seconds_count \(g.loopLatency.count)\n"
        family("pyrycode_relay_log_lines_dropped_total", "counter", "Log lines dropped because stderr did not take them in time (slow reader, buffer full).")
        o += "pyrycode_relay_log_lines_dropped_total \(g.logLinesDropped)\n"
        if acmeEnabled { renderACME(&o) }
        family("process_open_fds", "gauge", "Open file descriptors.")
        o += "process_open_fds \(openFileDescriptorCount())\n"
        family("process_resident_memory_bytes", "gauge", "Resident set size.")
        o += "process_resident_memory_bytes \(residentMemoryBytes())\n"
        return Array(o.utf8)
    }
}

/// VmRSS of this process in bytes, from /proc/self/statm (pages × page size).
public func residentMemoryBytes() -> Int {
    guard let statm = readSmallFile("/proc/self/statm") else { return 0 }
    let fields = statm.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

extension Metrics {
    func renderACME(_ o: inout String) {
        o += "# HELP pyrycode_relay_tls_cert_not_after_seconds Expiry of the served certificate (Unix time); 0 while there is none.\n"
        o += "# TYPE pyrycode_relay_tls_cert_not_after_seconds gauge\n"
        o += "pyrycode_relay_tls_cert_not_after_seconds \(tlsCertNotAfter)\n"
        o += "# HELP pyrycode_relay_acme_orders_total ACME certificate orders, by outcome.\n"
        o += "# TYPE pyrycode_relay_acme_orders_total counter\n"
        o += "pyrycode_relay_acme_orders_total{outcome=\"issued\"} \(acmeOrdersIssued)\n"
        o += "pyrycode_relay_acme_orders_total{outcome=\"failed\"} \(acmeOrdersFailed)\n"
    }
}
