/// A process-wide job with timers of its own (the relay service's housekeeping, an HTTPS
/// client's deadlines, the ACME manager's checks…). It registers with the reactor, as an fd's
/// handler does, and gets a `TimerHandle`: the reactor hands each due entry to the owner that
/// scheduled it, with the owner's own kind, whatever the order the owners were made in.
public protocol TimerOwner: AnyObject {
    associatedtype TimerKind: RawRepresentable where TimerKind.RawValue == UInt8
    /// A timer scheduled through this owner's handle came due. `key` is the one it was scheduled
    /// with; the owner decides whether the entry is still current (lazy cancellation).
    func timerFired(_ kind: TimerKind, key: UInt64, now: Int64)
}

/// Schedules timers that come back to one owner (`Reactor.registerTimers(for:)`).
public struct TimerHandle<Kind: RawRepresentable> where Kind.RawValue == UInt8 {
    unowned let reactor: Reactor
    let owner: UInt32

    /// `timerFired(kind, key:now:)` on the owner at `deadline` (monotonic ms), unless the owner is gone.
    public func schedule(_ kind: Kind, at deadline: Int64, key: UInt64 = 0) {
        reactor.timers.schedule(at: deadline, key: key, kind: kind.rawValue, owner: owner)
    }
}
