import Testing
@testable import RelayReactor
@testable import RelayTransport
@testable import RelayCore
@testable import Relaying
@testable import RelayOperations

/// After an outage every binary comes back within its grace window: each reclaim must cost the
/// same whatever the number of timers still armed (no cancel that searches for its entry).
@Suite struct ReclaimStormTests {
    /// Heap pushes while `n` binaries drop and while they all reclaim; then whether every grace
    /// timer, now stale, fires into nothing and leaves no record behind.
    func storm(_ n: Int) throws -> (dropPushes: Int, reclaimPushes: Int, leftAfterFiring: Int, live: Int) {
        let reactor = try Reactor()
        var settings = RelaySettings()
        settings.graceMs = 1
        let relay = RelayService(settings: settings, context: IOContext(reactor: reactor))
        let now = reactor.now
        for i in 0..<n { relay.perform(relay.registry.claimBinary(ConnHandle(UInt64(i + 1)), serverID: "s\(i)", now: now)) }
        let p0 = reactor.timers.pushes
        for i in 0..<n { relay.perform(relay.registry.binaryDisconnected(ConnHandle(UInt64(i + 1)), now: now)) }
        let p1 = reactor.timers.pushes
        for i in 0..<n { relay.perform(relay.registry.claimBinary(ConnHandle(UInt64(n + i + 1)), serverID: "s\(i)", now: now)) }
        let p2 = reactor.timers.pushes
        let deadline = monotonicMs() + 2_000
        while relay.registryTimers.count > 0 && monotonicMs() < deadline { reactor.runOnce(timeoutMs: 10) }
        return (p1 - p0, p2 - p1, relay.registryTimers.count, relay.connectedBinaries)
    }

    @Test func aReclaimStormCostsOneTimerPerDisconnectAndNothingPerReclaim() throws {
        for n in [40, 400] {
            let r = try storm(n)
            #expect(r.dropPushes == n, "one grace timer per disconnect")
            #expect(r.reclaimPushes == 0, "a reclaim neither arms nor searches")
            #expect(r.leftAfterFiring == 0 && r.live == n, "stale grace timers fire into nothing")
        }
    }
}
