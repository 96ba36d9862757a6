import CEpoll
import Testing
@testable import RelayLog
@testable import RelayOperations

@Suite struct SingleInstanceCheckTests {
    static let nowhere = "/nonexistent-relay-dir"

    @Test func bypassProbesNothingAndWarns() throws {
        let dir = TempDir()
        var env = EnvironmentConfig()
        env.bypassSingleInstance = true
        let o = try runSingleInstanceCheck(env: env, rawEnv: ["FLY_APP_NAME": "x"], runtimeDirFlag: dir.path).get()
        #expect(o.lock == nil)
        #expect(o.decision == .bypass)
        #expect(dir.read("instance.lock") == nil)  // no lock file was even created
        #expect(o.logLines.count == 1)
        #expect(o.logLines[0].contains(" level=warn msg=single_instance_bypass err=\"PYRYCODE_RELAY_SINGLE_INSTANCE=1: "
            + "single-instance self-check skipped; NOT recommended for production\" path=docs/architecture.md"))
    }

    @Test func startsAndKeepsTheLock() throws {
        let dir = TempDir()
        let o = try runSingleInstanceCheck(env: EnvironmentConfig(), rawEnv: [:], runtimeDirFlag: dir.path).get()
        #expect(o.lock?.path == dir.path + "/instance.lock")
        let line = o.logLines[0]
        #expect(line.hasPrefix("ts="))
        #expect(line.hasSuffix(" level=info msg=single_instance_check same_host=single fly=absent kubernetes=absent "
            + "path=\(dir.path)/instance.lock"))
        // A second check while the first outcome is alive refuses with our PID as evidence.
        guard case .failure(let refusal) = runSingleInstanceCheck(env: EnvironmentConfig(), rawEnv: [:], runtimeDirFlag: dir.path) else {
            Issue.record("second check should refuse"); return
        }
        #expect(refusal.message == """
            ERROR: multi-instance deploy detected, relay registry is in-memory and cannot share state across replicas. \
            Set PYRYCODE_RELAY_SINGLE_INSTANCE=1 to bypass (NOT recommended for production).
              reason: same_host signal saw another replica
              evidence: same_host=multiple: lock \(dir.path)/instance.lock is held by another relay, pid \(getpid())
              fix: stop the relay with pid \(getpid()) (ps -p \(getpid()) -o pid,args), or give this relay another --runtime-dir if it serves a different deployment
              see: /usr/local/share/doc/pyrycode-relay/architecture.md (docs/architecture.md in the source tree), section "v1 = single-instance"
            """)
        withExtendedLifetime(o) {}
    }

    @Test func noRuntimeDirectoryStartsWithWarn() throws {
        let o = try runSingleInstanceCheck(env: EnvironmentConfig(), rawEnv: [:], runtimeDirFlag: nil,
                                           defaultRuntimeDirectory: Self.nowhere).get()
        #expect(o.lock == nil)
        #expect(o.logLines[0].contains(" level=warn msg=single_instance_check same_host=unknown fly=absent kubernetes=absent "
            + "err=\"same_host: no runtime directory"))
    }

    @Test func productionWithoutAssertionRefuses() {
        var env = EnvironmentConfig()
        env.production = true
        guard case .failure(let r) = runSingleInstanceCheck(env: env, rawEnv: [:], runtimeDirFlag: nil,
                                                            defaultRuntimeDirectory: Self.nowhere) else {
            Issue.record("expected refusal"); return
        }
        #expect(r.reason == "PYRYCODE_RELAY_PRODUCTION=1 requires PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true")
        #expect(r.remedy == "where the platform guarantees one replica, set PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true "
            + "(deploy manifest or env file)")
        env.assertSingleInstance = true
        #expect((try? runSingleInstanceCheck(env: env, rawEnv: [:], runtimeDirFlag: nil,
                                             defaultRuntimeDirectory: Self.nowhere).get()) != nil)
    }

    @Test func kubernetesNeedsTheAssertion() throws {
        let raw = ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "relay-7f9c8d-abcde"]
        guard case .failure(let r) = runSingleInstanceCheck(env: EnvironmentConfig(), rawEnv: raw, runtimeDirFlag: nil,
                                                            defaultRuntimeDirectory: Self.nowhere) else {
            Issue.record("expected refusal"); return
        }
        #expect(r.reason == "kubernetes signal cannot count replicas and PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true is not set")
        var env = EnvironmentConfig()
        env.assertSingleInstance = true
        let o = try runSingleInstanceCheck(env: env, rawEnv: raw, runtimeDirFlag: nil, defaultRuntimeDirectory: Self.nowhere).get()
        #expect(o.logLines[0].contains("level=warn msg=single_instance_check same_host=unknown fly=absent kubernetes=unknown"))
        // A StatefulSet replica other than 0 refuses even with the assertion.
        let sts = ["KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "relay-2"]
        guard case .failure(let r2) = runSingleInstanceCheck(env: env, rawEnv: sts, runtimeDirFlag: nil,
                                                             defaultRuntimeDirectory: Self.nowhere) else {
            Issue.record("expected refusal"); return
        }
        #expect(r2.message.contains("evidence: kubernetes=multiple: HOSTNAME ends in StatefulSet ordinal 2; ordinal 0 exists too"))
        #expect(r2.message.contains("\n  fix: run one replica of this relay (replicas: 1)\n"))
    }

    @Test func kubernetesHostnames() {
        func word(_ h: String?) -> String {
            var e = ["KUBERNETES_SERVICE_HOST": "10.0.0.1"]
            e["HOSTNAME"] = h
            return KubernetesSignal(env: e)!.probe().word
        }
        #expect(KubernetesSignal(env: ["KUBERNETES_SERVICE_HOST": ""]) == nil)
        #expect(word(nil) == "unknown")
        #expect(word("relay-0") == "unknown")
        #expect(word("relay-1") == "multiple")
        #expect(word("my-relay-12") == "multiple")
        #expect(word("relay-01") == "unknown")
        #expect(word("relay-") == "unknown")
        #expect(word("relay") == "unknown")
        #expect(word("relay-5d8f7c9b4-x7k2p") == "unknown")
        #expect(word("relay-5d8f7c9b4-24567") == "unknown")  // all-digit Deployment suffix
        #expect(word("relay-10000") == "multiple")  // contains 0 and 1: not a Deployment suffix
    }

    @Test func flyEndToEndThroughTheCheck() throws {
        let server = FakeDNSServer()
        server.answerOnce([FlyDNSSignalTests.ours, FlyDNSSignalTests.other])
        var env = try EnvironmentConfig.parse(["PYRYCODE_RELAY_FLY_DNS_SERVER": server.address]).get()
        env.assertSingleInstance = true
        guard case .failure(let r) = runSingleInstanceCheck(env: env, rawEnv: FlyDNSSignalTests.env, runtimeDirFlag: nil,
                                                            defaultRuntimeDirectory: Self.nowhere) else {
            Issue.record("expected refusal"); return
        }
        #expect(r.reason == "fly signal saw another replica")
        #expect(r.remedy == "run one machine for this app (fly scale count 1)")
        #expect(r.message.split(separator: "\n").first.map(String.init) == SingleInstanceRefusal.headline)
    }

    /// The check's cost with no platform signal (open + flock + pwrite of the lock file).
    /// The number is printed for the report; the bound is loose for shared CI machines.
    @Test func overheadWithoutPlatformSignals() throws {
        var samples: [Int64] = []
        for _ in 0..<20 {
            let dir = TempDir()
            let t0 = monotonicNanos()
            let o = runSingleInstanceCheck(env: EnvironmentConfig(), rawEnv: [:], runtimeDirFlag: dir.path)
            samples.append(monotonicNanos() - t0)
            #expect((try? o.get().lock) != nil)
        }
        samples.sort()
        print("runSingleInstanceCheck (no platform signal): median \(samples[10] / 1_000) us, max \(samples[19] / 1_000) us")
        #expect(samples[10] < 50_000_000)
    }
}

@Suite struct LogfmtTests {
    @Test func quoting() {
        #expect(Logfmt.quote("plain") == "plain")
        #expect(Logfmt.quote("") == "\"\"")
        #expect(Logfmt.quote("a b") == "\"a b\"")
        #expect(Logfmt.quote("k=v") == "\"k=v\"")
        #expect(Logfmt.quote("say \"hi\"") == "\"say \\\"hi\\\"\"")
        #expect(Logfmt.quote("a\\b") == "\"a\\\\b\"")
        #expect(Logfmt.quote("l1\nl2\t\u{1}") == "\"l1\\nl2\\t\\u0001\"")
        #expect(Logfmt.quote("§é") == "§é")
    }

    @Test func line() {
        #expect(Logfmt.line(level: "info", msg: "x", [("path", "/a b")], timestamp: "T")
            == "ts=T level=info msg=x path=\"/a b\"")
    }

    /// The quoting rules as written before the byte fast path: every value through its scalars.
    static func referenceQuote(_ value: String) -> String {
        let needs = value.isEmpty || value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || Logfmt.mustEscape($0)
        }
        guard needs else { return value }
        var out = "\""
        for u in value.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += Logfmt.mustEscape(u) ? "\\u" + String(u.value, radix: 16).leftPadded(to: 4) : String(u)
            }
        }
        return out + "\""
    }

    // The fast path for plain ASCII and the per-character path agree with the reference on
    // every mix: each ASCII byte, C1 and line-ending characters, bidi controls, other non-ASCII.
    @Test func quotingMatchesTheReferenceOnEveryMix() {
        let pieces: [String] = (0..<128).map { String(UnicodeScalar(UInt8($0))) }
            + ["é", "§", "\u{85}", "\u{9F}", "\u{A0}", "\u{2028}", "\u{2029}", "\u{202E}", "\u{61C}", "\u{1F600}", "ab", "0123456789abcdef"]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<5_000 {
            var value = ""
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            for k in 0..<Int(seed % 6) { value += pieces[Int((seed >> (8 * UInt64(k) + 3)) % UInt64(pieces.count))] }
            #expect(Logfmt.quote(value) == Self.referenceQuote(value), "\(Array(value.unicodeScalars.map(\.value)))")
        }
        for p in pieces { #expect(Logfmt.quote("x" + p + "y") == Self.referenceQuote("x" + p + "y")) }
    }

    // The digits written by hand agree with libc's strftime for any second from 1970 to 2200.
    @Test func timestampsMatchStrftime() {
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        for i in 0..<2_000 {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            let seconds = Int64(seed % 7_258_118_400), ms = i % 1000
            var t = time_t(seconds)
            var civil = tm()
            var text = [CChar](repeating: 0, count: 32)
            _ = gmtime_r(&t, &civil)
            _ = strftime(&text, text.count, "%Y-%m-%dT%H:%M:%S", &civil)
            let expected = String(cString: text) + "." + String(ms).leftPadded(to: 3) + "Z"
            #expect(Logfmt.format(epochSeconds: seconds, milliseconds: ms) == expected)
        }
    }

    @Test func rfc3339() {
        #expect(Logfmt.format(epochSeconds: 0, milliseconds: 0) == "1970-01-01T00:00:00.000Z")
        #expect(Logfmt.format(epochSeconds: 951_782_400, milliseconds: 7) == "2000-02-29T00:00:00.007Z")
        #expect(Logfmt.format(epochSeconds: 1_700_000_000, milliseconds: 123) == "2023-11-14T22:13:20.123Z")
        #expect(Logfmt.format(epochSeconds: 4_107_542_399, milliseconds: 999) == "2100-02-28T23:59:59.999Z")
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
