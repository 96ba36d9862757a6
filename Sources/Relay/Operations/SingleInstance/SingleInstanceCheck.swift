import RelayLog
import RelayCore

/// What a passed check hands back: keep `lock` alive for the process lifetime (dropping it
/// releases `instance.lock`), print `logLines` to stderr.
public struct SingleInstanceOutcome {
    public let lock: InstanceLock?
    public let logLines: [String]
    public let decision: SingleInstanceDecision
}

/// A refused start: print `message` to stderr and exit 2 before binding anything.
public struct SingleInstanceRefusal: Error, Equatable, Sendable {
    /// The exact first line operators and their alerting grep for (the Go relay prints the same).
    public static let headline = "ERROR: multi-instance deploy detected, relay registry is in-memory and cannot share "
        + "state across replicas. Set PYRYCODE_RELAY_SINGLE_INSTANCE=1 to bypass (NOT recommended for production)."
    /// Where deploy/install.sh puts docs/architecture.md (its DOC_DIR; the unit's Documentation=).
    public static let installedArchitectureDoc = "/usr/local/share/doc/pyrycode-relay/architecture.md"
    public static let pointer = pointer(section: "v1 = single-instance")
    /// A sharded relay's refusal points at the section on shards and their per-shard lock.
    public static let shardedPointer = pointer(section: "v2 = static shards")

    package static func pointer(section: String) -> String {
        "see: \(installedArchitectureDoc) (docs/architecture.md in the source tree), section \"\(section)\""
    }

    public let reason: String
    public let report: [SignalReport]
    /// What the operator can do about it, one line (`remedy(for:)`).
    public let remedy: String
    /// Sharded mode: the `see:` line names the shards section instead.
    public var sharded = false

    /// Headline, the reason, one evidence line per signal, the remedy, the pointer;
    /// newline-separated, no trailing newline.
    public var message: String {
        var lines = [Self.headline, "  reason: \(reason)"]
        for r in report { lines.append("  evidence: \(r.signal)=\(r.answer.word): \(r.answer.evidence)") }
        lines.append("  fix: \(remedy)")
        lines.append("  \(sharded ? Self.shardedPointer : Self.pointer)")
        return lines.joined(separator: "\n")
    }

    /// The fix for the signal that refused: the first `multiple` one, else the missing assertion
    /// (a platform that cannot count replicas, or production mode).
    package static func remedy(for report: [SignalReport], sameHost: SameHostLockSignal) -> String {
        let otherDeploy = "or give this relay another --runtime-dir if it serves a different deployment"
        switch report.first(where: { if case .multiple = $0.answer { true } else { false } })?.signal {
        case "same_host":
            if let pid = sameHost.holderPID {
                return "stop the relay with pid \(pid) (ps -p \(pid) -o pid,args), \(otherDeploy)"
            }
            return "stop the process holding \(sameHost.lockPath ?? sameHost.lockFileName) "
                + "(fuser -v \(sameHost.lockPath ?? sameHost.lockFileName)), \(otherDeploy)"
        case "fly":
            return "run one machine for this app (fly scale count 1)"
        case "kubernetes":
            return "run one replica of this relay (replicas: 1)"
        default:
            return "where the platform guarantees one replica, set \(EnvironmentConfig.assertSingleInstanceVar)=true "
                + "(deploy manifest or env file)"
        }
    }
}

/// docs/architecture.md (v1 = single-instance), the first step of reactor init: probes the signals that apply (unless bypassed),
/// decides, and formats the log lines. Runs before any socket is bound.
/// - `runtimeDirFlag`: the `--runtime-dir` value, nil when not given.
/// - `flyTimeoutMs`: the DNS wait (docs/architecture.md (v1 = single-instance): 2 s); tests shorten it.
/// - `shard`: sharded mode (docs/architecture.md, "v2 = static shards"): one process per shard, so
///   the same-host lock is the shard's own and every refusal and log line names the shard.
public func runSingleInstanceCheck(env: EnvironmentConfig, rawEnv: [String: String], runtimeDirFlag: String?,
                                   flyTimeoutMs: Int64 = FlyDNSSignal.defaultTimeoutMs,
                                   defaultRuntimeDirectory: String = SameHostLockSignal.defaultRuntimeDirectory,
                                   shard: ShardAssignment? = nil)
    -> Result<SingleInstanceOutcome, SingleInstanceRefusal>
{
    if env.bypassSingleInstance {
        // Nothing is probed and no lock is taken: the bypass exists for when the check itself misfires.
        let line = Logfmt.line(level: "warn", msg: "single_instance_bypass", [
            ("err", "\(EnvironmentConfig.singleInstanceVar)=1: single-instance self-check skipped; "
                + "NOT recommended for production"),
            ("path", "docs/architecture.md"),
        ])
        return .success(SingleInstanceOutcome(lock: nil, logLines: [line], decision: .bypass))
    }
    let sameHost = SameHostLockSignal(runtimeDirFlag: runtimeDirFlag, env: rawEnv,
                                      defaultDirectory: defaultRuntimeDirectory, shard: shard)
    var signals: [any ReplicaSignal] = [sameHost]
    if let k = KubernetesSignal(env: rawEnv) { signals.append(k) }
    if let f = FlyDNSSignal(env: rawEnv, server: env.flyDNSServerAddress, timeoutMs: flyTimeoutMs) {
        signals.append(f)
    }
    let report = signals.map { SignalReport(signal: $0.name, isPlatform: $0.isPlatform, answer: $0.probe()) }
    switch decideSingleInstance(env: env, answers: report) {
    case .refuse(let reason, let report):
        let reason = shard.map { "\(reason) (sharded mode: this relay claims shard \($0))" } ?? reason
        return .failure(SingleInstanceRefusal(reason: reason, report: report,
                                              remedy: SingleInstanceRefusal.remedy(for: report, sameHost: sameHost),
                                              sharded: shard != nil))
    case .bypass:
        return .success(SingleInstanceOutcome(lock: nil, logLines: [], decision: .bypass))  // unreachable: handled above
    case .start(let report):
        return .success(SingleInstanceOutcome(lock: sameHost.lock, logLines: [checkLine(report, sameHost)],
                                              decision: .start(report: report)))
    }
}

/// `msg=single_instance_check same_host=… fly=… kubernetes=… [shard=i/N] [path=…] [err=…]`.
/// New keys `same_host`, `fly`, `kubernetes`: one per signal, value single|multiple|unknown|absent,
/// so a fleet can be grepped for `fly=unknown`. `err` carries the evidence of every non-single answer.
/// The line is WARN when any signal could not tell.
package func checkLine(_ report: [SignalReport], _ sameHost: SameHostLockSignal) -> String {
    func word(_ name: String) -> String { report.first { $0.signal == name }?.answer.word ?? "absent" }
    var fields: [(key: String, value: String)] = [
        ("same_host", word("same_host")), ("fly", word("fly")), ("kubernetes", word("kubernetes")),
    ]
    if let shard = sameHost.shard { fields.append(("shard", shard.description)) }
    if let lock = sameHost.lock { fields.append(("path", lock.path)) }
    let unsure = report.filter { if case .single = $0.answer { false } else { true } }
    if !unsure.isEmpty {
        fields.append(("err", unsure.map { "\($0.signal): \($0.answer.evidence)" }.joined(separator: "; ")))
    }
    return Logfmt.line(level: unsure.isEmpty ? "info" : "warn", msg: "single_instance_check", fields)
}
