internal import CTLS

/// A failure reported by OpenSSL: what we were doing (a file name, a call) and the reasons
/// drained from the thread's error queue (cleared before each call, so a failure never reports a stale entry).
public struct TLSError: Error, CustomStringConvertible, Equatable {
    /// The file or call the failure is about (docs/operations.md: a bad file is named).
    public let subject: String
    /// OpenSSL's root-cause reason: the oldest entry of the queue (later entries only say
    /// which wrapper gave up, e.g. `SSL routines::PEM lib`).
    public let reason: String
    /// What is wrong, in words, when it can be told (TLSFileCheck): read before OpenSSL's text.
    public var explanation: String? = nil

    package init(subject: String, reason: String, explanation: String? = nil) {
        self.subject = subject
        self.reason = reason
        self.explanation = explanation
    }

    public var description: String {
        guard let explanation else { return "\(subject): \(reason)" }
        return "\(subject): \(explanation) (OpenSSL: \(reason))"
    }

    /// Drains OpenSSL's error queue into one error (the queue is empty afterwards).
    package static func drain(_ subject: String, fallback: String = "unknown error") -> TLSError {
        let first = ERR_get_error()
        ERR_clear_error()
        return TLSError(subject: subject, reason: first == 0 ? fallback : errorString(first))
    }

    /// `ERR_error_string_n` text without its `error:XXXXXXXX:` prefix: library and reason,
    /// e.g. `PEM routines::no start line`.
    package static func errorString(_ code: UInt) -> String {
        let full = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buf -> String in
            ERR_error_string_n(code, buf.baseAddress, buf.count)
            return String(cString: buf.baseAddress!)
        }
        if full.hasPrefix("error:"), let colon = full.dropFirst(6).firstIndex(of: ":") {
            return String(full[full.index(after: colon)...])
        }
        return full
    }
}

/// One `SSL_CTX` for the TLS listener (one owning type, freed in
/// `deinit`), configured per docs/protocol.md §2.1 and loaded from the PEM files of §4.2.
/// A reload builds a new context; connections made on the old one keep it alive through
/// OpenSSL's own reference count (`SSL_new` takes a reference on its `SSL_CTX`).
public final class TLSContext {
    package let ctx: OpaquePointer
    public let certFile: String
    public let keyFile: String

    /// docs/protocol.md §2.1: TLS 1.2 ciphers are ECDHE with AEAD only, ECDSA before RSA, AES-128 before
    /// AES-256 before ChaCha20 (Mozilla "intermediate" order, applied as server preference).
    package static let tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        + "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        + "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    /// TLS 1.3 suites are all AEAD; listed to pin the order.
    package static let tls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    /// docs/protocol.md §2.1: X25519 and P-256 only.
    package static let groups = "X25519:P-256"
    /// TLS 1.3 NewSessionTicket messages sent after a full handshake (RFC 8446 §4.6.1).
    package static let ticketsPerHandshake = 1
    /// How often the session-ticket keys are replaced (docs/protocol.md §2.1 "rotated in memory"). A
    /// ticket sealed with an older key no longer resumes; the client does a full handshake.
    public static let ticketKeyRotationMs: Int64 = 12 * 3_600_000

    /// Loads `certFile` (leaf first, then chain) and `keyFile`, both PEM.
    public convenience init(certFile: String, keyFile: String) throws(TLSError) {
        try self.init(configuredFor: certFile, keyFile: keyFile)
        try loadPair()
    }

    /// A context with no certificate: every handshake fails with an alert. The TLS listener
    /// serves it while ACME has not yet obtained the first certificate (docs/operations.md "ACME").
    package static func withoutCertificate() throws(TLSError) -> TLSContext {
        try TLSContext(configuredFor: "", keyFile: "")
    }

