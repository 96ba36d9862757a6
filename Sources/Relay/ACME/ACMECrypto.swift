import RelayCodecs
import RelayTransport

internal import CTLS

/// An ECDSA P-256 key: the ACME account key (ES256, RFC 8555 §6.2) and the certificate key.
package final class ACMEKey {
    package let pkey: OpaquePointer

    private init(_ pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }

    package static func generate() throws(TLSError) -> ACMEKey {
        ERR_clear_error()
        guard let k = pyry_ec_p256_generate() else { throw TLSError.drain("EC P-256 key generation") }
        return ACMEKey(k)
    }

    /// A PEM private key (PKCS#8 or SEC1). nil for anything else, including a key that is not P-256.
    package static func load(pem: [UInt8]) -> ACMEKey? {
        ERR_clear_error()
        defer { ERR_clear_error() }
        let key: OpaquePointer? = pem.withUnsafeBytes { p in
            guard let bio = BIO_new_mem_buf(p.baseAddress, Int32(p.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
        }
        guard let key else { return nil }
        let k = ACMEKey(key)
        var xy = [UInt8](repeating: 0, count: 64)
        return pyry_ec_p256_public_xy(key, &xy) == 1 ? k : nil
    }

    /// PKCS#8 PEM, unencrypted (the cache directory is 0700 and the files 0600).
    package func pem() -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { return [] }
        defer { BIO_free(bio) }
        guard PEM_write_bio_PrivateKey(bio, pkey, nil, nil, 0, nil, nil) == 1 else { return [] }
        var p: UnsafeMutablePointer<CChar>? = nil
        let n = pyry_bio_mem_data(bio, &p)
        guard let p, n > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    /// The public JWK (RFC 7517, RFC 7518 §6.2) with members in the lexicographic order RFC 7638
    /// §3.2 needs for the thumbprint.
    package var jwk: String {
        var xy = [UInt8](repeating: 0, count: 64)
        _ = pyry_ec_p256_public_xy(pkey, &xy)
        return "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"\(Base64.urlEncode(xy[0..<32]))\",\"y\":\"\(Base64.urlEncode(xy[32..<64]))\"}"
    }

    /// RFC 7638 thumbprint, base64url: the second half of every key authorization (RFC 8555 §8.1).
    package var thumbprint: String { Base64.urlEncode(sha256(Array(jwk.utf8))) }

    /// ES256 over `message`: R||S, 64 bytes (RFC 7518 §3.4).
    package func sign(_ message: [UInt8]) throws(TLSError) -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: 64)
        ERR_clear_error()
        guard pyry_es256_sign(pkey, message, message.count, &sig) == 1 else { throw TLSError.drain("ES256 sign") }
        return sig
    }

    /// A DER CSR for `domain` signed by this key (RFC 8555 §7.4 finalize).
    package func csr(domain: String) throws(TLSError) -> [UInt8] {
        ERR_clear_error()
        var der: UnsafeMutablePointer<UInt8>? = nil
        let n = pyry_csr_der(pkey, domain, &der)
        guard n > 0, let der else { throw TLSError.drain("CSR") }
        defer { pyry_openssl_free(der) }
        return Array(UnsafeBufferPointer(start: der, count: Int(n)))
    }
}

/// What the relay needs to know about a leaf certificate: when it expires, its serial (logs,
/// tests) and whether it names the domain (a cache entry for another name is re-ordered).
package struct CertificateInfo: Equatable {
    package let notAfter: Int64
    package let serial: String
    package let matchesDomain: Bool

    /// The first certificate of a PEM chain (the leaf, RFC 8555 §7.4.2).
    package init?(chainPEM: [UInt8], domain: String) {
        ERR_clear_error()
        defer { ERR_clear_error() }
        let x509: OpaquePointer? = chainPEM.withUnsafeBytes { p in
            guard let bio = BIO_new_mem_buf(p.baseAddress, Int32(p.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_X509(bio, nil, nil, nil)
        }
        guard let x509 else { return nil }
        defer { X509_free(x509) }
        let t = pyry_x509_not_after(x509)
        var hex = [CChar](repeating: 0, count: 128)
        guard t > 0, pyry_x509_serial_hex(x509, &hex, hex.count) == 1 else { return nil }
        notAfter = Int64(t)
        serial = String(decoding: hex.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        matchesDomain = pyry_x509_matches_host(x509, domain) == 1
    }
}
