/// Durations of loop iterations (docs/operations.md § Metrics: the loop-iteration latency histogram), from
/// epoll_wait's return to the end of that iteration's work (events, timers, flushes). One thread
/// serves every connection, so this is the delay a ready socket can see on top of its own work.
/// Fixed buckets; recording allocates nothing.
public struct LoopLatency {
    /// Upper bounds in nanoseconds (the exposition's `le` labels are in Operations' `Metrics`).
    public static let boundsNs: [UInt64] = [
        50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
        25_000_000, 50_000_000, 100_000_000, 250_000_000, 1_000_000_000,
    ]

    /// Per-bucket (not cumulative) counts, one per bound and the last above every bound (+Inf):
    /// inline storage, so recording (once per loop iteration) has no array to check for sharing.
    private var buckets: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    public private(set) var sumNs: UInt64 = 0
    public private(set) var count: UInt64 = 0

    public init() {
        precondition(MemoryLayout.size(ofValue: buckets) == (LoopLatency.boundsNs.count + 1) * 8, "a bucket per bound and +Inf")
    }

    /// Per-bucket (not cumulative) counts; the last slot is above every bound (+Inf).
    public var counts: [UInt64] {
        withUnsafeBytes(of: buckets) { Array($0.bindMemory(to: UInt64.self)) }
    }

    @inline(__always)
    public mutating func record(_ ns: UInt64) {
        var i = 0
        while i < LoopLatency.boundsNs.count && ns > LoopLatency.boundsNs[i] { i += 1 }
        // i <= boundsNs.count: within the buckets (checked in `init`).
        withUnsafeMutableBytes(of: &buckets) { $0.baseAddress!.assumingMemoryBound(to: UInt64.self)[i] &+= 1 }
        sumNs &+= ns
        count &+= 1
    }
}
