import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayLog
import RelayTransport
import RelayPush
import RelayACME
import Relaying
import RelayCore

/// Why the boot stopped before the loop: the exit code of docs/operations.md § Boot order and
/// the operator's text, written as is (0: `--help`/`--version` on stdout; 2: a refused
/// configuration, which a restart cannot fix; 1: a runtime failure, which one may).
package struct BootStop: Error {
    package let code: Int32
    package let text: String

    /// Exit 2, one line on stderr.
    package static func refused(_ line: String) -> BootStop { BootStop(code: 2, text: line + "\n") }
    /// Exit 1, one line on stderr.
    package static func failed(_ line: String) -> BootStop { BootStop(code: 1, text: line + "\n") }
}

package func writeBootStop(_ stop: BootStop) {
    if stop.code == 0 { writeStdout(stop.text) } else { writeStderr(stop.text) }
}

/// Step 2's result: the raw and parsed environment and the FCM key it holds.
package struct BootEnvironment {
    package let raw: [String: String]
    package let config: EnvironmentConfig
    package let pushKey: ServiceAccountKey?
}

/// Step 5's result: the TLS contexts new connections take (nil: plain only), and in ACME mode
/// the checked cache directory.
package struct TLSMaterial {
    package let tls: TLSHolder?
    package let acmeCache: CertCache?
}

/// The loop and the services on it, before any listener exists.
package struct Services {
    package let reactor: Reactor
    package let context: IOContext
    package let relay: RelayService
    package let metrics: Metrics
    package let metricsService: MetricsService
    /// What `run` returns: set to 1 by a forced shutdown (the second signal).
    package let exitCode = ExitCode()
}

package final class ExitCode {
    package var value: Int32 = 0
}

/// Step 6's result: every listener (the public ones first), systemd's supervisor, and the ACME
/// manager in ACME mode.
package struct BoundListeners {
    package let listeners: [Listener]
    /// How many of `listeners` are public (logged in `relay_started`); the metrics one is not.
    package let publicCount: Int
    package let acme: ACMEManager?
    package let systemd: SystemdSupervisor?
}

extension RelayApp {
    /// Step 1: the flags. `--help`/`--version` stop with exit 0; a bad flag exits 2 with one line
    /// that names the problem (the whole flag list would scroll it away).
    package static func parseFlags(_ arguments: [String]) throws(BootStop) -> RelayConfig {
        switch RelayConfig.parse(arguments) {
        case .success(.help(let text)):
            throw BootStop(code: 0, text: text)
        case .success(.version(let v)):
            throw BootStop(code: 0, text: v + "\n")
        case .failure(let refusal):
            throw .refused("pyrycode-relay: \(refusal.description)\nrun pyrycode-relay --help for usage")
        case .success(.run(let c)):
            return c
        }
    }

    /// Step 2: the environment (docs/operations.md), the shard (`--shard` or
    /// `PYRYCODE_RELAY_SHARD`, docs/architecture.md "v2 = static shards") and the FCM key's fields
    /// (§ Push: a key that cannot sign would fail every wake). Anything invalid exits 2.
    package static func readEnvironment(config: inout RelayConfig) throws(BootStop) -> BootEnvironment {
        let raw = currentEnvironment()
        let env: EnvironmentConfig
        switch EnvironmentConfig.parse(raw) {
        case .success(let e): env = e
        case .failure(let e): throw .refused(e.message)
        }
        switch ShardAssignment.resolve(flag: config.shard, environment: env.shard) {
        case .success(let shard): config.shard = shard
        case .failure(let refusal): throw .refused("pyrycode-relay: \(refusal.description)")
        }
        if let refusal = ShardAssignment.refusal(config.shard, acme: config.acmeDirectory != nil) {
            throw .refused("pyrycode-relay: \(refusal.description)")
        }
        var pushKey: ServiceAccountKey?
        if let json = env.fcmCredentials {
            switch ServiceAccountKey.parse(json) {
            case .success(let k): pushKey = k
            case .failure(let e):
                throw .refused(EnvironmentError(variable: EnvironmentConfig.fcmCredentialsVar, reason: e.reason).message)
            }
        }
        return BootEnvironment(raw: raw, config: env, pushKey: pushKey)
    }

