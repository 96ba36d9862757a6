internal import CTLS

/// Outcome of checking a WebSocket opening handshake request.
public enum HandshakeResult: Sendable {
    /// Answer 101 with this `Sec-WebSocket-Accept` value.
    case accept(acceptKey: String)
    /// Answer with this status and these headers (after the error headers of `HTTPResponse.error`),
    /// then close.
    case reject(HTTPStatus, extraHeaders: [(String, String)])
}

/// The server side of the RFC 6455 §4.2.1 opening-handshake checks, in the order of
/// docs/protocol.md: method 405 → HTTP/1.1 426 → Upgrade/Connection 426 → version 400 → key 400.
/// Pure: the route, Host (421), admission (429/503) and header-gate (400) checks come before it,
/// in the caller. Any Origin is accepted and no subprotocol is selected.
public enum WebSocketHandshake {
    /// RFC 6455 §1.3 / §4.2.2: the GUID appended to the client's key.
    package static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    public static func validate(_ head: HTTPRequestHead) -> HandshakeResult {
        // §4.2.1 item 1: a GET request. RFC 9110 §15.5.6: a 405 MUST list the allowed methods.
        guard head.method == "GET" else {
            return .reject(.methodNotAllowed, extraHeaders: [("Allow", "GET")])
        }
        // A 426 tells the client what to upgrade to: RFC 9110 §15.5.22 requires Upgrade
        // (HTTPResponse.error then adds the Connection `Upgrade` option), §4.4 the version we speak.
        let upgradeRequired: [(String, String)] = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
        // §4.2.1 item 1: HTTP/1.1 or higher (an HTTP/1.0 server ignores Upgrade, RFC 9110 §7.8).
        guard head.versionMinor >= 1 else {
            return .reject(.upgradeRequired, extraHeaders: upgradeRequired)
        }
        // §4.2.1 items 3–4.
        guard head.hasToken("upgrade", "websocket"), head.hasToken("connection", "upgrade") else {
            return .reject(.upgradeRequired, extraHeaders: upgradeRequired)
        }
        // §4.2.1 item 6: exactly one Sec-WebSocket-Version, 13. Else, as §4.4's example (and the
        // Go relay), 400 naming the version we speak.
        guard head.count("sec-websocket-version") == 1, head.value("sec-websocket-version") == "13" else {
            return .reject(.badRequest, extraHeaders: [("Sec-WebSocket-Version", "13")])
        }
        // §4.2.1 item 5: one key, base64 of a 16-byte nonce (values are already OWS-trimmed).
        guard head.count("sec-websocket-key") == 1, let key = head.value("sec-websocket-key"),
            let nonce = Base64.decode(key), nonce.count == 16
        else {
            return .reject(.badRequest, extraHeaders: [])
        }
        return .accept(acceptKey: acceptKey(for: key))
    }

    /// SHA-1 fetched from the default provider once: with `EVP_sha1()` every `EVP_Digest` looks
    /// the algorithm up again (OpenSSL 3), ~2 k instructions per upgrade (docs/benchmarks.md
    /// "What a connection costs"). A fetched `EVP_MD` is immutable: any thread may use it.
    nonisolated(unsafe) private static let sha1: OpaquePointer? = EVP_MD_fetch(nil, "SHA1", nil)

    /// RFC 6455 §4.2.2 item 5.4: base64(SHA-1(key ‖ GUID)). The key is used as received (trimmed).
    public static func acceptKey(for clientKey: String) -> String {
        let input = Array((clientKey + guid).utf8)
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = input.withUnsafeBytes { inp in
            digest.withUnsafeMutableBufferPointer { out in
                EVP_Digest(inp.baseAddress, inp.count, out.baseAddress, &length, sha1, nil)
            }
        }
        // EVP_Digest over memory fails only without a default provider or on allocation failure:
        // the process cannot serve anything then.
        precondition(ok == 1 && length == 20, "EVP_Digest(SHA-1) failed")
        return Base64.encode(digest[0..<20])
    }
}
