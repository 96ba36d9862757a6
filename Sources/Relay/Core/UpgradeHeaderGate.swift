import RelayCodecs

/// The header gate of `/v1/server` and `/v1/client` (docs/protocol.md): the checks after
/// admission (429/503) and before the RFC 6455 handshake. A request that fails one gets 400 with
/// an empty body and is counted as `reject_headers`. Pure.
package enum UpgradeHeaderGate {
    /// Headers that must be present and non-empty, per route. `X-Pyrycode-Token` is checked for
    /// presence only: never parsed, compared, logged or forwarded.
    package static let requiredServerHeaders = ["x-pyrycode-server", "x-pyrycode-version", "user-agent"]
    package static let requiredClientHeaders = ["x-pyrycode-server", "x-pyrycode-token", "user-agent"]

    package static func admits(_ head: HTTPRequestHead, endpoint: Endpoint) -> Bool {
        let required = endpoint == .server ? requiredServerHeaders : requiredClientHeaders
        for name in required where (head.value(name) ?? "").isEmpty { return false }
        // One server-id line only: a proxy that joins repeated lines (RFC 9110 §5.3) or routes on
        // the last one would disagree with us about which binary the request is for.
        guard head.count("x-pyrycode-server") == 1, isValidServerID(head.value("x-pyrycode-server")!) else {
            return false
        }
        // The relay reads no request body, and after a 101 every byte behind the head is parsed
        // as WebSocket frames: a body would be taken for frames, and a proxy that forwards it as
        // a body would disagree with us about where the WebSocket starts (RFC 9112 §6.3).
        return !head.carriesBody
    }

    /// 1…`Limits.maxServerIDBytes` bytes of visible ASCII (0x21–0x7E).
    ///
    /// The parser decodes header values with `String(decoding:as: UTF8.self)`, which turns every
    /// invalid sequence into U+FFFD, so `coll\xFF` and `coll\xFE` would become the same key. The
    /// check is exact on the raw bytes all the same: decoding keeps ASCII bytes as they are and
    /// turns every other byte into non-ASCII output, so the decoded value is visible ASCII exactly
    /// when the bytes received were, and then it equals them.
    package static func isValidServerID(_ id: String) -> Bool {
        let bytes = id.utf8
        guard bytes.count >= 1 && bytes.count <= Limits.maxServerIDBytes else { return false }
        return bytes.allSatisfy(HTTPGrammar.isVisible)
    }
}
