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

/// The relay process: the boot order of docs/operations.md, the loop, and the signals of docs/operations.md.
/// `main` runs the boot steps (RelayApp+Boot.swift) in that order; each returns what the next
/// needs, or stops the boot with its documented exit code (`BootStop`).
public enum RelayApp {
    /// Runs the relay; returns the process exit code.
    public static func main(arguments: [String]) -> Int32 {
        reserveStandardDescriptors()
        do throws(BootStop) {
            var config = try parseFlags(arguments)                                     // step 1
            let environment = try readEnvironment(config: &config)                     // step 2
            let signals = try blockSignals()
            let instance = try checkSingleInstance(config: config, environment)        // step 3
            try checkProductionGuards(config: config, environment)                     // step 4
            let tls = try loadTLSMaterial(config: config, environment)                 // step 5
            let services = try startServices(config: config, environment)
            let bound = try bindListeners(config: config, environment, tls, services)  // step 6
            try handleSignals(signals, config: config, tls, services, bound)
            return run(config: config, services, bound, holding: instance)             // step 7
        } catch {
            writeBootStop(error)
            return error.code
        }
    }

    /// Step 7: `READY=1`, `relay_started`, the loop; after it, the last log lines. From here on a
    /// log line never blocks the loop: it waits in a bounded buffer when stderr is slow
    /// (docs/operations.md, "Log volume"). Lines before this point were written straight to
    /// fd 2, blocking, as nothing was being served yet. Returns the exit code: 0, or 1 after a
    /// forced shutdown. `instance` (the same-host lock) is held until the loop has stopped.
    package static func run(config: RelayConfig, _ services: Services, _ bound: BoundListeners,
                    holding instance: SingleInstanceOutcome) -> Int32 {
        let reactor = services.reactor, relay = services.relay
        let logOutput = LogOutput.stderr(reactor: reactor, capacity: config.logBufferBytes)
        Log.output = logOutput
        let listenText = bound.listeners.prefix(bound.publicCount).map { $0.address.description }.joined(separator: ",")
        let mode = config.insecureListen != nil ? "insecure" : bound.acme != nil ? "acme" : "tls"
        let metricsText = config.metricsListen?.description ?? "off"
        let pushText = relay.push == nil ? "off" : "fcm"
        if let shard = config.shard {
            Log.info("relay_started", ["listen": listenText, "mode": mode, "version": RelayConfig.version,
                                       "metrics": metricsText, "push": pushText, "shard": shard.description])
        } else {
            Log.info("relay_started", ["listen": listenText, "mode": mode, "version": RelayConfig.version,
                                       "metrics": metricsText, "push": pushText])
        }
        bound.systemd?.ready()
        bound.acme?.start()
        reactor.run()
        withExtendedLifetime(instance) {}
        Log.info("relay_stopped", ["count": String(relay.liveConnectionCount)])
        // The last lines (and the dropped-lines summary) get a bounded blocking wait.
        Log.output = nil
        logOutput.finish(timeoutMs: Limits.logExitFlushMs)
        return services.exitCode.value
    }
}

/// The bound on a graceful drain (docs/operations.md): when it passes, the loop stops with
/// connections still open.
package final class DrainDeadline: TimerOwner {
    package enum TimerKind: UInt8 {
        case passed
    }
    private let reactor: Reactor
    private let liveConnections: () -> Int
    private lazy var timers = reactor.registerTimers(for: self)

    package init(reactor: Reactor, liveConnections: @escaping () -> Int) {
        self.reactor = reactor
        self.liveConnections = liveConnections
    }

    package func arm(afterMs: Int64) { timers.schedule(.passed, at: reactor.now + afterMs) }

    package func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        Log.warn("drain_deadline_passed", ["count": String(liveConnections())])
        reactor.stop()
    }
}

/// Delivers signals from the signalfd to a closure on the loop.
package final class SignalHandler: EventHandler {
    package let channel: SignalChannel
    package let onSignal: (Int32) -> Void
    package init(channel: SignalChannel, onSignal: @escaping (Int32) -> Void) {
        self.channel = channel
        self.onSignal = onSignal
    }
    override package func handleEvent(_ events: UInt32) {
        while let s = channel.next() { onSignal(s) }
    }
}

package func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { p in _ = write(2, p.baseAddress, p.count) }
}

package func writeStdout(_ s: String) {
    var s = s
    s.withUTF8 { p in _ = write(1, p.baseAddress, p.count) }
}

// MARK: ACME mode (docs/operations.md "ACME")

/// `--cert-cache` with a leading `$HOME` expanded, created or checked (CertCache.prepare).
package func prepareCertCache(_ raw: String, env: [String: String]) -> Result<CertCache, RelayConfig.Refusal> {
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
package func bindChallengeListener(_ a: SocketAddress, manager: ACMEManager, relay: RelayService, context: IOContext) -> Listener? {
    let service = HTTPChallengeService(context: context, settings: relay.settings.connection, acme: manager) {
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
