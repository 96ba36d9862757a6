import RelayCodecs
import RelayLog
import RelayTransport

/// The process-wide buffer budget, `--max-buffered-bytes` (docs/operations.md): bytes queued
/// for writing plus bytes held by unfinished messages (input and assembly buffers) stay under
/// it. Over it the largest holder goes first, until the growth that hit the budget fits:
/// - a phone whose output queue is most of what it holds: 1011 `phone backlog full`, as when
///   its own outbox overflows (the queue is dropped, a close frame follows);
/// - a connection holding an unfinished message, phone or binary: 1011 `memory budget exceeded`.
///   Not 1009: its message is within the advertised limit, so "too big" (RFC 6455 §7.4.1) would
///   be untrue and could make a client give up on a message it may send again later; the
///   condition is the relay's, which is what 1011 says (as for the backlog).
/// A binary's own queue is bounded by pausing its phones and is never shed.
extension RelayService {
    public func connection(_ c: Connection, needsBufferRoom bytes: Int) {
        shedLargestHolders(growing: c, by: bytes)
    }

    /// Sheds the largest holders until `extra` more bytes for `requester` fit in the budget (or
    /// the requester itself was shed). The scan is O(connections) but runs only over budget.
    package func shedLargestHolders(growing requester: Connection? = nil, by extra: Int = 0) {
        while context.bufferedBytes + extra > settings.maxBufferedBytes {
            var victim: Connection?
            var victimSize = 0
            var victimQueue = 0
            for c in connections.values where c.state == .open || c.state == .closeSent {
                guard let info = c.userInfo else { continue }
                let queue = c.state == .open && unsafeDowncast(info, to: Peer.self).role == .phone ? c.queuedBytes : 0
                let size = queue + c.heldBytes + (c === requester ? extra : 0)
                if size > victimSize {
                    victim = c
                    victimSize = size
                    victimQueue = queue
                }
            }
            guard let v = victim, let info = v.userInfo else { return }
            let peer = unsafeDowncast(info, to: Peer.self)
            if 2 * victimQueue >= victimSize {
                overflow(v, peer, directive: nil)
            } else {
                Log.warn("buffer_budget_shed", ["server_id": peer.serverID, "conn_id": peer.connID])
                v.shed(code: .internalError, reason: Connection.bufferBudgetReason)
                if peer.role == .phone {
                    peer.noticeCode = CloseCode.internalError.rawValue
                    phoneLeavesNow(peer)
                }
            }
            if v === requester { return }
        }
    }

    /// Freed buffers passed `Limits.trimAfterReleasedBytes`: return free heap pages to the
    /// kernel once the loop has been quiet for a moment (the trim timer), not at the next
    /// minute's housekeeping, so RSS falls soon after a burst of large messages is gone.
    package func noteLargeRelease() {
        lastReleaseMs = context.reactor.now
        armTrim(at: lastReleaseMs + RelayService.trimQuietMs)
    }
}
