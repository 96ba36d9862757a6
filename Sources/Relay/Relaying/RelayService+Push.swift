import RelayPush

/// The wake request of docs/protocol.md §9: handed to the push service, or refused with one
/// budgeted warn line. Runs only for an envelope without `conn_id` that carries `push_wake`, so
/// relayed messages never reach it.
extension RelayService {
    package func pushWake(_ peer: Peer, _ value: UnsafeRawBufferPointer) {
        let refusal: PushService.Drop
        if let push {
            guard let drop = push.wake(serverID: peer.serverID, value) else { return }
            refusal = drop
        } else {
            refusal = .notConfigured
        }
        logRepeated(.binaryForwarderPushWakeDropped, peer: peer, ["server_id": peer.serverID, "reason": refusal.rawValue])
    }
}
