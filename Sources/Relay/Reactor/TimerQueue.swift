import CEpoll
import RelaySystem

/// A timer entry names its owner (`owner` 0: the fd handler whose `Token` is `key`; otherwise a
/// registered `TimerOwner`), a key and a kind; the owner decides on firing whether the entry is
/// still current (lazy cancellation: nothing is removed from the heap early, so cancelling is
/// never needed and costs nothing). 24 bytes, like the entry without an owner (padding).
public struct TimerEntry {
    public var deadline: Int64
    public var key: UInt64
    public var kind: UInt8
    public var owner: UInt32
}

/// All time-based work (heartbeats, deadlines, grace) in one binary min-heap, driven by one
/// timerfd armed at the earliest deadline. No per-connection kernel timers.
public final class TimerQueue {
    private var heap: [TimerEntry] = []
    private let timerFD: FileDescriptor
    private var armedAt: Int64 = .max

    public init() throws(Errno) {
        let fd = try syscallChecked("timerfd_create") {
            timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
        }
        timerFD = FileDescriptor(fd)
        heap.reserveCapacity(1024)
    }

    public var fd: Int32 { timerFD.raw }
    public var count: Int { heap.count }
    /// The earliest deadline, `.max` when empty: the loop pops and re-arms only when it moved.
    public var nextDeadline: Int64 {
        @inline(__always) get { heap.first?.deadline ?? .max }
    }
    /// Entries pushed since the queue was made (tests count heap work with it).
    public private(set) var pushes = 0

    public func schedule(at deadline: Int64, key: UInt64, kind: UInt8, owner: UInt32 = 0) {
        heap.append(TimerEntry(deadline: deadline, key: key, kind: kind, owner: owner))
        pushes &+= 1
        siftUp(heap.count - 1)
    }

    /// Pops every entry due at `now` into `into`.
    public func popDue(now: Int64, into due: inout [TimerEntry]) {
        while let first = heap.first, first.deadline <= now {
            due.append(first)
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                siftDown(0)
            }
        }
    }

    /// Drains the timerfd expiry counter (it is level-triggered in epoll until read).
    public func acknowledge() {
        var expirations: UInt64 = 0
        _ = read(timerFD.raw, &expirations, 8)
        armedAt = .max
    }

    /// Arms the timerfd for the earliest deadline, only when it changed (one syscall at most).
    @inline(__always)
    public func rearm() {
        let next = nextDeadline
        if next != armedAt { arm(next) }
    }

    @inline(never)
    private func arm(_ next: Int64) {
        armedAt = next
        var spec = itimerspec()
        if next != .max {
            // Absolute deadline; 0 would disarm, so a past deadline becomes 1 ns.
            let ms = max(next, 0)
            spec.it_value.tv_sec = Int(ms / 1000)
            spec.it_value.tv_nsec = Int(ms % 1000) * 1_000_000
            if spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0 { spec.it_value.tv_nsec = 1 }
        }
        _ = timerfd_settime(timerFD.raw, Int32(TFD_TIMER_ABSTIME), &spec, nil)
    }

    private func siftUp(_ i0: Int) {
        var i = i0
        let e = heap[i]
        while i > 0 {
            let p = (i - 1) / 2
            if heap[p].deadline <= e.deadline { break }
            heap[i] = heap[p]
            i = p
        }
        heap[i] = e
    }

    private func siftDown(_ i0: Int) {
        var i = i0
        let e = heap[i]
        let n = heap.count
        while true {
            var c = 2 * i + 1
            if c >= n { break }
            if c + 1 < n && heap[c + 1].deadline < heap[c].deadline { c += 1 }
            if e.deadline <= heap[c].deadline { break }
            heap[i] = heap[c]
            i = c
        }
        heap[i] = e
    }
}
