import CEpoll
import Testing
@testable import RelayOperations

/// docs/architecture.md (v1 = single-instance)'s decision over every combination of the switches and the three signals' answers.
/// The expected outcome comes from a reference written as one boolean formula per outcome,
/// not from the implementation's ordered if-chain.
@Suite struct SingleInstanceDecisionTests {
    enum Cell: CaseIterable { case absent, single, multiple, unknown }

    static func answer(_ c: Cell) -> ReplicaSignalAnswer? {
        switch c {
        case .absent: nil
        case .single: .single(evidence: "s")
        case .multiple: .multiple(evidence: "m")
        case .unknown: .unknown(evidence: "u")
        }
    }

    /// Which rule decides, in the reference's own terms.
    enum Expected: Equatable { case bypass, start, refuseMultiple(String), refusePlatformUnknown(String), refuseProduction }

    static func reference(bypass: Bool, assert: Bool, production: Bool,
                          sameHost: Cell, fly: Cell, k8s: Cell) -> Expected {
        let cells = [("same_host", sameHost), ("kubernetes", k8s), ("fly", fly)]
        let firstMultiple = cells.first { $0.1 == .multiple }?.0
        // Only platform signals' unknown counts; same_host unknown never refuses on its own.
        let firstPlatformUnknown = cells.dropFirst().first { $0.1 == .unknown }?.0
        let refuses = !bypass && (firstMultiple != nil || (!assert && (firstPlatformUnknown != nil || production)))
        if bypass { return .bypass }
        if !refuses { return .start }
        if let m = firstMultiple { return .refuseMultiple(m) }
        if let u = firstPlatformUnknown, !assert { return .refusePlatformUnknown(u) }
        return .refuseProduction
    }

    @Test func everyCombination() {
        var checked = 0
        for bypass in [false, true] { for assert in [false, true] { for production in [false, true] {
            for sh in Cell.allCases { for fly in Cell.allCases { for k8s in Cell.allCases {
                var env = EnvironmentConfig()
                env.bypassSingleInstance = bypass
                env.assertSingleInstance = assert
                env.production = production
                var answers: [SignalReport] = []
                if let a = Self.answer(sh) { answers.append(SignalReport(signal: "same_host", isPlatform: false, answer: a)) }
                if let a = Self.answer(k8s) { answers.append(SignalReport(signal: "kubernetes", isPlatform: true, answer: a)) }
                if let a = Self.answer(fly) { answers.append(SignalReport(signal: "fly", isPlatform: true, answer: a)) }
                let got = decideSingleInstance(env: env, answers: answers)
                let want = Self.reference(bypass: bypass, assert: assert, production: production,
                                          sameHost: sh, fly: fly, k8s: k8s)
                let ctx = Comment(rawValue: "bypass=\(bypass) assert=\(assert) prod=\(production) sh=\(sh) fly=\(fly) k8s=\(k8s)")
                switch (want, got) {
                case (.bypass, .bypass): break
                case (.start, .start(let r)): #expect(r == answers, ctx)
                case (.refuseMultiple(let s), .refuse(let reason, let r)):
                    #expect(reason == "\(s) signal saw another replica", ctx)
                    #expect(r == answers, ctx)
                case (.refusePlatformUnknown(let s), .refuse(let reason, _)):
                    #expect(reason == "\(s) signal cannot count replicas and PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true is not set", ctx)
                case (.refuseProduction, .refuse(let reason, _)):
                    #expect(reason == "PYRYCODE_RELAY_PRODUCTION=1 requires PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true", ctx)
                default:
                    Issue.record("want \(want), got \(got)", sourceLocation: #_sourceLocation)
                }
                checked += 1
            }}}
        }}}
        #expect(checked == 2 * 2 * 2 * 4 * 4 * 4)
    }

    @Test func sameHostUnknownAloneStarts() {
        let r = [SignalReport(signal: "same_host", isPlatform: false, answer: .unknown(evidence: "no runtime directory"))]
        #expect(decideSingleInstance(env: EnvironmentConfig(), answers: r) == .start(report: r))
    }

    @Test func multipleRefusesEvenWithAssertion() {
        var env = EnvironmentConfig()
        env.assertSingleInstance = true
        let r = [SignalReport(signal: "same_host", isPlatform: false, answer: .multiple(evidence: "pid 7"))]
        #expect(decideSingleInstance(env: env, answers: r) == .refuse(reason: "same_host signal saw another replica", report: r))
    }
}

/// docs/operations.md: unset or exactly the accepted value; anything else names the variable, exit 2.
@Suite struct EnvironmentConfigTests {
    @Test func unsetIsDefault() throws {
        let c = try EnvironmentConfig.parse(["PATH": "/bin", "PYRYCODE_RELAY_OTHER": "x"]).get()
        #expect(c == EnvironmentConfig())
    }

