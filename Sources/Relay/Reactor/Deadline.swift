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
