import CEpoll

/// The relay process: the boot order of docs/operations.md, the loop, and the signals of docs/operations.md.
public enum RelayApp {
    /// Runs the relay; returns the process exit code.
    public static func main(arguments: [String]) -> Int32 {
        reserveStandardDescriptors()

        // 1. Flags.
        var config: RelayConfig
        switch RelayConfig.parse(arguments) {
        case .success(.help(let text)):
            writeStdout(text)
            return 0
        case .success(.version(let v)):
            writeStdout(v + "\n")
            return 0
        case .failure(let refusal):
            // One line that names the problem; the whole flag list would scroll it away.
            writeStderr("pyrycode-relay: \(refusal.description)\nrun pyrycode-relay --help for usage\n")
            return 2
        case .success(.run(let c)):
            config = c
        }

        // 2. Environment (docs/operations.md).
        let rawEnv = currentEnvironment()
        let env: EnvironmentConfig
        switch EnvironmentConfig.parse(rawEnv) {
        case .success(let e): env = e
        case .failure(let e):
            writeStderr("\(e.message)\n")
            return 2
        }
        // Sharded mode (docs/architecture.md, "v2 = static shards"): --shard or PYRYCODE_RELAY_SHARD.
        switch ShardAssignment.resolve(flag: config.shard, environment: env.shard) {
        case .success(let shard): config.shard = shard
        case .failure(let refusal):
            writeStderr("pyrycode-relay: \(refusal.description)\n")
            return 2
        }

        // The FCM key's fields (docs/operations.md § Push): a key that cannot sign would fail every wake.
        var pushKey: ServiceAccountKey?
        if let json = env.fcmCredentials {
            switch ServiceAccountKey.parse(json) {
            case .success(let k): pushKey = k
            case .failure(let e):
                writeStderr(EnvironmentError(variable: EnvironmentConfig.fcmCredentialsVar, reason: e.reason).message + "\n")
                return 2
            }
        }

        // Signals are blocked before anything else could start a thread (signalfd needs it).
        let signals: SignalChannel
        do { signals = try SignalChannel([SIGTERM, SIGINT, SIGHUP]) } catch {
            writeStderr("pyrycode-relay: signalfd: \(error)\n")
            return 1
        }

        // 3. Reactor init, step 1: the single-instance self-check, before any socket. A named
        // --runtime-dir must exist for the same-host lock: it is created, or the start refused.
        if let dir = config.runtimeDir, !env.bypassSingleInstance {
            if let refusal = RuntimeDirectory.prepare(dir) {
                writeStderr("pyrycode-relay: \(refusal)\n")
                return 2
            }
        }
        let instance: SingleInstanceOutcome
        switch runSingleInstanceCheck(env: env, rawEnv: rawEnv, runtimeDirFlag: config.runtimeDir, shard: config.shard) {
        case .failure(let refusal):
            writeStderr(refusal.message + "\n")
            return 2
        case .success(let outcome):
            instance = outcome
            for line in outcome.logLines { writeStderr(line.hasSuffix("\n") ? line : line + "\n") }
        }

        // 4. Production guards and capabilities (docs/operations.md).
        if let refusal = ProductionGuards.check(env: env, config: config) {
            writeStderr("pyrycode-relay: \(refusal)\n")
            return 2
        }

        // 5. TLS material (docs/operations.md): a bad file exits 1 naming the file and OpenSSL's reason.
        var tls: TLSHolder?
        if let cert = config.tlsCert, let key = config.tlsKey {
            do { tls = TLSHolder(try TLSContext(certFile: cert, keyFile: key)) } catch {
                writeStderr("pyrycode-relay: tls: \(error.description)\n")
                return 1
            }
        }
        // ACME mode: the cache directory is checked now; the certificate comes later, from the
        // cache or the CA, and handshakes fail with an alert until then (docs/operations.md "ACME").
        var acmeCache: CertCache?
        if config.acmeDirectory != nil, let raw = config.certCache {
            switch prepareCertCache(raw, env: rawEnv) {
            case .failure(let refusal):
                writeStderr("pyrycode-relay: \(refusal.description)\n")
                return 1
            case .success(let cache): acmeCache = cache
            }
            do { tls = TLSHolder(try TLSContext.withoutCertificate()) } catch {
                writeStderr("pyrycode-relay: tls: \(error.description)\n")
                return 1
            }
        }

        // 6. Listeners.
        let reactor: Reactor
        do { reactor = try Reactor() } catch {
            writeStderr("pyrycode-relay: epoll: \(error)\n")
            return 1
        }
        let context = IOContext(reactor: reactor)
        let relay = RelayService(config: config, context: context)
        let metricsService = MetricsService(context: context, relay: relay)
        if let pushKey {
            // docs/protocol.md §9: wakes go out through the reactor's own HTTPS client.
            let base = env.fcmBaseURL ?? PushMessages.defaultBaseURL
            let client: HTTPSClient
            do { client = try HTTPSClient(reactor: reactor) } catch {
                writeStderr("pyrycode-relay: push: \(error)\n")
                return 1
            }
            guard let push = PushService(key: pushKey, baseURL: base, client: client, now: { reactor.now }) else {
                let e = EnvironmentError(variable: EnvironmentConfig.fcmBaseURLVar, reason: "the send URL built from it is not valid")
                writeStderr(e.message + "\n")
                return 2
            }
            relay.push = push
        }
        // systemd integration (docs/operations.md): inherited listeners, and READY/STATUS/WATCHDOG/STOPPING.
        let activation: SocketActivation
        switch SocketActivation.fromEnvironment(rawEnv) {
        case .success(let a): activation = a
        case .failure(let f):
            writeStderr("pyrycode-relay: \(f)\n")
            return 1
        }
        let systemd = SystemdSupervisor(environment: rawEnv, reactor: reactor) {
            .init(binaries: relay.connectedBinaries, phones: relay.connectedPhones, connections: relay.liveConnectionCount)
        }
        var listeners: [Listener] = []
        var acme: ACMEManager?
        var publicListenerCount = 0
        do {
            if let a = config.insecureListen {
                let socket = try activation.takePublicListener(configured: a) ?? bindListener("insecure-listen", a)
                listeners.append(try Listener(socket: socket, reactor: reactor) { fd, remote in
                    relay.accept(fd: fd, remote: remote)
                })
            }
            if let a = config.httpsListen, let tls {
                let proxy = config.httpsProxyProtocol
                let socket = try activation.takePublicListener(configured: a) ?? bindListener("https-listen", a)
                listeners.append(try Listener(socket: socket, reactor: reactor) { fd, remote in
                    // New connections take the current pair; a reload does not touch older ones.
                    relay.accept(fd: fd, remote: remote, tls: tls.current, proxyHeader: proxy)
                })
            }
            publicListenerCount = listeners.count
            if let acmeCache, let tls, let directory = config.acmeDirectory, let domain = config.domain {
                // Lower case: DNS names are case-insensitive, and this one names the cache files.
                // Its own client: certificate chains need a larger response cap than push answers.
                let outbound = try HTTPSClient(reactor: reactor, maxResponseBytes: Limits.acmeMaxCertificateBytes)
                let manager = ACMEManager(domain: domain.lowercased(), directoryURL: directory, cache: acmeCache, tls: tls,
                                          metrics: relay.metrics, reactor: reactor, http: outbound,
                                          renewBeforeMs: config.acmeRenewBeforeMs, retryMinMs: config.acmeRetryMinMs)
                acme = manager
                if let a = config.httpListen, let l = bindChallengeListener(a, manager: manager, relay: relay, context: context) {
                    listeners.append(l)
                    publicListenerCount = listeners.count
                }
            }
            if let m = config.metricsListen {
                listeners.append(try Listener(socket: try bindListener("metrics-listen", m), reactor: reactor) { fd, remote in
                    metricsService.accept(fd: fd, remote: remote)
                })
            }
        } catch let failure as ListenFailure {
            writeStderr("pyrycode-relay: \(failure)\n")
            return 1
        } catch {
            writeStderr("pyrycode-relay: listen: \(error)\n")
            return 1
        }
        activation.closeUnused()

        var exitCode: Int32 = 0
        let drainDeadline = DrainDeadline(reactor: reactor) { relay.liveConnectionCount }
        let signalHandler = SignalHandler(channel: signals) { signo in
            switch signo {
            case SIGHUP:
                guard let tls, acme == nil else {
                    Log.info("sighup_ignored", ["reason": acme == nil ? "no TLS files to reload" : "ACME manages the certificate"])
                    return
                }
                tls.reload()
            default:
                if relay.draining {
                    // A second signal ends at once (docs/operations.md).
                    Log.warn("shutdown_forced", ["signal": String(signo)])
                    exitCode = 1
                    reactor.stop()
                    return
                }
                Log.info("shutdown_started", ["signal": String(signo), "count": String(relay.liveConnectionCount)])
                systemd?.stopping()
                for l in listeners { l.close() }
                relay.recountDescriptors()
                relay.beginDrain()
                drainDeadline.arm(afterMs: config.drainDeadlineMs)
            }
        }
        relay.onDrained = { reactor.stop() }
        do { _ = try reactor.register(fd: signals.fd, events: Reactor.readable, handler: signalHandler) } catch {
            writeStderr("pyrycode-relay: signalfd: \(error)\n")
            return 1
        }

        tls?.startTicketRotation(on: reactor)

        // 7. Ready. From here on a log line never blocks the loop: it waits in a bounded buffer
        // when stderr is slow (docs/operations.md, "Log volume"). Lines before this point were
        // written straight to fd 2, blocking, as nothing was being served yet.
        let logOutput = LogOutput.stderr(reactor: reactor, capacity: config.logBufferBytes)
        Log.output = logOutput
        let listenText = listeners.prefix(publicListenerCount).map { $0.address.description }.joined(separator: ",")
        let mode = config.insecureListen != nil ? "insecure" : acme != nil ? "acme" : "tls"
        let metricsText = config.metricsListen?.description ?? "off"
        let pushText = relay.push == nil ? "off" : "fcm"
        if let shard = config.shard {
            Log.info("relay_started", ["listen": listenText, "mode": mode, "version": RelayConfig.version,
                                       "metrics": metricsText, "push": pushText, "shard": shard.description])
        } else {
            Log.info("relay_started", ["listen": listenText, "mode": mode, "version": RelayConfig.version,
                                       "metrics": metricsText, "push": pushText])
        }
        systemd?.ready()
        acme?.start()
        reactor.run()
        withExtendedLifetime(instance) {}
        Log.info("relay_stopped", ["count": String(relay.liveConnectionCount)])
        // The last lines (and the dropped-lines summary) get a bounded blocking wait.
        Log.output = nil
        logOutput.finish(timeoutMs: Limits.logExitFlushMs)
        return exitCode
    }
}

