import Relaying

extension RelayConfig {
    /// The relay service's part of the configuration.
    public var relaySettings: RelaySettings {
        var s = RelaySettings()
        s.version = RelayConfig.version
        s.domain = domain
        s.shard = shard
        s.trustXForwardedFor = trustXForwardedFor
        s.permessageDeflate = permessageDeflate
        s.graceMs = graceMs
        s.probeTimeoutMs = probeTimeoutMs
        s.phonesPerServer = phonesPerServer
        s.outboxBudget = outboxBudget
        s.maxBufferedBytes = maxBufferedBytes
        s.maxConnections = maxConnections
        s.maxConnectionsPerIP = maxConnectionsPerIP
        s.maxHalfOpen = maxHalfOpen
        s.maxHalfOpenPerIP = maxHalfOpenPerIP
        s.connection = connection
        return s
    }
}
