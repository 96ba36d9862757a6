/// A time on the reactor's monotonic millisecond clock, or none. An unarmed deadline never
/// passes, so a timer entry asks only `hasPassed(now)` (and 0 is an ordinary time, not "off").
public struct Deadline: Equatable, Sendable {
    public private(set) var ms: Int64

    public static let unarmed = Deadline(ms: .max)

    public init(ms: Int64) { self.ms = ms }

    public var isArmed: Bool { ms != .max }

    @inline(__always)
    public func hasPassed(_ now: Int64) -> Bool { now >= ms }
}

/// A `Deadline` in four bytes, for what every connection keeps for its lifetime: the low 32
/// bits of the time, compared by serial-number arithmetic (RFC 1982 §3.2), which is exact while
/// the two times lie less than `maxSpanMs` (24.8 days) apart. A deadline is armed at most
/// `maxSpanMs` ahead and looked at when its timer entry comes due, so they always do.
public struct ShortDeadline: Equatable, Sendable {
    /// 0 is "unarmed"; a time whose low 32 bits are 0 is kept 1 ms early (`UInt32.max`).
    private var raw: UInt32

    public static let unarmed = ShortDeadline(raw: 0)
    /// The farthest ahead a deadline may be armed.
    public static let maxSpanMs = Int64(Int32.max)

    private init(raw: UInt32) { self.raw = raw }

    public init(ms: Int64) {
        let low = UInt32(truncatingIfNeeded: ms)
        raw = low == 0 ? .max : low
    }

    public var isArmed: Bool { raw != 0 }

    @inline(__always)
    public func hasPassed(_ now: Int64) -> Bool {
        raw != 0 && Int32(bitPattern: UInt32(truncatingIfNeeded: now) &- raw) >= 0
    }

    /// The full time, given any time `now` less than `maxSpanMs` away from it.
    public func ms(near now: Int64) -> Int64 {
        precondition(isArmed)
        return now + Int64(Int32(bitPattern: raw &- UInt32(truncatingIfNeeded: now)))
    }
}
