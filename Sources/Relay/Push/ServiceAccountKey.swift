import RelayCodecs
import RelayTransport

internal import CTLS

/// A Google service-account JSON key (`PYRYCODE_RELAY_FCM_CREDENTIALS`, docs/operations.md § Push):
/// the fields the OAuth2 JWT-bearer flow needs (RFC 7523), checked at boot so a key that cannot
/// sign is refused with exit 2 instead of failing every wake. Reasons never quote the key.
public final class ServiceAccountKey {
    /// The JWT's `iss` (RFC 7519 §4.1.1).
    public let clientEmail: String
    /// Where the assertion is exchanged for an access token; also the JWT's `aud`.
    public let tokenURI: String
    public let tokenURL: HTTPSURL
    /// The RSA private key (OpenSSL `EVP_PKEY`, freed in deinit).
    package let privateKey: OpaquePointer

    /// The key, or a fixed reason why it cannot be used.
    public static func parse(_ json: String) -> Result<ServiceAccountKey, KeyError> {
        guard let doc = JSONValue.parse(Array(json.utf8)), case .object = doc else { return .failure(.init("not a JSON object")) }
        guard doc["type"]?.stringValue == "service_account" else {
            return .failure(.init("field \"type\" is not \"service_account\""))
        }
        guard let email = doc["client_email"]?.stringValue, !email.isEmpty else {
            return .failure(.init("field \"client_email\" missing or empty"))
        }
        guard let uri = doc["token_uri"]?.stringValue, let url = HTTPSURL(uri) else {
            return .failure(.init("field \"token_uri\" missing or not an https URL"))
        }
        guard let pem = doc["private_key"]?.stringValue, let pkey = readRSAKey(pem) else {
            return .failure(.init("field \"private_key\" is not a PEM RSA private key"))
        }
        return .success(ServiceAccountKey(clientEmail: email, tokenURI: uri, tokenURL: url, privateKey: pkey))
    }

    public struct KeyError: Error, Equatable, Sendable {
        public let reason: String
        package init(_ reason: String) { self.reason = reason }
    }

    private init(clientEmail: String, tokenURI: String, tokenURL: HTTPSURL, privateKey: OpaquePointer) {
        self.clientEmail = clientEmail
        self.tokenURI = tokenURI
        self.tokenURL = tokenURL
        self.privateKey = privateKey
    }

    deinit { EVP_PKEY_free(privateKey) }

    /// RS256 = RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3) over `data`.
    package func signRS256(_ data: [UInt8]) -> [UInt8]? {
        guard let md = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(md) }
        defer { ERR_clear_error() }
        guard EVP_DigestSignInit(md, nil, EVP_sha256(), nil, privateKey) == 1 else { return nil }
        var length = 0
        let ok = data.withUnsafeBufferPointer { d -> Bool in
            guard EVP_DigestSign(md, nil, &length, d.baseAddress, d.count) == 1 else { return false }
            return true
        }
        guard ok else { return nil }
        var signature = [UInt8](repeating: 0, count: length)
        let signed = data.withUnsafeBufferPointer { d in
            signature.withUnsafeMutableBufferPointer { s in EVP_DigestSign(md, s.baseAddress, &length, d.baseAddress, d.count) }
        }
        guard signed == 1 else { return nil }
        return Array(signature[..<length])
    }

    /// A PEM private key (PKCS#8 `PRIVATE KEY`, as Google issues, or PKCS#1 `RSA PRIVATE KEY`)
    /// that is RSA; nil otherwise. No passphrase: the callback refuses any prompt.
    private static func readRSAKey(_ pem: String) -> OpaquePointer? {
        defer { ERR_clear_error() }
        let bytes = Array(pem.utf8)
        let key: OpaquePointer? = bytes.withUnsafeBytes { b in
            guard let bio = BIO_new_mem_buf(b.baseAddress, Int32(b.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, { _, _, _, _ in 0 }, nil)
        }
        guard let key else { return nil }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA, EVP_PKEY_get_bits(key) >= 2048 else {
            EVP_PKEY_free(key)
            return nil
        }
        return key
    }
}
