import RelayCodecs
import RelayCore

/// The relay service's counters, named in docs/operations.md § Metrics (the exposition lives in
/// Operations' `Metrics`). Plain stored integers: one thread.
public final class RelayCounters {
    public enum UpgradeOutcome: Int, CaseIterable {
        case accept, rejectHeaders, reject409, reject404, reject429, rejectRateLimit
    }
    public enum RegisterFailure: Int, CaseIterable {
        case noServer, serverInUse, phonesAtCap, ratelimit
    }
    public var framesPhoneToBinary = 0
    public var framesBinaryToPhone = 0
    public var bytesPhoneToBinary = 0
    public var bytesBinaryToPhone = 0
    public var graceExpiries = 0
    public var upgrades = [Int](repeating: 0, count: Endpoint.allCases.count * UpgradeOutcome.allCases.count)
    public var registerFailures = [Int](repeating: 0, count: RegisterFailure.allCases.count)
    public var closedByCode: [UInt16: Int] = [:]
    public var httpRejects: [Int: Int] = [:]
    public var tlsHandshakesOK = 0
    public var tlsHandshakesFailed = 0
    /// Half-open connections closed to make room (per-IP or global half-open cap).
    public var halfOpenEvictions = 0
    /// Sharded mode: upgrades refused with 421 because their server-id belongs to another shard.
    public var misroutedUpgrades = 0


    public init() {}

    public func upgrade(_ e: Endpoint, _ o: UpgradeOutcome) {
        upgrades[e.rawValue * UpgradeOutcome.allCases.count + o.rawValue] += 1
    }

    public func registerFailure(_ k: RegisterFailure) { registerFailures[k.rawValue] += 1 }

    public func closed(code: CloseCode?) {
        closedByCode[code?.rawValue ?? 1006, default: 0] += 1
    }
}
