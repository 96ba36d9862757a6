import RelayCodecs
import RelayLog
import RelayCore

/// The log lines a peer can make the relay write again and again — per message (a binary's
/// invalid envelopes) or per request (refused upgrades) — go through one `LogSuppressor`:
/// per connection and per event at most `Limits.logBurstPerConnection` lines in each
/// `Limits.logSuppressionIntervalMs`, over all connections at most `Limits.logBurstGlobal`,
/// then one `msg=log_suppressed event=<msg> count=K` summary (docs/operations.md, "Log volume").
/// Lines that happen once per connection (claimed, registered, disconnected) are not budgeted:
/// admission already limits how often they can happen.
package enum RepeatedLogEvent: CaseIterable {
    case binaryForwarderUnmarshalErr, binaryForwarderPushWakeDropped, binaryForwarderUnknownConnID
    case ratelimitRejected, connCapReached, ipConnCapReached, halfOpenEvicted
    case phoneRegisterNoServer, phoneRegisterAtCap, serverIDConflict
    case upgradeMisrouted

    /// No raw value on purpose: a flood hashes the case, not a string.
    package var msg: String {
        switch self {
        case .binaryForwarderUnmarshalErr: "binary_forwarder_unmarshal_err"
        case .binaryForwarderPushWakeDropped: "binary_forwarder_push_wake_dropped"
        case .binaryForwarderUnknownConnID: "binary_forwarder_unknown_conn_id"
        case .ratelimitRejected: "ratelimit_rejected"
        case .connCapReached: "conn_cap_reached"
        case .ipConnCapReached: "ip_conn_cap_reached"
        case .halfOpenEvicted: "half_open_evicted"
        case .phoneRegisterNoServer: "phone_register_no_server"
        case .phoneRegisterAtCap: "phone_register_at_cap"
        case .serverIDConflict: "server_id_conflict"
        case .upgradeMisrouted: "upgrade_misrouted"
        }
    }
}

extension RelayService {
    /// Writes `event` unless its budget for `peer`'s connection (when given) or for the whole
    /// process is spent; the fields are built only for lines that are written.
    package func logRepeated(_ event: RepeatedLogEvent, level: Log.Level = .warn, peer: Peer? = nil,
                     _ fields: @autoclosure () -> KeyValuePairs<String, String>) {
        guard logBudget.admit(event, scope: peer?.handle.raw) else { return }
        Log.write(level, event.msg, fields())
    }

    package func scheduleLogInterval(from now: Int64) {
        timers.schedule(.logInterval, at: now + Limits.logSuppressionIntervalMs)
    }

    /// The interval's summaries, for connections still open and for the process.
    package func endLogInterval(now: Int64) {
        for s in logBudget.endInterval() {
            let peer = s.scope.flatMap { peers[ConnHandle($0)] }
            logSuppressed(s, peer: peer)
        }
        scheduleLogInterval(from: now)
    }

    /// A closing connection's summaries, while its ids are at hand.
    package func endLogScope(_ peer: Peer) {
        for s in logBudget.endScope(peer.handle.raw) { logSuppressed(s, peer: peer) }
    }

    private func logSuppressed(_ s: LogSuppressor<RepeatedLogEvent>.Summary, peer: Peer?) {
        let interval = "\(Limits.logSuppressionIntervalMs / 1000)s"
        if let peer {
            Log.warn("log_suppressed", ["event": s.event.msg, "count": String(s.count), "duration": interval,
                                        "server_id": peer.serverID, "conn_id": peer.connID])
        } else {
            Log.warn("log_suppressed", ["event": s.event.msg, "count": String(s.count), "duration": interval])
        }
    }
}
