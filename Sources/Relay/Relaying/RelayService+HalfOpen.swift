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

    /// `remote`: the newcomer's address, named in the log line when room is made for it.
    package func makeHalfOpenRoom(for key: ClientKey, remote: SocketAddress) {
        let atClientCap = halfOpen.count(of: key) >= halfOpen.perKeyLimit && key != .unattributed
        evict(halfOpen.makeRoom(for: key), for: key, remote: remote, atClientCap: atClientCap)
    }

    /// The PROXY v2 header named the client of a connection not yet upgraded: it counts under that client now.
    package func connection(_ c: Connection, wasProxiedFrom source: SocketAddress) {
        guard let key = ClientKey(source) else { return }
        evict(halfOpen.rekey(c, to: key), for: key, remote: source, atClientCap: true)
    }

    /// Closes what made room, counts it, and says so in a budgeted line (docs/operations.md, "Log
    /// volume": a flood evicts again and again), naming the cap that was full. The client's own
    /// (`per-client cap`): its connections made room for its newest, so the flooder is named.
    /// The relay's (`global cap`): the newcomer may be anyone and the closed connections belong
    /// to the clients holding the most, so no address is named.
    private func evict(_ evicted: [Connection], for key: ClientKey, remote: SocketAddress, atClientCap: Bool) {
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
