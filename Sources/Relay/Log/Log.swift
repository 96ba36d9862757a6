import CEpoll

/// logfmt lines on stderr, one per event: `ts`, `level`, `msg`, then allow-listed keys only
/// (docs/operations.md). A key outside the list is a programming error caught in debug builds, and
/// dropped in release builds, so no header, token or payload can reach the log by accident.
public enum Log {
    public enum Level: String, Sendable { case debug, info, warn, error }

    /// docs/operations.md keys, plus ones added with a reason (each value is a number, a fixed word, an
    /// address or a path the operator chose — never request bytes):
    /// `listen`, `mode`, `version`, `metrics`, `push` (relay_started: what was bound and how, push off or fcm);
    /// `signal`, `count` (shutdown_started/relay_stopped: which signal, how many connections left);
    /// `capabilities` (extra_capabilities: the CapEff names, docs/operations.md);
    /// `reason` (a fixed phrase chosen by the relay, e.g. why a push_wake was dropped);
    /// `same_host`, `fly`, `kubernetes` (single_instance_check: one word per signal, docs/architecture.md (v1 = single-instance));
    /// `pid`, `status`, `endpoint` (reserved: a lock owner's pid, an HTTP status code, server|client);
    /// `event` (log_suppressed: the msg of the lines a summary counts);
    /// `shard` (sharded mode: this relay's `i/N`, on relay_started, single_instance_check and upgrade_misrouted).
    /// The interop test tests/interop/test_operations.py reads this list from this file.
    public static let allowedKeys: Set<String> = [
        "server_id", "conn_id", "binary_conn_id", "device_name", "remote", "binary_version", "err", "path",
        "from", "to", "close_code", "token_fp", "duration", "fcm_message_id",
        "listen", "mode", "version", "signal", "same_host", "fly", "kubernetes", "pid", "count",
        "capabilities", "status", "metrics", "reason", "endpoint", "event", "push",
        "shard",
        // ACME (Sources/Relay/ACME): the domain and the certificate's public serial and expiry;
        // the CA's problem type and detail (clipped); a retry delay; a cache mode change.
        "domain", "serial", "not_after", "problem_type", "detail", "retry_in", "challenge",
    ]

    /// Keys whose values a peer chose (request headers, and connection ids that embed the
    /// server-id): clipped to `Limits.logValueMaxBytes` (`Logfmt.clip`), so one header cannot
    /// make every line it appears in kilobytes long.
    package static let peerChosenKeys: Set<String> = ["server_id", "conn_id", "binary_conn_id", "device_name", "binary_version", "path"]

    /// Each allowed key, and whether its value is clipped: one lookup per field.
    private static let clippedByKey: [String: Bool] = Dictionary(
        uniqueKeysWithValues: allowedKeys.map { ($0, peerChosenKeys.contains($0)) })

    /// Where lines go while the loop runs (`LogOutput`: non-blocking, bounded). nil — at boot,
    /// after the loop, and in tests — means one blocking write(2) to fd 2 per line.
    ///
    /// A process-wide mutable reference, which Swift 6 refuses without a reason: the relay has
    /// one thread; `RelayApp` sets this once before `reactor.run()` and clears it after the loop
    /// ends, and every reader runs on that same thread. Tests never set it (they drive their own
    /// `LogOutput` instances), so test threads running in parallel only ever read nil.
    nonisolated(unsafe) public static var output: LogOutput?

    /// One line through `Logfmt` (the single encoder: quoting rules and timestamp live there).
    public static func write(_ level: Level, _ msg: String, _ fields: KeyValuePairs<String, String> = [:]) {
        var line = Logfmt.Line(level: level.rawValue, msg: msg)
        for (k, v) in fields {
            guard let clipped = clippedByKey[k] else {
                assertionFailure("log key \(k) is not allow-listed")
                continue
            }
            line.add(k, clipped ? Logfmt.clip(v) : v)
        }
        line.endLine()
        line.bytes.withUnsafeBytes { p in
            if let output { output.write(p) } else { _ = CEpoll.write(2, p.baseAddress, p.count) }
        }
    }

    /// Lines dropped because stderr could not take them (`LogOutput.linesDropped`).
    public static var linesDropped: Int { output?.linesDropped ?? 0 }

    public static func info(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.info, msg, f) }
    public static func warn(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.warn, msg, f) }
    public static func error(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.error, msg, f) }
}