/// The TLS listener's current context; SIGHUP swaps it (docs/operations.md § Certificate renewal).
final class TLSHolder: TimerOwner {
    enum TimerKind: UInt8 {
        /// Every `TLSContext.ticketKeyRotationMs`.
        case ticketRotation
    }
    private(set) var current: TLSContext
    private var timers: TimerHandle<TimerKind>?

    init(_ context: TLSContext) { current = context }

    /// ACME: a new pair for new connections (existing ones keep theirs, as with a reload).
    func install(_ context: TLSContext) { current = context }

    /// Loads the same files again. A good pair serves new connections from now on; a bad one
    /// leaves the old pair in place. Existing connections keep their own SSL_CTX reference.
    func reload() {
        do {
            current = try TLSContext(certFile: current.certFile, keyFile: current.keyFile)
            Log.info("tls_reloaded")
        } catch {
            Log.error("tls_reload_failed", ["err": error.description])
        }
    }

    func startTicketRotation(on reactor: Reactor) {
        let handle = reactor.registerTimers(for: self)
        timers = handle
        handle.schedule(.ticketRotation, at: reactor.now + TLSContext.ticketKeyRotationMs)
    }

    func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        do { try current.rotateTicketKeys() } catch {
            Log.error("tls_ticket_rotation_failed", ["err": error.description])
        }
        timers?.schedule(.ticketRotation, at: now + TLSContext.ticketKeyRotationMs)
    }
}