    /// Signals are blocked before anything else could start a thread (signalfd needs it); exit 1.
    package static func blockSignals() throws(BootStop) -> SignalChannel {
        do { return try SignalChannel([SIGTERM, SIGINT, SIGHUP]) } catch {
            throw .failed("pyrycode-relay: signalfd: \(error)")
        }
    }

    /// Step 3, the first of reactor init: the single-instance self-check, before any socket. A
    /// named --runtime-dir must exist for the same-host lock: it is created, or the start
    /// refused. A refusal exits 2; the check's own lines go to stderr.
    package static func checkSingleInstance(config: RelayConfig, _ environment: BootEnvironment) throws(BootStop) -> SingleInstanceOutcome {
        let env = environment.config
        if let dir = config.runtimeDir, !env.bypassSingleInstance {
            if let refusal = RuntimeDirectory.prepare(dir) { throw .refused("pyrycode-relay: \(refusal)") }
        }
        switch runSingleInstanceCheck(env: env, rawEnv: environment.raw, runtimeDirFlag: config.runtimeDir, shard: config.shard) {
        case .failure(let refusal):
            throw .refused(refusal.message)
        case .success(let outcome):
            for line in outcome.logLines { writeStderr(line.hasSuffix("\n") ? line : line + "\n") }
            return outcome
        }
    }

    /// Step 4: production guards and capabilities (docs/operations.md); a refusal exits 2.
    package static func checkProductionGuards(config: RelayConfig, _ environment: BootEnvironment) throws(BootStop) {
        if let refusal = ProductionGuards.check(env: environment.config, config: config) {
            throw .refused("pyrycode-relay: \(refusal)")
        }
    }

    /// Step 5: TLS material (docs/operations.md). A bad file exits 1 naming the file and
    /// OpenSSL's reason. ACME mode: the cache directory is checked now (exit 1); the certificate
    /// comes later, from the cache or the CA, and handshakes fail with an alert until then
    /// (docs/operations.md "ACME").
    package static func loadTLSMaterial(config: RelayConfig, _ environment: BootEnvironment) throws(BootStop) -> TLSMaterial {
        var tls: TLSHolder?
        if let cert = config.tlsCert, let key = config.tlsKey {
            do { tls = TLSHolder(try TLSContext(certFile: cert, keyFile: key)) } catch {
                throw .failed("pyrycode-relay: tls: \(error.description)")
            }
        }
        var acmeCache: CertCache?
        if config.acmeDirectory != nil, let raw = config.certCache {
            switch prepareCertCache(raw, env: environment.raw) {
            case .failure(let refusal): throw .failed("pyrycode-relay: \(refusal.description)")
            case .success(let cache): acmeCache = cache
            }
            do { tls = TLSHolder(try TLSContext.withoutCertificate()) } catch {
                throw .failed("pyrycode-relay: tls: \(error.description)")
            }
        }
        return TLSMaterial(tls: tls, acmeCache: acmeCache)
    }

    /// The loop, the relay service, /metrics, and push when an FCM key is set (docs/protocol.md
    /// §9: wakes go out through the reactor's own HTTPS client). epoll or the push client
    /// failing exits 1; a send URL that cannot be built from `PYRYCODE_RELAY_FCM_BASE_URL` exits 2.
    package static func startServices(config: RelayConfig, _ environment: BootEnvironment) throws(BootStop) -> Services {
        let reactor: Reactor
        do { reactor = try Reactor() } catch {
            throw .failed("pyrycode-relay: epoll: \(error)")
        }
        let context = IOContext(reactor: reactor)
        let relay = RelayService(settings: config.relaySettings, context: context)
        let metrics = Metrics(relay: relay.metrics)
        let metricsService = MetricsService(context: context, relay: relay, metrics: metrics)
        if let pushKey = environment.pushKey {
            let base = environment.config.fcmBaseURL ?? PushMessages.defaultBaseURL
            let client: HTTPSClient
            do { client = try HTTPSClient(reactor: reactor) } catch {
                throw .failed("pyrycode-relay: push: \(error)")
            }
            guard let push = PushService(key: pushKey, baseURL: base, client: client, now: { reactor.now }) else {
                let e = EnvironmentError(variable: EnvironmentConfig.fcmBaseURLVar, reason: "the send URL built from it is not valid")
                throw .refused(e.message)
            }
            relay.push = push
        }
        return Services(reactor: reactor, context: context, relay: relay, metrics: metrics, metricsService: metricsService)
    }

