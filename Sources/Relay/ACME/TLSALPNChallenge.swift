import RelayTransport

internal import CTLS

/// The tls-alpn-01 answer (RFC 8737) on the TLS listener: while set, a handshake that offers ALPN
/// `acme-tls/1` with SNI `--domain` gets a self-signed certificate carrying the acmeIdentifier
/// extension, and `acme-tls/1` is negotiated (the C callbacks in the CTLS shim do the selection,
/// so no Swift closure runs inside OpenSSL). Every TLS context the listener uses is hooked up
/// with `attach`; the slot lives as long as the process's ACME manager.
package final class TLSALPNChallenge {
    private let slot: UnsafeMutablePointer<pyry_alpn_challenge>
    private var key: ACMEKey?

    package init() {
        slot = .allocate(capacity: 1)
        slot.initialize(to: pyry_alpn_challenge())
    }

    deinit {
        clear()
        slot.deallocate()
    }

    package func attach(to context: TLSContext) {
        pyry_ssl_ctx_enable_acme_alpn(context.ctx, slot)
    }

    /// Publishes the certificate for `domain` and `keyAuthorization` (RFC 8737 §3: the extension
    /// holds SHA-256 of the key authorization). False when OpenSSL could not make it.
    package func set(domain: String, keyAuthorization: String) -> Bool {
        clear()
        guard let k = try? ACMEKey.generate(), domain.utf8.count < 256 else { return false }
        let digest = sha256(Array(keyAuthorization.utf8))
        guard let cert = pyry_acme_tls_alpn_cert(k.pkey, domain, digest) else {
            ERR_clear_error()
            return false
        }
        key = k
        withUnsafeMutableBytes(of: &slot.pointee.name) { buf in
            let bytes = Array(domain.utf8)
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        slot.pointee.key = k.pkey
        slot.pointee.cert = cert
        return true
    }

    package func clear() {
        if let cert = slot.pointee.cert { X509_free(cert) }
        slot.pointee.cert = nil
        slot.pointee.key = nil
        key = nil
    }
}
