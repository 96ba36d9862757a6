/// Every limit and timeout of SPEC.md, by name, with the SPEC's default.
/// Operator-tunable ones are copied into `RelayConfig` and overridden by flags there.
public enum Limits {
    // §5.1 HTTP layer
    public static let maxHeaderBytes = 16 * 1024
    public static let headerTimeoutMs: Int64 = 5_000
    public static let keepAliveIdleMs: Int64 = 120_000

    // §7 WebSocket
    public static let maxMessageBytes = 262_144
    public static let messageAssemblyTimeoutMs: Int64 = 30_000
    public static let heartbeatIntervalMs: Int64 = 30_000
    public static let heartbeatTimeoutMs: Int64 = 30_000
    public static let writeStallTimeoutMs: Int64 = 10_000
    public static let closeHandshakeTimeoutMs: Int64 = 5_000
    public static let maxControlPayload = 125

    // §8 Registry
    public static let claimProbeTimeoutMs: Int64 = 10_000
    public static let graceMs: Int64 = 30_000
    public static let phonesPerServerID = 16

    // §9 Forwarding
    public static let phoneOutboxBudget = 4 * 1024 * 1024
    public static let outboxPerMessageOverhead = 64
    public static let binaryHighWater = 1024 * 1024
    public static let binaryLowWater = 256 * 1024
    public static let maxBufferedBytes = 512 * 1024 * 1024

    // Memory held by unfinished messages (docs/architecture.md, "Memory")
    /// A partial frame's input buffer grows to twice what arrived, by at least this step, never
    /// past the frame: it is charged for bytes the peer sent, not for the length it announced.
    public static let inputGrowthStep = 16 * 1024
    /// Freed buffer bytes after which free heap pages go back to the kernel (`malloc_trim`) once
    /// the loop has been quiet for a moment, rather than at the minute's housekeeping.
    public static let trimAfterReleasedBytes = 16 * 1024 * 1024

    // §10 Admission
    public static let rateBurst = 20
    public static let rateRefillMs: Int64 = 6_000
    public static let rateBucketIdleMs: Int64 = 120_000
    public static let maxConnections = 10_000
    public static let maxConnectionsPerIP = 256
    public static let maxHalfOpen = 1_024
    public static let proxyHeaderTimeoutMs: Int64 = 5_000

    // §14 Operations
    public static let drainDeadlineMs: Int64 = 10_000
}
