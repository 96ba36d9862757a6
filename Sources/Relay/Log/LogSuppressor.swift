/// Budgets for log events a peer can repeat at message rate (an invalid envelope, a refused
/// upgrade): without them one connection turns 7-byte frames into megabytes of log per second.
///
/// Time is cut into fixed intervals, ended by the caller (`endInterval`, from a loop timer).
/// Within an interval an event writes its first `perScopeBurst` lines per scope (a connection)
/// and its first `globalBurst` lines over all scopes; every line beyond is counted instead.
/// Counts come back as summaries — one per scope and event when the interval or the scope ends,
/// and one per event for the lines only the global budget stopped. A summary is a line too and
/// takes from its event's global budget; beyond it its count joins the event's global summary.
/// So per interval an event writes at most `perScopeBurst + 1` lines for one connection and
/// `globalBurst + 1` lines in all, and every suppressed line is counted in exactly one summary.
///
/// Pure (no clock, no I/O). A scope has state only from its first event in an interval: two
/// integers per (scope, event).
public struct LogSuppressor<Event: Hashable & CaseIterable> {
    public struct Summary: Equatable {
        public let event: Event
        /// The scope the count belongs to; nil: lines the global budget stopped.
        public let scope: UInt64?
        public let count: Int
    }

    private struct Counts {
        var logged = 0
        var suppressed = 0

        /// Takes one line from the budget, or counts it as suppressed.
        mutating func take(burst: Int) -> Bool {
            if logged < burst {
                logged += 1
                return true
            }
            suppressed += 1
            return false
        }
    }

    private struct ScopedKey: Hashable {
        let scope: UInt64
        let event: Event
    }

    public let perScopeBurst: Int
    public let globalBurst: Int
    private var scoped: [ScopedKey: Counts] = [:]
    private var global: [Event: Counts] = [:]

    public init(perScopeBurst: Int, globalBurst: Int) {
        self.perScopeBurst = perScopeBurst
        self.globalBurst = globalBurst
    }

    /// Whether to write this occurrence of `event`; false: it was counted for a summary.
    public mutating func admit(_ event: Event, scope: UInt64? = nil) -> Bool {
        if let scope, !scoped[ScopedKey(scope: scope, event: event), default: Counts()].take(burst: perScopeBurst) {
            return false
        }
        return global[event, default: Counts()].take(burst: globalBurst)
    }

    /// The scope ends (its connection closed): its summaries now, while the caller can still
    /// name the connection in them.
    public mutating func endScope(_ scope: UInt64) -> [Summary] {
        guard !scoped.isEmpty else { return [] }
        var out: [Summary] = []
        for event in Event.allCases {
            guard let c = scoped.removeValue(forKey: ScopedKey(scope: scope, event: event)), c.suppressed > 0 else { continue }
            if let s = scopeSummary(event, scope, c.suppressed) { out.append(s) }
        }
        return out
    }

    /// The interval ends: every summary of it, then all state is forgotten (the dictionaries are
    /// replaced, so the storage a storm grew is freed).
    public mutating func endInterval() -> [Summary] {
        var out: [Summary] = []
        for (key, c) in scoped where c.suppressed > 0 {
            if let s = scopeSummary(key.event, key.scope, c.suppressed) { out.append(s) }
        }
        for event in Event.allCases {
            if let c = global[event], c.suppressed > 0 { out.append(Summary(event: event, scope: nil, count: c.suppressed)) }
        }
        scoped = [:]
        global = [:]
        return out
    }

    private mutating func scopeSummary(_ event: Event, _ scope: UInt64, _ count: Int) -> Summary? {
        if global[event, default: Counts()].take(burst: globalBurst) {
            return Summary(event: event, scope: scope, count: count)
        }
        // `take` counted the summary line itself as suppressed; its lines are what is owed.
        global[event]!.suppressed += count - 1
        return nil
    }
}
