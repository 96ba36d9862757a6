import RelaySystem
import RelayTransport
import RelayCore

/// The half-open caps (docs/operations.md, "Admission limits"): `--max-half-open` in all and
/// `--max-half-open-per-ip` per client, so that one source flooding idle connections evicts its
/// own connections, not the phones that are slow to send their upgrade request.
extension RelayService {
    /// Whom a half-open connection counts against. Before any byte is read the only address is
    /// the TCP peer, which is the client's — except behind a proxy: with `--https-proxy-protocol`
    /// the client is known once the PROXY v2 header is read (`connection(_:proxiedFrom:)`
    /// re-keys it), and with `--trust-x-forwarded-for` the peer is the proxy itself for every
    /// connection, so only the global cap applies (the request's X-Forwarded-For names the
    /// client only at upgrade time, for the rate limit and the live-connection cap).
    package func halfOpenKey(remote: SocketAddress, proxyHeader: Bool) -> ClientKey {
        if proxyHeader || settings.trustXForwardedFor { return .unattributed }
        return ClientKey(remote) ?? .unattributed
    }

    /// `remote`: the newcomer's address, named in the log line when its own cap made room.
    package func makeHalfOpenRoom(for key: ClientKey, remote: SocketAddress) {
        evict(halfOpen.makeRoomInClient(key), atClientCap: true, remote: remote)
        evict(halfOpen.makeRoomInAll(), atClientCap: false, remote: remote)
    }

    /// The PROXY v2 header named the client of a connection not yet upgraded: it counts under that client now.
    package func connection(_ c: Connection, wasProxiedFrom source: SocketAddress) {
        guard let key = ClientKey(source) else { return }
        evict(halfOpen.rekey(c, to: key), atClientCap: true, remote: source)
    }

    /// Closes what made room, counts it, and says so in a budgeted line (docs/operations.md, "Log
    /// volume": a flood evicts again and again), naming the cap that was full. The client's own
    /// (`per-client cap`): its connections made room for its newest, so the flooder is named.
    /// The relay's (`global cap`): the newcomer may be anyone and the closed connections belong
    /// to the clients holding the most, so no address is named.
    private func evict(_ evicted: [Connection], atClientCap: Bool, remote: SocketAddress) {
        guard !evicted.isEmpty else { return }
        for c in evicted {
            metrics.halfOpenEvictions += 1
            c.abort()
        }
        if atClientCap {
            logRepeated(.halfOpenEvicted, ["remote": remote.ipString, "reason": "per-client cap", "count": String(evicted.count)])
        } else {
            logRepeated(.halfOpenEvicted, ["reason": "global cap", "count": String(evicted.count)])
        }
    }
}
