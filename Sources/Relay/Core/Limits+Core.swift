import RelayCodecs

/// The Core layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
    // Registry (docs/protocol.md §5–§6)
    public static let claimProbeTimeoutMs: Int64 = 10_000
    public static let graceMs: Int64 = 30_000
    public static let phonesPerServerID = 16

    // Forwarding (docs/protocol.md §7)
    public static let phoneOutboxBudget = 4 * 1024 * 1024
    public static let outboxPerMessageOverhead = 64
    public static let binaryHighWater = 1024 * 1024
    public static let binaryLowWater = 256 * 1024
    public static let maxBufferedBytes = 512 * 1024 * 1024

    // Admission (docs/protocol.md §3.3, docs/operations.md § Admission limits)
    public static let rateBurst = 20
    public static let rateRefillMs: Int64 = 6_000
    public static let rateBucketIdleMs: Int64 = 120_000
    public static let maxConnections = 10_000
    public static let maxConnectionsPerIP = 256
    public static let maxHalfOpen = 1_024
    /// Half-open connections per client (an IPv4 address, an IPv6 /64), the oldest closed
    /// beyond. 64 is far above what one household or carrier NAT has in handshake at once (a
    /// handshake takes well under a second, and the rate limit lets an address upgrade 20 at a
    /// time), yet it takes 16 addresses (16 /64s) to fill the whole table of 1,024.
    public static let maxHalfOpenPerIP = 64

    // Upgrade gate (docs/protocol.md)
    /// Longest accepted `X-Pyrycode-Server`, in bytes (ids are canonical UUIDv4s: 36).
    public static let maxServerIDBytes = 128

    // Sharding (docs/architecture.md, "v2 = static shards")
    /// Most shards one deployment may declare (`--shard i/N`): far above the cores of the
    /// largest VM times a handful of VMs, and it keeps the per-shard lock names short.
    public static let maxShards = 1024
}
