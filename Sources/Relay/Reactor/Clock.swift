import CEpoll

/// Monotonic milliseconds (CLOCK_MONOTONIC): all deadlines and timers use this clock.
@inline(__always)
public func monotonicMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    // Wrapping arithmetic: a monotonic clock's seconds since boot cannot overflow these.
    return Int64(ts.tv_sec) &* 1000 &+ Int64(ts.tv_nsec) / 1_000_000
}

/// Monotonic nanoseconds, for measurements.
@inline(__always)
public func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    // Unchecked: both fields are non-negative and seconds since boot times 10^9 fit in 64 bits
    // (read twice per loop iteration, so the traps would cost on every message).
    return UInt64(truncatingIfNeeded: ts.tv_sec) &* 1_000_000_000 &+ UInt64(truncatingIfNeeded: ts.tv_nsec)
}

/// Wall-clock seconds since the epoch with milliseconds, for log timestamps only.
public func wallClock() -> (seconds: Int, millis: Int) {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return (Int(ts.tv_sec), Int(ts.tv_nsec) / 1_000_000)
}
