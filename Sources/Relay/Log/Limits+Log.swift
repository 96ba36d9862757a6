import RelayCodecs

/// The Log layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
    // Log volume (docs/operations.md, "Log volume")
    /// A value a peer chose (server-id, connection id, device name, version) is clipped to this
    /// many bytes in a log line.
    public static let logValueMaxBytes = 128
    /// Log lines waiting for a slow stderr reader (journald); lines beyond are dropped and
    /// counted (`--log-buffer-bytes`).
    public static let logBufferBytes = 1024 * 1024
    /// How long the last lines may take to reach stderr at exit before they are given up.
    public static let logExitFlushMs: Int64 = 2_000
    /// Repeatable events: lines per connection and per event in one interval, then one summary.
    public static let logBurstPerConnection = 5
    /// Repeatable events: lines per event over all connections in one interval, then one summary.
    public static let logBurstGlobal = 100
    public static let logSuppressionIntervalMs: Int64 = 10_000
}