    @Test func acceptedValues() throws {
        let c = try EnvironmentConfig.parse([
            "PYRYCODE_RELAY_PRODUCTION": "1", "PYRYCODE_RELAY_SINGLE_INSTANCE": "1",
            "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE": "true", "PYRYCODE_RELAY_FCM_CREDENTIALS": "{\"k\":1}",
            "PYRYCODE_RELAY_FLY_DNS_SERVER": "[::1]:5353",
        ]).get()
        #expect(c.production && c.bypassSingleInstance && c.assertSingleInstance)
        #expect(c.fcmCredentials == "{\"k\":1}")
        #expect(c.flyDNSServer == "[::1]:5353")
        #expect(c.flyDNSServerAddress?.description == "[::1]:5353")
    }

    static func message(_ env: [String: String]) -> String? {
        if case .failure(let e) = EnvironmentConfig.parse(env) { return e.message }
        return nil
    }

    @Test(arguments: ["PYRYCODE_RELAY_PRODUCTION", "PYRYCODE_RELAY_SINGLE_INSTANCE"])
    func oneFlags(_ name: String) {
        let p = "relay: invalid env-var config: \(name): "
        #expect(Self.message([name: ""]) == p + "empty value; expected \"1\" or unset")
        #expect(Self.message([name: "0"]) == p + "malformed value; expected \"1\" or unset")
        #expect(Self.message([name: "yes"]) == p + "malformed value; expected \"1\" or unset")
        #expect(Self.message([name: "TRUE"]) == p + "malformed value; expected \"1\" or unset")
        #expect(Self.message([name: "true"]) == p + "malformed value; expected \"1\" or unset")
        #expect(Self.message([name: " 1"]) == p + "malformed value (surrounding whitespace); expected \"1\" or unset")
        #expect(Self.message([name: "1\n"]) == p + "malformed value (surrounding whitespace); expected \"1\" or unset")
    }

    @Test func assertionFlag() {
        let p = "relay: invalid env-var config: PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE: "
        let n = "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE"
        #expect(Self.message([n: ""]) == p + "empty value; expected \"true\" or unset")
        #expect(Self.message([n: "0"]) == p + "malformed value; expected \"true\" or unset")
        #expect(Self.message([n: "1"]) == p + "malformed value; expected \"true\" or unset")
        #expect(Self.message([n: "yes"]) == p + "malformed value; expected \"true\" or unset")
        #expect(Self.message([n: "TRUE"]) == p + "malformed value (wrong case); expected \"true\" or unset")
        #expect(Self.message([n: " 1"]) == p + "malformed value; expected \"true\" or unset")
        #expect(Self.message([n: " true"]) == p + "malformed value (surrounding whitespace); expected \"true\" or unset")
    }

    @Test func fcmCredentialsEmptyIsRefusedAndNeverEchoed() throws {
        #expect(Self.message(["PYRYCODE_RELAY_FCM_CREDENTIALS": ""])
            == "relay: invalid env-var config: PYRYCODE_RELAY_FCM_CREDENTIALS: empty value; expected a service-account JSON key or unset")
        let secret = "{\"private_key\":\"SECRET-KEY-MATERIAL\"}"
        let c = try EnvironmentConfig.parse(["PYRYCODE_RELAY_FCM_CREDENTIALS": secret]).get()
        #expect(!c.description.contains("SECRET"))
        var dumped = ""
        dump(c, to: &dumped)
        #expect(!dumped.contains("SECRET"))
    }

    @Test func flyDNSServer() {
        let p = "relay: invalid env-var config: PYRYCODE_RELAY_FLY_DNS_SERVER: "
        let bad = "malformed value; expected host:port with an IPv4 or [IPv6] literal host and port 1-65535"
        let n = "PYRYCODE_RELAY_FLY_DNS_SERVER"
        #expect(Self.message([n: ""]) == p + "empty value; expected host:port or unset")
        for v in ["127.0.0.1", ":53", "example.com:53", "::1:53", "127.0.0.1:0", "127.0.0.1:70000", " 127.0.0.1:53"] {
            #expect(Self.message([n: v]) == p + bad, Comment(rawValue: v))
        }
        for v in ["127.0.0.1:53", "[fdaa::3]:53", "10.0.0.1:5353"] {
            #expect(Self.message([n: v]) == nil, Comment(rawValue: v))
        }
    }

    @Test func firstInvalidInTableOrderWins() {
        #expect(Self.message(["PYRYCODE_RELAY_FCM_CREDENTIALS": "", "PYRYCODE_RELAY_PRODUCTION": "0"])
            == "relay: invalid env-var config: PYRYCODE_RELAY_PRODUCTION: malformed value; expected \"1\" or unset")
    }

    @Test func currentEnvironmentReadsEnviron() {
        let env = currentEnvironment()
        #expect(env["PATH"] != nil)
        #expect(env["PATH"] == getenvString("PATH"))
    }
}

func getenvString(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
