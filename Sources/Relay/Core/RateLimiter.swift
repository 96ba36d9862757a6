import RelayCodecs

/// Per-key token buckets (docs/protocol.md §3.3: burst 20, one token per 6 s, idle buckets swept after
/// 120 s), one per `ClientKey` (an IPv6 client's whole /64 shares one); the push service keys
/// its wake buckets by server-id (docs/protocol.md §9). Time is passed in, so the limiter is a pure value tested without clocks.
public struct RateLimiter<Key: Hashable> {
    /// A bucket's tokens are kept as the refill time they are worth (one token = `refillMs`), an
    /// integer: with fractional tokens, a client asking every millisecond summed 6,000 rounded
    /// sixths-of-a-thousandth and got its token a millisecond late.
    package struct Bucket {
        package var creditMs: Int64
        package var updatedMs: Int64
    }

    public let burst: Int
    public let refillMs: Int64
    public let idleMs: Int64
    private let fullMs: Int64
    private var buckets: [Key: Bucket] = [:]

    public init(burst: Int, refillMs: Int64, idleMs: Int64) {
        self.burst = burst
        self.refillMs = refillMs
        self.idleMs = idleMs
        fullMs = Int64(burst) * refillMs
    }

    public var bucketCount: Int { buckets.count }

    /// Takes one token for `key`; false when the bucket is empty.
    public mutating func allow(_ key: Key, now: Int64) -> Bool {
        var b = buckets[key] ?? Bucket(creditMs: fullMs, updatedMs: now)
        let elapsed = max(0, now - b.updatedMs)
        b.creditMs = min(fullMs, b.creditMs + min(elapsed, fullMs))
        b.updatedMs = now
        let ok = b.creditMs >= refillMs
        if ok { b.creditMs -= refillMs }
        buckets[key] = b
        return ok
    }

    /// Drops buckets idle for `idleMs` that have refilled: they carry no information.
    public mutating func sweep(now: Int64) {
        buckets = buckets.filter { now - $0.value.updatedMs < idleMs }
    }
}

extension RateLimiter where Key == ClientKey {
    /// The upgrade limiter of docs/protocol.md §3.3.
    public init(burst: Int = Limits.rateBurst, refillMs: Int64 = Limits.rateRefillMs, idleMs: Int64 = Limits.rateBucketIdleMs) {
        self.burst = burst
        self.refillMs = refillMs
        self.idleMs = idleMs
        fullMs = Int64(burst) * refillMs
    }
}
