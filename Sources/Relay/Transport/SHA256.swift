internal import CTLS

/// SHA-256 of `bytes`, through OpenSSL's EVP (push token fingerprints; ACME key authorizations,
/// RFC 8555 §8.1, and JWK thumbprints, RFC 7638).
package func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 32)
    var length: UInt32 = 0
    let ok = EVP_Digest(bytes, bytes.count, &out, &length, EVP_sha256(), nil)
    // Fails only without a default provider or on allocation failure: nothing to recover.
    precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
    return out
}
