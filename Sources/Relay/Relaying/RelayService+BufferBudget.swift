import RelayCodecs
import RelayLog
import RelayTransport
import RelayCore

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
    /// Sheds the largest holders (`ForwardingCore.shedVictim`) until `extra` more bytes for
    /// `requester` fit in the budget, or the requester itself was shed.
    package func shedLargestHolders(growing requester: Peer? = nil, by extra: Int = 0) {
        while core.overBudget(bufferedBytes: context.bufferedBytes, extra: extra) {
            let holders = peers.values.lazy.filter { $0.connection.state == .open || $0.connection.state == .closeSent }
                .map { p in
                    ShedCandidate(handle: p.handle, isPhone: p.role == .phone && p.connection.state == .open,
                                  queuedBytes: p.connection.queuedBytes, heldBytes: p.connection.heldBytes)
                }
            guard let victim = core.shedVictim(holders, requester: requester?.handle, extra: extra),
                let peer = peers[victim.handle]
            else { return }
            if victim.dropBacklog {
                core.phoneShed(&peer.flow)
                dropBacklog(peer, code: .internalError)
            } else {
                Log.warn("buffer_budget_shed", ["server_id": peer.serverID, "conn_id": peer.connID])
                peer.connection.shed(code: .internalError, reason: Connection.bufferBudgetReason)
                if peer.role == .phone {
                    core.phoneShed(&peer.flow)
                    phoneLeavesNow(peer)
                }
            }
            if peer === requester { return }
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
