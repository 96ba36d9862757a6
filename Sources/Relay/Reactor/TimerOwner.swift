/// A process-wide job with timers of its own (the relay service's housekeeping, an HTTPS
/// client's deadlines, the ACME manager's checks…). It registers with the reactor, as an fd's
/// handler does, and gets a `TimerHandle`: the reactor hands each due entry to the owner that
/// scheduled it, with the owner's own kind, whatever the order the owners were made in.
public protocol TimerOwner: AnyObject {
    associatedtype TimerKind: RawRepresentable where TimerKind.RawValue == UInt8
    /// A timer scheduled through this owner's handle came due. `key` is the one it was scheduled
    /// with; the owner decides whether it is still current (lazy cancellation).
    func timerFired(_ kind: TimerKind, key: UInt64, now: Int64)
}

/// Schedules timers that come back to one owner (`Reactor.registerTimers(for:)`). The owner
/// keeps it (and only the owner): when the owner goes, so does the handle, and the owner's
/// entries still in the heap fire into nothing.
public struct TimerHandle<Kind: RawRepresentable> where Kind.RawValue == UInt8 {
    package unowned(unsafe) let reactor: Reactor
    package let registration: TimerRegistration

    /// `timerFired(kind, key:now:)` on the owner at `deadline` (monotonic ms), unless the owner is gone.
    public func schedule(_ kind: Kind, at deadline: Int64, key: UInt64 = 0) {
        reactor.timers.schedule(at: deadline, key: key, kind: kind.rawValue, owner: registration.id)
    }
}

/// Whether a registered owner still exists. The reactor reaches owners without a weak
/// reference (a weak reference moves the owner's reference count out of line and makes every
/// retain of it — the relay service on the forwarding path — slower): the owner's handle holds
/// the only `TimerRegistration`, which clears the shared flag as it goes with the owner.
public final class TimerRegistration {
    package final class Liveness {
        package var ownerAlive = true
    }
    package let id: UInt32
    package let liveness = Liveness()
    package init(id: UInt32) { self.id = id }
    deinit { liveness.ownerAlive = false }
}
