import CEpoll
import RelaySystem

/// A timer entry names its owner (`owner` 0: the fd handler whose `Token` is `key`; otherwise a
/// registered `TimerOwner`), a key and a kind; the owner decides on firing whether the entry is
/// still current (lazy cancellation: nothing is removed from the heap early, so cancelling is
/// never needed and costs nothing). 16 bytes (an idle connection keeps one entry, its
/// heartbeat: docs/benchmarks.md, M1): deadline, owner and kind share one word, the deadline in
/// its high 40 bits, so the heap orders entries by that word alone.
public struct TimerEntry {
    /// `deadline << 24 | owner << 8 | kind`.
    private let word: UInt64
    public let key: UInt64

    /// Deadlines are kept in 40 bits, 0 ..< 2^40 ms (34 years of the monotonic clock): an
    /// earlier one is due at 0, a later one at the last.
    public static let maxDeadline: Int64 = (1 << 40) - 1
    /// Owner ids are kept in 16 bits.
    public static let maxOwner: UInt32 = 0xFFFF

    public init(deadline: Int64, key: UInt64, kind: UInt8, owner: UInt32 = 0) {
        precondition(owner <= TimerEntry.maxOwner)
        let d = UInt64(min(max(deadline, 0), TimerEntry.maxDeadline))
        word = d << 24 | UInt64(owner) << 8 | UInt64(kind)
        self.key = key
    }

    public var deadline: Int64 { Int64(word >> 24) }
    public var kind: UInt8 { UInt8(truncatingIfNeeded: word) }
    public var owner: UInt32 { UInt32(truncatingIfNeeded: word >> 8) & TimerEntry.maxOwner }

    /// Due at `now`: compares the word with the last one `now` covers.
    @inline(__always)
    fileprivate func isDue(atOrBefore limit: UInt64) -> Bool { word <= limit }
    @inline(__always)
    fileprivate func comesNoLaterThan(_ other: TimerEntry) -> Bool { word <= other.word }
    @inline(__always)
    fileprivate func comesBefore(_ other: TimerEntry) -> Bool { word < other.word }

    /// The largest word due at `now` (≥ 0).
    fileprivate static func dueLimit(_ now: Int64) -> UInt64 {
        UInt64(min(now, maxDeadline)) << 24 | 0xFF_FFFF
    }
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
    /// Entries the storage holds before it grows.
    public var capacity: Int { heap.capacity }
    /// The earliest deadline, `.max` when empty: the loop pops and re-arms only when it moved.
    /// Kept beside the heap, so the loop's two reads per iteration are one load each.
    public private(set) var nextDeadline: Int64 = .max
    /// Entries pushed since the queue was made (tests count heap work with it).
    public private(set) var pushes = 0

    /// Whether an entry may go unfired: its handler or owner is gone, or the state it guards is
    /// over (an HTTP-phase deadline of a connection that upgraded). Asked only when the heap's
    /// storage is full, before it would grow: lazy expiry leaves such entries until their
    /// deadline, so after a connection storm every connection would hold two (its header
    /// timeout's and its heartbeat's) for the header timeout's 5 s, and the grown storage would
    /// stay (docs/benchmarks.md, M1).
    public var isStale: ((TimerEntry) -> Bool)?

    public func schedule(at deadline: Int64, key: UInt64, kind: UInt8, owner: UInt32 = 0) {
        if heap.count == heap.capacity, let isStale {
            dropStale(isStale)
            // Less than a quarter came free: grow (by a quarter), so that a scan (O(n)) comes only
            // after n/5 pushes at least — amortised O(1), however few entries go stale.
            if heap.count > heap.capacity / 4 * 3 {
                heap.reserveCapacity([TimerEntry].gentlyGrownCapacity(heap.capacity))
            }
        }
        heap.appendGrowingGently(TimerEntry(deadline: deadline, key: key, kind: kind, owner: owner))
        pushes &+= 1
        siftUp(heap.count - 1)
        nextDeadline = heap[0].deadline
    }

    /// Pops every entry due at `now` into `into`.
    public func popDue(now: Int64, into due: inout [TimerEntry]) {
        guard now >= 0 else { return }  // no deadline is earlier than 0
        let limit = TimerEntry.dueLimit(now)
        while let first = heap.first, first.isDue(atOrBefore: limit) {
            due.append(first)
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                siftDown(0)
            }
        }
        nextDeadline = heap.first?.deadline ?? .max
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

    /// Removes the entries `isStale` names and rebuilds the heap in place (Floyd: O(n), once per
    /// would-be doubling). The storage keeps its capacity.
    @inline(never)
    private func dropStale(_ isStale: (TimerEntry) -> Bool) {
        let before = heap.count
        heap.removeAll(where: isStale)
        guard heap.count < before else { return }
        var i = heap.count / 2 - 1
        while i >= 0 {
            siftDown(i)
            i -= 1
        }
        nextDeadline = heap.first?.deadline ?? .max
    }

    private func siftUp(_ i0: Int) {
        var i = i0
        let e = heap[i]
        while i > 0 {
            let p = (i - 1) / 2
            if heap[p].comesNoLaterThan(e) { break }
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
            if c + 1 < n && heap[c + 1].comesBefore(heap[c]) { c += 1 }
            if e.comesNoLaterThan(heap[c]) { break }
            heap[i] = heap[c]
            i = c
        }
        heap[i] = e
    }
}
