import Testing
@testable import RelayCodecs
@testable import RelayCore

/// The per-client token bucket of the admission limits (docs/protocol.md §3.3: burst 20, one
/// token per 6 s, idle buckets swept after 120 s). Time is an argument, so every boundary is
/// hit exactly, without clocks or sleeps.
@Suite struct RateLimiterTests {
    let a = ClientKey(ip: "203.0.113.7")!
    let b = ClientKey(ip: "203.0.113.8")!
    let t0: Int64 = 1_000_000

    /// The limiter behind a reference, so `#expect` can call its mutating methods.
    final class Limiter {
        var state = RateLimiter()
        func allow(_ key: ClientKey, now: Int64) -> Bool { state.allow(key, now: now) }
        func sweep(now: Int64) { state.sweep(now: now) }
        var bucketCount: Int { state.bucketCount }
        /// Asks for `n` tokens at `now` and says how many were granted.
        func take(_ key: ClientKey, _ n: Int, at now: Int64) -> Int {
            (0..<n).filter { _ in state.allow(key, now: now) }.count
        }
    }

    @Test func theDefaultsAreTheDocumentedOnes() {
        let l = RateLimiter()
        #expect(l.burst == 20 && l.refillMs == 6_000 && l.idleMs == 120_000)
    }

    @Test func aNewKeyGetsTheWholeBurstAtOnceAndNoMore() {
        let l = Limiter()
        #expect(l.take(a, 20, at: t0) == 20)
        #expect(!l.allow(a, now: t0))
        #expect(!l.allow(a, now: t0), "a refused attempt costs nothing and grants nothing")
        #expect(l.bucketCount == 1)
    }

    @Test func oneTokenComesBackAtExactlyOneRefillInterval() {
        let l = Limiter()
        _ = l.take(a, 20, at: t0)
        #expect(!l.allow(a, now: t0 + 5_999))
        #expect(l.allow(a, now: t0 + 6_000))
        #expect(!l.allow(a, now: t0 + 6_000))
        #expect(!l.allow(a, now: t0 + 11_999))
        #expect(l.allow(a, now: t0 + 12_000))
    }

    @Test func refusedAttemptsInBetweenDoNotDelayTheNextToken() {
        // A client retrying every millisecond gets its token at the same instant as one that waits.
        let l = Limiter()
        _ = l.take(a, 20, at: t0)
        for t in (t0 + 1)..<(t0 + 6_000) { #expect(!l.allow(a, now: t)) }
        #expect(l.allow(a, now: t0 + 6_000))
        for t in stride(from: t0 + 6_001, to: t0 + 12_000, by: 7) { #expect(!l.allow(a, now: t)) }
        #expect(l.allow(a, now: t0 + 12_000))
    }

    @Test func partialRefillsAddUp() {
        let l = Limiter()
        _ = l.take(a, 20, at: t0)
        #expect(!l.allow(a, now: t0 + 3_000))  // half a token
        #expect(l.allow(a, now: t0 + 6_000))   // the other half
    }

    @Test func refillStopsAtTheBurst() {
        let l = Limiter()
        _ = l.take(a, 20, at: t0)
        #expect(l.take(a, 21, at: t0 + 60_000) == 10)
        #expect(l.take(a, 21, at: t0 + 10 * 3_600_000) == 20, "hours idle still give 20, not more")
    }

    @Test func keysAreIsolated() {
        let l = Limiter()
        _ = l.take(a, 20, at: t0)
        #expect(!l.allow(a, now: t0))
        #expect(l.take(b, 21, at: t0) == 20, "a's empty bucket leaves b's full")
        #expect(l.bucketCount == 2)
    }

    @Test func anIPv6Slash64SharesOneBucket() {
        let l = Limiter()
        let host1 = ClientKey(ip: "2001:db8:1:2::1")!, host2 = ClientKey(ip: "2001:db8:1:2:ffff:ffff:ffff:ffff")!
        #expect(l.take(host1, 10, at: t0) == 10)
        #expect(l.take(host2, 11, at: t0) == 10, "a new address in the same /64 is not a new bucket")
        #expect(!l.allow(host1, now: t0))
        #expect(l.take(ClientKey(ip: "2001:db8:1:3::1")!, 20, at: t0) == 20, "the next /64 is another client")
        #expect(l.take(ClientKey(ip: "::ffff:203.0.113.7")!, 20, at: t0) == 20)
        #expect(!l.allow(a, now: t0), "IPv4-mapped IPv6 is the IPv4 address")
        #expect(l.bucketCount == 3)
    }

    @Test func sweepDropsABucketOnlyAfterTheIdlePeriod() {
        let l = Limiter()
        _ = l.allow(a, now: t0)
        _ = l.allow(b, now: t0 + 50_000)
        l.sweep(now: t0 + 119_999)
        #expect(l.bucketCount == 2)
        l.sweep(now: t0 + 120_000)
        #expect(l.bucketCount == 1, "a was idle for exactly 120 s")
        _ = l.allow(b, now: t0 + 169_999)  // any attempt, granted or not, is activity
        l.sweep(now: t0 + 170_000)
        #expect(l.bucketCount == 1)
        l.sweep(now: t0 + 289_998)
        #expect(l.bucketCount == 1)
        l.sweep(now: t0 + 289_999)
        #expect(l.bucketCount == 0)
    }

    @Test func aRefusedAttemptAlsoKeepsTheBucket() {
        let l = Limiter()
        _ = l.take(a, 21, at: t0)
        #expect(!l.allow(a, now: t0 + 100_000) || true)
        l.sweep(now: t0 + 120_000)
        #expect(l.bucketCount == 1)
    }

    /// The sweep must never hand a client tokens it would not have had: an empty bucket refills
    /// completely (burst × interval) before it counts as idle, so a swept key and a kept key
    /// answer every later attempt alike.
    @Test func sweepingChangesNoAnswer() {
        #expect(Limits.rateBucketIdleMs >= Int64(Limits.rateBurst) * Limits.rateRefillMs)
        let kept = Limiter(), swept = Limiter()
        var times: [Int64] = []
        var t = t0
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<3_000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            // Mostly bursts, sometimes long pauses across the idle period.
            let step = seed >> 60 == 0 ? Int64(seed >> 20 % 300_000) : Int64(seed >> 40 % 4_000)
            t += step
            times.append(t)
        }
        var granted = 0, refused = 0, dropped = 0
        for now in times {
            let before = swept.bucketCount
            swept.sweep(now: now)
            if swept.bucketCount < before { dropped += 1 }
            let answer = kept.allow(a, now: now)
            #expect(answer == swept.allow(a, now: now), "at \(now)")
            if answer { granted += 1 } else { refused += 1 }
        }
        // The sequence exercises every case: empty buckets, refills, sweeps.
        #expect(granted > 100 && refused > 100 && dropped > 10, "\(granted) \(refused) \(dropped)")
    }
}
