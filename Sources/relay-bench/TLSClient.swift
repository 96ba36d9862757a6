import CEpoll
import CTLS

/// Client-side TLS for `wss://` targets (S6, S7, M1 TLS): one `SSL_CTX` per generator process.
/// SNI "localhost"; no certificate verification unless `--ca FILE` is given (then the chain and
/// the name "localhost" are checked, RFC 6125 via `SSL_set1_host`).
final class TLSClientContext {
    let ctx: OpaquePointer
    let serverName: String
    let verify: Bool

    init(caFile: String?, serverName: String = "localhost") throws(BenchError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw BenchError("SSL_CTX_new failed") }
        self.ctx = ctx
        self.serverName = serverName
        verify = caFile != nil
        // The generator holds thousands of idle connections too (M1 TLS): no idle record buffers.
        // Partial writes from a moving pointer: the output queue drains one record at a time
        // and may be reallocated between a would-block and its retry.
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_MODE, Int(SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE
                                                 | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        // Resumption is driven by hand (S7 keeps one SSL_SESSION and sets it on each connection):
        // the client-side cache stays off so a "full handshake" run never resumes by accident.
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_SESS_CACHE_MODE, Int(SSL_SESS_CACHE_OFF), nil)
        if let caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                ERR_clear_error()
                throw BenchError("cannot load CA file \(caFile)")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
    }

    deinit { SSL_CTX_free(ctx) }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ s: String) { description = s }
}