/// The bound on a graceful drain (docs/operations.md): when it passes, the loop stops with
/// connections still open.
final class DrainDeadline: TimerOwner {
    enum TimerKind: UInt8 {
        case passed
    }
    private let reactor: Reactor
    private let liveConnections: () -> Int
    private lazy var timers = reactor.registerTimers(for: self)

    init(reactor: Reactor, liveConnections: @escaping () -> Int) {
        self.reactor = reactor
        self.liveConnections = liveConnections
    }

    func arm(afterMs: Int64) { timers.schedule(.passed, at: reactor.now + afterMs) }

    func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        Log.warn("drain_deadline_passed", ["count": String(liveConnections())])
        reactor.stop()
    }
}

/// Delivers signals from the signalfd to a closure on the loop.
final class SignalHandler: EventHandler {
    let channel: SignalChannel
    let onSignal: (Int32) -> Void
    init(channel: SignalChannel, onSignal: @escaping (Int32) -> Void) {
        self.channel = channel
        self.onSignal = onSignal
    }
    func handleEvent(_ events: UInt32) {
        while let s = channel.next() { onSignal(s) }
    }
}

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { p in _ = write(2, p.baseAddress, p.count) }
}

func writeStdout(_ s: String) {
    var s = s
    s.withUTF8 { p in _ = write(1, p.baseAddress, p.count) }
}

// MARK: ACME mode (docs/operations.md "ACME")

/// `--cert-cache` with a leading `$HOME` expanded, created or checked (CertCache.prepare).
func prepareCertCache(_ raw: String, env: [String: String]) -> Result<CertCache, RelayConfig.Refusal> {
    var path = raw
    if raw.hasPrefix("$HOME") {
        guard let home = env["HOME"], !home.isEmpty else {
            return .failure(.init(description: "--cert-cache \(raw): HOME is not set; give --cert-cache an absolute path"))
        }
        path = home + raw.dropFirst(5)
    }
    if let refusal = CertCache.prepare(path) { return .failure(.init(description: refusal)) }
    return .success(CertCache(directory: path))
}

/// The http-01 listener. Port 80 is optional (tls-alpn-01 needs only the TLS port), so a bind
/// failure is logged and the relay runs without it.
func bindChallengeListener(_ a: SocketAddress, manager: ACMEManager, relay: RelayService, context: IOContext) -> Listener? {
    let service = HTTPChallengeService(context: context, settings: relay.config.connection, acme: manager) {
        relay.healthResponse(close: true)
    }
    do {
        let l = try Listener(socket: try bindListener("http-listen", a), reactor: context.reactor) { fd, remote in
            service.accept(fd: fd, remote: remote)
        }
        manager.httpListenerReady = true
        return l
    } catch {
        Log.warn("http_listen_failed", ["listen": a.description, "err": "\(error)"])
        return nil
    }
}
