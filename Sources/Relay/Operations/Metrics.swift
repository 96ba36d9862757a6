import CEpoll
import RelayReactor
import RelayCodecs
import RelayPush
import RelaySystem
import RelayCore
import RelayACME
import RelayTransport
import Relaying

/// The relay's metrics, named as in the Go relay (docs/operations.md) so dashboards keep working,
/// rendered in the Prometheus text format 0.0.4. Plain stored integers: one thread.
public final class Metrics {
    /// Label values by `rawValue`, as the Go relay spells them.
    private static let outcomeLabels: [StaticString] = [
        "accept", "reject_headers", "reject_409", "reject_404", "reject_429", "reject_rate_limit",
    ]
    private static let failureLabels: [StaticString] = ["no_server", "server_in_use", "phones_at_cap", "ratelimit"]
    /// `LoopLatency.boundsNs` in seconds, as Prometheus `le` labels.
    private static let bucketLabels = [
        "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
        "0.025", "0.05", "0.1", "0.25", "1",
    ].map { Array($0.utf8) }
    private static let pushOutcomeLabels = PushService.Outcome.allCases.map { Array($0.label.utf8) }

    private let relay: RelayCounters
    /// Set when ACME manages the certificate; its series appear only then.
    public var acme: ACMECounters?

    public init(relay: RelayCounters) { self.relay = relay }

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
        o.sample("pyrycode_relay_frames_forwarded_total{direction=\"phone_to_binary\"} ", relay.framesPhoneToBinary)
        o.sample("pyrycode_relay_frames_forwarded_total{direction=\"binary_to_phone\"} ", relay.framesBinaryToPhone)
        o.family("pyrycode_relay_grace_expiries_total", "counter", "Grace periods that expired without a reclaim.")
        o.sample("pyrycode_relay_grace_expiries_total ", relay.graceExpiries)
        o.family("pyrycode_relay_ws_upgrade_attempts_total", "counter", "WebSocket upgrade attempts, by endpoint and outcome.")
        for e in Endpoint.allCases {
            for oc in RelayCounters.UpgradeOutcome.allCases {
                o.append("pyrycode_relay_ws_upgrade_attempts_total{endpoint=\"")
                o.append(e == .server ? "server" : "client")
                o.append("\",outcome=\"")
                o.append(Metrics.outcomeLabels[oc.rawValue])
                o.sample("\"} ", relay.upgrades[e.rawValue * RelayCounters.UpgradeOutcome.allCases.count + oc.rawValue])
            }
        }
        o.family("pyrycode_relay_register_failures_total", "counter", "Registrations refused, by kind.")
        for k in RelayCounters.RegisterFailure.allCases {
            o.append("pyrycode_relay_register_failures_total{kind=\"")
            o.append(Metrics.failureLabels[k.rawValue])
            o.sample("\"} ", relay.registerFailures[k.rawValue])
        }
        o.family("pyrycode_relay_bytes_relayed_total", "counter", "Payload bytes relayed, by direction.")
        o.sample("pyrycode_relay_bytes_relayed_total{direction=\"phone_to_binary\"} ", relay.bytesPhoneToBinary)
        o.sample("pyrycode_relay_bytes_relayed_total{direction=\"binary_to_phone\"} ", relay.bytesBinaryToPhone)
        o.family("pyrycode_relay_queued_bytes", "gauge", "Bytes queued for writing across all connections.")
        o.sample("pyrycode_relay_queued_bytes ", g.queuedBytes)
        o.family("pyrycode_relay_live_connections", "gauge", "Live WebSocket connections.")
        o.sample("pyrycode_relay_live_connections ", g.liveConnections)
        o.family("pyrycode_relay_half_open_connections", "gauge", "Connections not yet upgraded.")
        o.sample("pyrycode_relay_half_open_connections ", g.halfOpen)
        o.family("pyrycode_relay_half_open_evictions_total", "counter", "Connections not yet upgraded closed to make room (--max-half-open, --max-half-open-per-ip).")
        o.sample("pyrycode_relay_half_open_evictions_total ", relay.halfOpenEvictions)
        o.family("pyrycode_relay_connections_closed_total", "counter", "WebSocket connections closed, by close code (1006: no close frame).")
        for code in relay.closedByCode.keys.sorted() {
            o.append("pyrycode_relay_connections_closed_total{code=\"")
            o.appendDecimal(Int(code))
            o.sample("\"} ", relay.closedByCode[code]!)
        }
        o.family("pyrycode_relay_http_rejects_total", "counter", "HTTP requests answered with an error status.")
        for s in relay.httpRejects.keys.sorted() {
            o.append("pyrycode_relay_http_rejects_total{status=\"")
            o.appendDecimal(s)
            o.sample("\"} ", relay.httpRejects[s]!)
        }
        o.family("pyrycode_relay_tls_handshakes_total", "counter", "TLS handshakes, by result.")
        o.sample("pyrycode_relay_tls_handshakes_total{result=\"ok\"} ", relay.tlsHandshakesOK)
        o.sample("pyrycode_relay_tls_handshakes_total{result=\"failed\"} ", relay.tlsHandshakesFailed)
        o.family("pyrycode_relay_loop_iteration_seconds", "histogram", "Event-loop iteration durations (events, timers and writes of one epoll_wait wake-up).")
        var cumulative: UInt64 = 0
        let counts = g.loopLatency.counts
        for (i, label) in Metrics.bucketLabels.enumerated() {
            cumulative += counts[i]
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
        o.sample("pyrycode_relay_misrouted_upgrades_total ", relay.misroutedUpgrades)
        if let acme { renderACME(acme, o) }
        o.family("process_open_fds", "gauge", "Open file descriptors.")
        o.sample("process_open_fds ", g.openFileDescriptors)
        o.family("process_resident_memory_bytes", "gauge", "Resident set size.")
        o.sample("process_resident_memory_bytes ", g.residentMemoryBytes)
        return o.bytes
    }
}