    /// Step 6: the listeners, bound or taken from systemd socket activation, and systemd's
    /// READY/STATUS/WATCHDOG/STOPPING supervisor (docs/operations.md). A failure exits 1 naming
    /// the listener and address. In ACME mode the http-01 listener is optional (see
    /// `bindChallengeListener`).
    package static func bindListeners(config: RelayConfig, _ environment: BootEnvironment, _ material: TLSMaterial,
                              _ services: Services) throws(BootStop) -> BoundListeners {
        let reactor = services.reactor, relay = services.relay
        let activation: SocketActivation
        switch SocketActivation.fromEnvironment(environment.raw) {
        case .success(let a): activation = a
        case .failure(let f): throw .failed("pyrycode-relay: \(f)")
        }
        let systemd = SystemdSupervisor(environment: environment.raw, reactor: reactor) {
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
            if let a = config.httpsListen, let tls = material.tls {
                let proxy = config.httpsProxyProtocol
                let socket = try activation.takePublicListener(configured: a) ?? bindListener("https-listen", a)
                listeners.append(try Listener(socket: socket, reactor: reactor) { fd, remote in
                    // New connections take the current pair; a reload does not touch older ones.
                    relay.accept(fd: fd, remote: remote, tls: tls.current, proxyHeader: proxy)
                })
            }
            publicListenerCount = listeners.count
            if let acmeCache = material.acmeCache, let tls = material.tls, let directory = config.acmeDirectory,
               let domain = config.domain {
                // Lower case: DNS names are case-insensitive, and this one names the cache files.
                // Its own client: certificate chains need a larger response cap than push answers.
                let outbound = try HTTPSClient(reactor: reactor, maxResponseBytes: Limits.acmeMaxCertificateBytes)
                let acmeCounters = ACMECounters()
                services.metrics.acme = acmeCounters
                let manager = ACMEManager(domain: domain.lowercased(), directoryURL: directory, cache: acmeCache, tls: tls,
                                          counters: acmeCounters, reactor: reactor, http: outbound,
                                          renewBeforeMs: config.acmeRenewBeforeMs, retryMinMs: config.acmeRetryMinMs)
                acme = manager
                if let a = config.httpListen,
                   let l = bindChallengeListener(a, manager: manager, relay: relay, context: services.context) {
                    listeners.append(l)
                    publicListenerCount = listeners.count
                }
            }
            if let m = config.metricsListen {
                let metricsService = services.metricsService
                listeners.append(try Listener(socket: try bindListener("metrics-listen", m), reactor: reactor) { fd, remote in
                    metricsService.accept(fd: fd, remote: remote)
                })
            }
        } catch let failure as ListenFailure {
            throw .failed("pyrycode-relay: \(failure)")
        } catch {
            throw .failed("pyrycode-relay: listen: \(error)")
        }
        activation.closeUnused()
        return BoundListeners(listeners: listeners, publicCount: publicListenerCount, acme: acme, systemd: systemd)
    }

    /// The signals of docs/operations.md on the loop: SIGHUP reloads the TLS files; SIGTERM or
    /// SIGINT drains, bounded by `--drain-deadline`, and a second one ends at once (exit 1). Also
    /// the process-wide timers: session ticket key rotation (`TLSHolder`) and the drain deadline
    /// (`DrainDeadline`), each a timer owner of its own. Registering the signalfd failing exits 1.
    package static func handleSignals(_ signals: SignalChannel, config: RelayConfig, _ material: TLSMaterial,
                              _ services: Services, _ bound: BoundListeners) throws(BootStop) {
        let reactor = services.reactor, relay = services.relay, tls = material.tls
        let acme = bound.acme, systemd = bound.systemd, listeners = bound.listeners, exitCode = services.exitCode
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
                    exitCode.value = 1
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
            throw .failed("pyrycode-relay: signalfd: \(error)")
        }
        tls?.startTicketRotation(on: reactor)
    }
}
