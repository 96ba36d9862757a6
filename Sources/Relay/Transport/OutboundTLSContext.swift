internal import CTLS

/// The `SSL_CTX` of the outbound HTTPS client: TLS 1.2+, the peer's certificate verified against
/// the system trust store — `SSL_CTX_set_default_verify_paths`, so `SSL_CERT_FILE` / `SSL_CERT_DIR`
/// apply as for every OpenSSL client — and each session checks the host name (or IP) it dialled.
package final class OutboundTLSContext {
    package let ctx: OpaquePointer

    package init() throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError.drain("SSL_CTX_new") }
        self.ctx = ctx
        guard pyry_ssl_ctx_set_min_proto_version(ctx, pyry_tls1_2_version()) == 1 else {
            throw TLSError.drain("SSL_CTX_set_min_proto_version")
        }
        _ = pyry_ssl_ctx_set_options(ctx, pyry_ssl_op_no_compression() | pyry_ssl_op_no_renegotiation())
        _ = pyry_ssl_ctx_set_mode(ctx, pyry_ssl_mode_release_buffers() | pyry_ssl_mode_partial_write())
        guard SSL_CTX_set_default_verify_paths(ctx) == 1 else { throw TLSError.drain("SSL_CTX_set_default_verify_paths") }
        // A failed verification aborts the handshake: no application byte is ever sent to an
        // unverified peer (RFC 8446 §4.4.2.4).
        SSL_CTX_set_verify(ctx, pyry_ssl_verify_peer(), nil)
    }

    deinit { SSL_CTX_free(ctx) }

    /// A client session on a connected socket for `url`'s host: SNI and the host-name check for a
    /// name (RFC 6125, no partial wildcards), the IP check for an IP literal (no SNI, RFC 6066 §3).
    package func makeSession(fd: Int32, host: String, isIPLiteral: Bool) -> TLSSession? {
        guard let session = TLSSession(ctx: ctx, fd: fd) else { return nil }
        let ssl = session.ssl
        SSL_set_connect_state(ssl)
        ERR_clear_error()
        if isIPLiteral {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                ERR_clear_error()
                return nil
            }
        } else {
            SSL_set_hostflags(ssl, pyry_x509_check_flag_no_partial_wildcards())
            guard pyry_ssl_set_sni(ssl, host) == 1, SSL_set1_host(ssl, host) == 1 else {
                ERR_clear_error()
                return nil
            }
        }
        // ALPN "http/1.1" (RFC 7301): a server that also speaks h2 must not pick it.
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        _ = SSL_set_alpn_protos(ssl, alpn, UInt32(alpn.count))
        return session
    }

    /// The short text of a failed handshake: the certificate check's verdict when that is what
    /// failed (e.g. `certificate: hostname mismatch`), else OpenSSL's reason.
    package static func failureText(_ session: TLSSession, reason: String) -> String {
        let v = SSL_get_verify_result(session.ssl)
        if v != pyry_x509_v_ok() {
            return "certificate: " + String(cString: X509_verify_cert_error_string(v))
        }
        return "handshake: " + reason
    }
}