/// The Prometheus text format written into a `ByteBuffer`: fixed text from `StaticString`s,
/// integers formatted in place. The block is kept between scrapes.
package final class ExpositionBuffer {
    private var buffer = ByteBuffer()

    package init(capacity: Int) { buffer.reserve(capacity) }

    deinit { buffer.release() }

    package var count: Int { buffer.count }

    package func reset() { buffer.consume(buffer.count) }

    /// The text so far, copied out.
    package var bytes: [UInt8] { Array(UnsafeRawBufferPointer(buffer.readable)) }

    package func append(byte: UInt8) {
        buffer.reserve(1)
        buffer.writePointer.storeBytes(of: byte, as: UInt8.self)
        buffer.didWrite(1)
    }

    package func append(_ s: StaticString) {
        buffer.append(s.utf8Start, s.utf8CodeUnitCount)
    }

    package func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { b in
            if let p = b.baseAddress { buffer.append(p, b.count) }
        }
    }

    package func family(_ name: StaticString, _ type: StaticString, _ help: StaticString) {
        append("# HELP "); append(name); append(byte: 0x20); append(help)
        append("\n# TYPE "); append(name); append(byte: 0x20); append(type); append(byte: 0x0A)
    }

    /// `prefix` (the series and a space) then the value and a newline.
    package func sample(_ prefix: StaticString, _ value: Int) {
        append(prefix)
        appendDecimal(value)
        append(byte: 0x0A)
    }

    package func sample(_ prefix: StaticString, _ value: UInt64) {
        append(prefix)
        appendDecimal(value)
        append(byte: 0x0A)
    }

    package func appendDecimal(_ value: Int) {
        if value < 0 { append(byte: UInt8(ascii: "-")) }
        appendDecimal(UInt64(value.magnitude))
    }

    package func appendDecimal(_ value: UInt64) {
        var digits = 1
        var v = value
        while v >= 10 { v /= 10; digits += 1 }
        appendDigits(value, digits)
    }

    /// The low `digits` decimal digits of `value`, zero-padded on the left.
    private func appendDigits(_ value: UInt64, _ digits: Int) {
        buffer.reserve(digits)
        let out = buffer.writePointer.assumingMemoryBound(to: UInt8.self)
        var v = value
        for i in stride(from: digits - 1, through: 0, by: -1) {
            out[i] = 0x30 + UInt8(v % 10)
            v /= 10
        }
        buffer.didWrite(digits)
    }

    /// Nanoseconds as decimal seconds, exact: `0.0032`, `12.0`.
    package func appendSeconds(nanoseconds ns: UInt64) {
        appendDecimal(ns / 1_000_000_000)
        append(byte: UInt8(ascii: "."))
        var frac = ns % 1_000_000_000
        guard frac > 0 else { append(byte: 0x30); return }
        var digits = 9
        while frac % 10 == 0 { frac /= 10; digits -= 1 }
        appendDigits(frac, digits)
    }
}


extension Metrics {
    /// ACME mode only (docs/operations.md "ACME").
    package func renderACME(_ acme: ACMECounters, _ o: ExpositionBuffer) {
        o.family("pyrycode_relay_tls_cert_not_after_seconds", "gauge", "Expiry of the served certificate (Unix time); 0 while there is none.")
        o.sample("pyrycode_relay_tls_cert_not_after_seconds ", Int(acme.tlsCertNotAfter))
        o.family("pyrycode_relay_acme_orders_total", "counter", "ACME certificate orders, by outcome.")
        o.sample("pyrycode_relay_acme_orders_total{outcome=\"issued\"} ", acme.ordersIssued)
        o.sample("pyrycode_relay_acme_orders_total{outcome=\"failed\"} ", acme.ordersFailed)
    }
}
