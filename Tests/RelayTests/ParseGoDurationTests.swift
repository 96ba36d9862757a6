import Testing
@testable import RelayOperations

/// Duration flags take Go's `time.ParseDuration` syntax, as the Go relay's did (README: flags
/// keep the Go relay's names and syntax). Each case below is what Go answers
/// (pkg.go.dev/time#ParseDuration), in milliseconds; the one deliberate difference is the
/// resolution: the relay rounds to the nearest millisecond where Go keeps nanoseconds.
@Suite struct ParseGoDurationTests {
    @Test(arguments: [
        ("30s", 30_000), ("500ms", 500), ("1m30s", 90_000), ("2h", 7_200_000), ("1.5h", 5_400_000),
        ("2h45m", 9_900_000), ("1h0m0.5s", 3_600_500), ("300ms", 300), ("1m1m", 120_000),
        (".5s", 500), ("5.s", 5_000), ("0.25m", 15_000), ("007s", 7_000), ("0s", 0), ("0.0s", 0),
        ("0", 0), ("+0", 0), ("-0", 0), ("+30s", 30_000), ("-30s", -30_000), ("-1.5h", -5_400_000),
        ("1500us", 2), ("1500µs", 2), ("1500μs", 2), ("2000000ns", 2), ("1s500000us", 1_500),
        ("1.0000001s", 1_000),
        ("2562047h", 9_223_369_200_000), ("9223372036854ms", 9_223_372_036_854),  // near 2^63-1 ns
    ] as [(String, Int64)])
    func goAcceptsThis(_ text: String, _ ms: Int64) {
        #expect(parseGoDuration(text) == ms)
    }

    /// Go keeps these below a millisecond; here they round.
    @Test func subMillisecondValuesRoundToTheNearestMillisecond() {
        #expect(parseGoDuration("100us") == 0)
        #expect(parseGoDuration("499999ns") == 0)
        #expect(parseGoDuration("500000ns") == 1)
        #expect(parseGoDuration("1.4ms") == 1)
        #expect(parseGoDuration("1.6ms") == 2)
        #expect(parseGoDuration("-1.6ms") == -2)
    }

    @Test(arguments: [
        "", "-", "+", ".", ".s", "s", "30", "00", "1.5", "0.0",  // no number, or no unit (only a bare 0 needs none)
        "30S", "1sec", "1d", "1w", "1y", "5 s", " 5s", "5s ", "1h 30m", "1e3s", "1,5s", "0x10s",  // unknown units, spaces
        "1.2.3s", "1..5s", "--5s", "+-5s", "5s-1s", "1h-30m",  // malformed numbers, inner signs
        "2562048h", "9223372037s", "9223372036855ms", "99999999999999999999s",  // past 2^63-1 ns
        String(repeating: "9", count: 400) + "h",  // the number itself overflows a Double
        "３s", "٣s",  // non-ASCII digits
    ])
    func goRefusesThis(_ text: String) {
        #expect(parseGoDuration(text) == nil)
    }

    /// Every duration flag: zero and negatives are refused with the flag named; Go's units work.
    @Test func durationFlagsNeedAPositiveGoDuration() throws {
        let base = ["--insecure-listen", "127.0.0.1:8080"]
        for flag in ["grace", "heartbeat-interval", "heartbeat-timeout", "probe-timeout", "drain-deadline", "header-timeout"] {
            for bad in ["0", "-5s", "100us", "5", "5x", "2562048h"] {
                guard case .failure(let r) = RelayConfig.parse(base + ["--\(flag)", bad]) else {
                    Issue.record("--\(flag) \(bad) was accepted")
                    continue
                }
                #expect(r.description.contains("--\(flag)") && r.description.contains("want a duration"))
            }
        }
        guard case .success(.run(let c)) = RelayConfig.parse(base + ["--grace", "+1m30s", "--header-timeout", "2500000us"]) else {
            Issue.record("Go durations refused")
            return
        }
        #expect(c.graceMs == 90_000)
        #expect(c.connection.headerTimeoutMs == 2_500)
    }
}
