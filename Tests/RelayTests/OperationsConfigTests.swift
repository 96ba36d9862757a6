import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayOperations
@testable import Relaying

/// Flags (docs/operations.md), environment (docs/operations.md) and the HTTP details of /healthz and /metrics
/// (docs/protocol.md §2) that the operations work added. The built binary is exercised end to end by
/// tests/interop/test_operations.py; these pin the pure pieces.
@Suite struct OperationsConfigTests {
    private func run(_ args: [String]) -> RelayConfig? {
        if case .success(.run(let c)) = RelayConfig.parse(args) { return c }
        return nil
    }

    private func refusal(_ args: [String]) -> String? {
        if case .failure(let r) = RelayConfig.parse(args) { return r.description }
        return nil
    }

    @Test func versionIsTheBareVersionString() {
        guard case .success(.version(let v)) = RelayConfig.parse(["--version"]) else {
            Issue.record("--version did not yield a version")
            return
        }
        #expect(v == RelayConfig.version)
    }

    @Test func metricsListenMustBeALoopbackIPLiteral() throws {
        let base = ["--insecure-listen", "127.0.0.1:8080", "--metrics-listen"]
        #expect(try #require(run(base + ["127.0.0.2:9090"])).metricsListen?.description == "127.0.0.2:9090")
        #expect(try #require(run(base + ["[::1]:9090"])).metricsListen?.description == "[::1]:9090")
        for bad in ["localhost:9090", "LOCALHOST:9090", "0.0.0.0:9090", ":9090", "10.0.0.1:9090"] {
            let text = try #require(refusal(base + [bad]), "\(bad) was accepted")
            #expect(text.contains("--metrics-listen"))
        }
    }

    /// Values past what the relay can hold are refused by name, not lowered unseen where they
    /// are used: the message limit past 1 GiB, a connection's heartbeat past 24.8 days.
    @Test func ceilingsAreRefusedNotLowered() throws {
        let base = ["--insecure-listen", "127.0.0.1:8080"]
        let atCeiling = try #require(run(base + ["--max-message-bytes", "1073741824", "--heartbeat-interval", "2147483647ms",
                                                 "--heartbeat-timeout", "596h31m23.647s"]))
        #expect(atCeiling.connection.maxMessageBytes == Limits.maxMessageBytesCeiling)
        #expect(atCeiling.connection.heartbeatIntervalMs == ShortDeadline.maxSpanMs)
        #expect(atCeiling.connection.heartbeatTimeoutMs == ShortDeadline.maxSpanMs)
        for (flag, value) in [("max-message-bytes", "1073741825"), ("heartbeat-interval", "2147483648ms"),
                              ("heartbeat-timeout", "600h")] {
            let text = try #require(refusal(base + ["--\(flag)", value]), "--\(flag) \(value) was accepted")
            #expect(text.hasPrefix("invalid value \"\(value)\" for --\(flag): at most "), "\(text)")
        }
        // Durations the relay keeps in 64 bits (grace) have no such ceiling.
        #expect(try #require(run(base + ["--grace", "8760h"])).graceMs == 8760 * 3_600_000)
    }

    @Test func emptyMetricsListenDisablesAndTheLastValueWins() throws {
        let c = try #require(run(["--insecure-listen=127.0.0.1:1", "--metrics-listen", "127.0.0.1:9", "--metrics-listen="]))
        #expect(c.metricsListen == nil)
        let d = try #require(run(["-insecure-listen", "127.0.0.1:1", "--insecure-listen", "127.0.0.1:2",
                                  "--max-connections=5", "--max-connections", "7"]))
        #expect(d.insecureListen?.description == "127.0.0.1:2")
        #expect(d.maxConnections == 7)
    }

    @Test func usageTextNamesEveryFlag() {
        let text = RelayConfig.usageText
        for name in ["insecure-listen", "metrics-listen", "max-connections", "max-connections-per-ip",
                     "max-half-open", "trust-x-forwarded-for", "drain-deadline", "version"] {
            #expect(text.contains("  --\(name)"), "\(name)")
        }
    }

    @Test func fcmCredentialsMustBeAJSONObjectAndAreNeverEchoed() throws {
        let key = "PYRYCODE_RELAY_FCM_CREDENTIALS"
        guard case .success(let ok) = EnvironmentConfig.parse([key: " {\"type\":\"service_account\"}"]) else {
            Issue.record("a JSON object was refused")
            return
        }
        #expect(ok.fcmCredentials != nil)
        for bad in ["", "secret-value-123", "[\"secret-value-123\"]", "{\"secret-value-123\"", "\"secret-value-123\""] {
            guard case .failure(let e) = EnvironmentConfig.parse([key: bad]) else {
                Issue.record("\(bad) was accepted")
                continue
            }
            #expect(e.message.hasPrefix("relay: invalid env-var config: \(key): "))
            #expect(!e.message.contains("secret-value"))
        }
    }

    @Test func headResponseKeepsTheHeadersAndDropsTheBody() {
        let full = HTTPResponse.ok(body: Array("{\"a\":1}".utf8), contentType: "application/json", extraHeaders: [], close: false)
        let head = HTTPResponse.withoutBody(full)
        #expect(head == Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n".utf8))
    }

    @Test func aRequestThatAnnouncesABodyCannotPersist() {
        func head(_ length: Int?, chunked: Bool = false) -> HTTPRequestHead {
            HTTPRequestHead(method: "POST", target: "/healthz", versionMinor: 1, headers: [("host", "x")],
                            contentLength: length, hasTransferEncoding: chunked)
        }
        #expect(!head(nil).carriesBody)
        #expect(!head(0).carriesBody)
        #expect(head(1).carriesBody)
        #expect(head(nil, chunked: true).carriesBody)
    }
}