    /// Protocol settings of docs/protocol.md §2.1, no certificate yet.
    private init(configuredFor certFile: String, keyFile: String) throws(TLSError) {
        self.certFile = certFile
        self.keyFile = keyFile
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError.drain("SSL_CTX_new") }
        self.ctx = ctx
        // From here on `deinit` frees ctx on every throw.
        guard pyry_ssl_ctx_set_min_proto_version(ctx, pyry_tls1_2_version()) == 1 else {
            throw TLSError.drain("SSL_CTX_set_min_proto_version")
        }
        _ = pyry_ssl_ctx_set_options(ctx, pyry_ssl_op_no_compression() | pyry_ssl_op_no_renegotiation()
                                         | pyry_ssl_op_cipher_server_preference())
        // Idle connections keep no 16 KiB record buffers (docs/protocol.md §2.1 memory); partial writes let
        // the connection's output queue drain one record at a time from a moving pointer.
        _ = pyry_ssl_ctx_set_mode(ctx, pyry_ssl_mode_release_buffers() | pyry_ssl_mode_partial_write())
        guard SSL_CTX_set_cipher_list(ctx, TLSContext.tls12Ciphers) == 1 else { throw TLSError.drain("SSL_CTX_set_cipher_list") }
        guard SSL_CTX_set_ciphersuites(ctx, TLSContext.tls13Suites) == 1 else { throw TLSError.drain("SSL_CTX_set_ciphersuites") }
        guard pyry_ssl_ctx_set1_groups_list(ctx, TLSContext.groups) == 1 else { throw TLSError.drain("SSL_CTX_set1_groups_list") }
        // One read(2) takes every record the kernel holds instead of a 5-byte header and then
        // the body of each record: a full handshake reads 3 times instead of 9, a burst of frames
        // once. OpenSSL then holds bytes epoll cannot see (`TLSSession.hasPendingInput`).
        pyry_ssl_ctx_set_read_ahead(ctx)
        // Stateless tickets carry resumption; a server-side cache would only cost memory.
        _ = pyry_ssl_ctx_set_session_cache_off(ctx)
        // One TLS 1.3 ticket per full handshake (OpenSSL's default is two), as Go's crypto/tls
        // sends: a client resumes with one, and each ticket costs a session copy, its sealing
        // and a record on the wire.
        guard SSL_CTX_set_num_tickets(ctx, TLSContext.ticketsPerHandshake) == 1 else { throw TLSError.drain("SSL_CTX_set_num_tickets") }
        pyry_ssl_ctx_set_alpn_http11(ctx)
        try rotateTicketKeys()
    }

    private func loadPair() throws(TLSError) {
        // No passphrase, ever: OpenSSL's default callback would prompt on the terminal and block
        // the boot, or the whole loop on a SIGHUP reload. An encrypted key fails to load instead.
        SSL_CTX_set_default_passwd_cb(ctx) { _, _, _, _ in 0 }
        guard SSL_CTX_use_certificate_chain_file(ctx, certFile) == 1 else {
            var e = TLSError.drain(certFile)
            e.explanation = TLSFileCheck.explainCertificate(certFile: certFile, keyFile: keyFile)
            throw e
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1, SSL_CTX_check_private_key(ctx) == 1 else {
            var e = TLSError.drain(keyFile)
            e.explanation = TLSFileCheck.explainKey(keyFile: keyFile, certFile: certFile, reason: e.reason)
            throw e
        }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Replaces the session-ticket keys (name 16 + HMAC 32 + AES 32 bytes) with fresh random ones.
    public func rotateTicketKeys() throws(TLSError) {
        var keys = [UInt8](repeating: 0, count: 80)
        ERR_clear_error()
        guard RAND_bytes(&keys, Int32(keys.count)) == 1 else { throw TLSError.drain("RAND_bytes") }
        guard pyry_ssl_ctx_set_ticket_keys(ctx, &keys, keys.count) == 1 else {
            throw TLSError.drain("SSL_CTX_set_tlsext_ticket_keys")
        }
        keys.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
    }

    /// A server-side session for an accepted socket (the socket stays owned by the caller).
    package func makeSession(fd: Int32) -> TLSSession? {
        TLSSession(ctx: ctx, fd: fd)
    }
}
