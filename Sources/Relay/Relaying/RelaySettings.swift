import RelayCore
import RelayTransport
import RelayCodecs

/// What the relay service needs to know of the operator's configuration (Operations builds it
/// from flags and environment: `RelayConfig.relaySettings`). Defaults are the `Limits`.
public struct RelaySettings {
    /// Reported by /healthz.
    public var version = "0.0.0"
    /// TLS mode: requests whose Host is not this name get 421 (docs/protocol.md §2).
    public var domain: String?
    /// Sharded mode: upgrades for server-ids of other shards get 421.
    public var shard: ShardAssignment?
    public var trustXForwardedFor = false
    public var permessageDeflate = false
    public var graceMs = Limits.graceMs
    public var probeTimeoutMs = Limits.claimProbeTimeoutMs
    public var phonesPerServer = Limits.phonesPerServerID
    public var outboxBudget = Limits.phoneOutboxBudget
    public var maxBufferedBytes = Limits.maxBufferedBytes
    public var maxConnections = Limits.maxConnections
    public var maxConnectionsPerIP = Limits.maxConnectionsPerIP
    public var maxHalfOpen = Limits.maxHalfOpen
    public var maxHalfOpenPerIP = Limits.maxHalfOpenPerIP
    /// Timeouts and limits of every public connection.
    public var connection = ConnectionSettings()

    public init() {}
}