@Suite struct LoopLatencyTests {
    @Test func recordsIntoTheFirstBucketThatHoldsTheSample() {
        var h = LoopLatency()
        h.record(0)                 // ≤ 50 µs
        h.record(50_000)            // bounds are inclusive (Prometheus `le`)
        h.record(50_001)            // ≤ 100 µs
        h.record(2_000_000_000)     // above every bound: +Inf
        #expect(h.counts[0] == 2 && h.counts[1] == 1 && h.counts[LoopLatency.boundsNs.count] == 1)
        #expect(h.count == 4 && h.sumNs == 2_000_100_001)
    }

    @Test func rendersACumulativeHistogram() {
        var g = Metrics.Gauges()
        g.loopLatency.record(200_000)
        g.loopLatency.record(3_000_000)
        let text = String(decoding: Metrics(relay: RelayCounters()).render(g), as: UTF8.self)
        #expect(text.contains("# TYPE pyrycode_relay_loop_iteration_seconds histogram\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_bucket{le=\"0.0001\"} 0\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_bucket{le=\"0.00025\"} 1\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_bucket{le=\"0.005\"} 2\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_bucket{le=\"+Inf\"} 2\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_count 2\n"))
        #expect(text.contains("pyrycode_relay_loop_iteration_seconds_sum 0.0032\n"))
    }

    @Test func rendersIntoAReusedBufferWithoutStaleBytes() {
        let counters = RelayCounters()
        let m = Metrics(relay: counters)
        var g = Metrics.Gauges()
        g.openFileDescriptors = 12_345
        g.residentMemoryBytes = 9_876_543_210
        g.queuedBytes = -5
        g.loopLatency.record(2_000_000_000)
        counters.closed(code: .normal)
        counters.httpRejects[404] = 7
        let first = m.render(g)
        let text = String(decoding: first, as: UTF8.self)
        #expect(text.contains("\nprocess_open_fds 12345\n"))
        #expect(text.contains("\nprocess_resident_memory_bytes 9876543210\n"))
        #expect(text.contains("\npyrycode_relay_queued_bytes -5\n"))
        #expect(text.contains("\npyrycode_relay_loop_iteration_seconds_sum 2.0\n"))
        #expect(text.contains("\npyrycode_relay_connections_closed_total{code=\"1000\"} 1\n"))
        #expect(text.contains("\npyrycode_relay_http_rejects_total{status=\"404\"} 7\n"))
        #expect(text.hasSuffix("\n") && !text.contains("\n\n"))
        // A shorter second text: nothing of the first may be left behind.
        g.openFileDescriptors = 3
        g.residentMemoryBytes = 0
        let second = String(decoding: m.render(g), as: UTF8.self)
        #expect(second.utf8.count == first.count - 4 - 9)
        #expect(second.contains("\nprocess_open_fds 3\n") && second.hasSuffix("process_resident_memory_bytes 0\n"))
        #expect(String(decoding: first, as: UTF8.self) == text)  // the caller's copy is untouched
        #expect(text.contains("\npyrycode_relay_frames_forwarded_total{direction=\"phone_to_binary\"} 0\n"))
    }

    @Test func formatsNanosecondsAsExactSeconds() {
        let b = ExpositionBuffer(capacity: 4)  // grows as it goes
        for (ns, s) in [(UInt64(0), "0.0"), (1, "0.000000001"), (3_200_000, "0.0032"), (12_000_000_000, "12.0"),
                        (1_500_000_001, "1.500000001"), (UInt64.max, "18446744073.709551615")] {
            b.reset()
            b.appendSeconds(nanoseconds: ns)
            #expect(String(decoding: b.bytes, as: UTF8.self) == s)
        }
    }
}

@Suite struct DeviceNameTruncationTests {
    @Test func cutsOnACodePointBoundary() {
        #expect(truncatedUTF8("short", maxBytes: 64) == "short")
        let ascii = String(repeating: "a", count: 70)
        #expect(truncatedUTF8(ascii, maxBytes: 64).utf8.count == 64)
        // 63 ASCII bytes then a 2-byte "é": the é would end at byte 65, so it is dropped whole.
        let name = String(repeating: "a", count: 63) + "é" + "b"
        #expect(truncatedUTF8(name, maxBytes: 64) == String(repeating: "a", count: 63))
        #expect(truncatedUTF8("ééé", maxBytes: 5) == "éé")
    }
}
