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

    package func makeHalfOpenRoom(for key: ClientKey) {
        for c in halfOpen.makeRoom(for: key) {
            metrics.halfOpenEvictions += 1
            c.abort()
        }
    }

    /// The PROXY v2 header named the client of a connection not yet upgraded: it counts under that client now.
    package func connection(_ c: Connection, wasProxiedFrom source: SocketAddress) {
        guard let key = ClientKey(source) else { return }
        for evicted in halfOpen.rekey(c, to: key) {
            metrics.halfOpenEvictions += 1
            evicted.abort()
        }
    }
}
