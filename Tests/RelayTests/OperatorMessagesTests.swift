import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayTransport
@testable import RelayOperations

/// What an operator reads when something is wrong at boot: --help, bind failures and the
/// --runtime-dir rule (the built binary is checked end to end by tests/interop/test_operations.py).
@Suite struct OperatorMessagesTests {
    @Test func helpNamesTheEnvironmentAndEndpointsAndNoInternalDocuments() {
        let text = RelayConfig.usageText
        for v in ["PYRYCODE_RELAY_PRODUCTION=1", "PYRYCODE_RELAY_SINGLE_INSTANCE=1", "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true",
                  "PYRYCODE_RELAY_FCM_CREDENTIALS=", "PYRYCODE_RELAY_FCM_BASE_URL=", "PYRYCODE_RELAY_FLY_DNS_SERVER=", "RUNTIME_DIRECTORY", "NOTIFY_SOCKET",
                  "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "FLY_APP_NAME",
                  "FLY_PRIVATE_IP", "KUBERNETES_SERVICE_HOST", "HOSTNAME"] {
            #expect(text.contains("\n  \(v)") || text.contains(", \(v)"), "\(v)")
        }
        for e in ["/v1/server", "/v1/client", "/healthz", "/metrics"] { #expect(text.contains("\n  \(e) "), "\(e)") }
        for word in ["SPEC", "DESIGN.md", "BENCH.md", "§"] { #expect(!text.contains(word), "\(word)") }
    }

    @Test func domainAloneSelectsACMEWithItsDefaults() throws {
        guard case .success(.run(let c)) = RelayConfig.parse(["--domain", "relay.example.com"]) else {
            Issue.record("--domain alone must start ACME mode"); return
        }
        #expect(c.acmeDirectory == HTTPSURL("https://acme-v02.api.letsencrypt.org/directory"))
        #expect(c.certCache == "$HOME/.pyrycode-relay/certs")
        #expect(c.httpListen != nil)
        #expect(c.tlsCert == nil && c.acmeRenewBeforeMs == 720 * 3_600_000 && c.acmeRetryMinMs == 60_000)
        let text = RelayConfig.usageText
        for flag in ["http-listen", "cert-cache", "acme-directory", "acme-renew-before", "acme-retry-min"] {
            let entry = text.components(after: "  --\(flag) VALUE\n")
            #expect(entry.hasPrefix("        ACME mode: "), "\(flag): \(entry.prefix(80))")
        }
    }

    @Test func acmeFlagsAreValidated() {
        func refusal(_ args: [String]) -> String? {
            if case .failure(let r) = RelayConfig.parse(args) { return r.description }
            return nil
        }
        #expect(refusal(["--domain", "relay.example.com", "--acme-directory", "http://ca.example/dir"])
            == "invalid value \"http://ca.example/dir\" for --acme-directory: want an https:// URL")
        for bad in ["127.0.0.1", "localhost", "-a.example.com", "a..example.com", "relay_1.example.com"] {
            #expect(refusal(["--domain", bad]) == "invalid value \"\(bad)\" for --domain: ACME needs a DNS name such as relay.example.com", "\(bad)")
        }
        #expect(refusal(["--domain", "relay.example.com", "--acme-renew-before", "soon"])
            == "invalid value \"soon\" for --acme-renew-before: want a duration such as 30s or 500ms")
        // With --tls-cert the domain is only the Host check: any name is fine, and no ACME.
        if case .success(.run(let c)) = RelayConfig.parse(["--domain", "localhost", "--tls-cert", "c", "--tls-key", "k"]) {
            #expect(c.acmeDirectory == nil)
        } else { Issue.record("--domain localhost with files must parse") }
        // "" disables --http-listen (tls-alpn-01 only).
        if case .success(.run(let c)) = RelayConfig.parse(["--domain", "relay.example.com", "--http-listen", ""]) {
            #expect(c.httpListen == nil)
        } else { Issue.record("--http-listen \"\" must parse") }
    }

    @Test func bindFailureNamesTheFlagAndAddress() throws {
        var any = SocketAddress(ip: "127.0.0.1", port: 1)!
        // Port 0: the kernel picks a free one (as LoopbackHarness does).
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        let taken = try Socket.listen(on: any)
        let address = Socket.localAddress(taken.raw)
        #expect(throws: ListenFailure.self) { try bindListener("metrics-listen", address) }
        do { _ = try bindListener("metrics-listen", address) } catch {
            #expect(error.description == "listen --metrics-listen \(address): address already in use")
        }
        withExtendedLifetime(taken) {}
        #expect(ListenFailure.words(Errno(EACCES), port: 443)
            == "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE or root)")
        #expect(ListenFailure.words(Errno(EACCES), port: 8443) == "permission denied")
    }

    @Test func missingRuntimeDirIsCreatedPrivateOrRefused() {
        let base = TempDir()
        let dir = base.path + "/run"
        #expect(RuntimeDirectory.prepare(dir) == nil)
        var st = stat()
        #expect(stat(dir, &st) == 0 && st.st_mode & 0o7777 == 0o700 && st.st_mode & UInt32(S_IFMT) == UInt32(S_IFDIR))
        #expect(RuntimeDirectory.prepare(dir) == nil)  // already there
        #expect(RuntimeDirectory.prepare(base.path + "/no/such") == "--runtime-dir \(base.path)/no/such: cannot create it: "
            + "No such file or directory")
        let file = base.path + "/file"
        close(pyry_open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600))
        #expect(RuntimeDirectory.prepare(file) == "--runtime-dir \(file): exists and is not a directory")
        rmdir(dir)
    }
}

private extension String {
    /// The text after the first `marker`, or "" when it does not occur.
    func components(after marker: String) -> Substring {
        guard let r = range(of: marker) else { return "" }
        return self[r.upperBound...]
    }
}
