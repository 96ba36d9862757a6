/// Serialized HTTP/1.1 responses (RFC 9112 §4, §6). Header names and values passed in come from
/// the relay's own code, never from a request (docs/protocol.md §2: no error echoes input).
public enum HTTPResponse {
    /// docs/protocol.md §2 error response: empty body, `Content-Type: text/plain; charset=utf-8`,
    /// `Content-Length: 0`, the extra headers, and `Connection: close` when `close` (the caller
    /// closes the socket after writing it). When an extra header is `Upgrade` (426, RFC 9110
    /// §15.5.22), the Connection header also carries the `Upgrade` option, as RFC 9110 §7.8
    /// requires of a sender of Upgrade.
    public static func error(_ status: HTTPStatus, close: Bool, extraHeaders: [(String, String)] = []) -> [UInt8] {
        var out = statusLine(status)
        header(&out, "Content-Type", "text/plain; charset=utf-8")
        header(&out, "Content-Length", "0")
        var upgrade = false
        for (name, value) in extraHeaders {
            header(&out, name, value)
            if HTTPGrammar.equalsIgnoringASCIICase(name.utf8, "upgrade".utf8) { upgrade = true }
        }
        switch (upgrade, close) {
        case (true, true): header(&out, "Connection", "Upgrade, close")
        case (true, false): header(&out, "Connection", "Upgrade")
        case (false, true): header(&out, "Connection", "close")
        case (false, false): break
        }
        out.append(contentsOf: crlf)
        return out
    }

    /// A 200 with a body (docs/protocol.md §2 `/healthz`). For an HTTP/1.0 client kept alive, the caller
    /// passes `("Connection", "keep-alive")` in `extraHeaders` (RFC 9112 §9.3).
    public static func ok(body: [UInt8], contentType: String, extraHeaders: [(String, String)], close: Bool) -> [UInt8] {
        withBody(.ok, body: body, contentType: contentType, extraHeaders: extraHeaders, close: close)
    }

    /// Any status with a body (the ACME listener's 503 `/healthz` before a certificate exists).
    package static func withBody(_ status: HTTPStatus, body: [UInt8], contentType: String, extraHeaders: [(String, String)],
                         close: Bool) -> [UInt8] {
        var out = statusLine(status)
        out.reserveCapacity(128 + body.count)
        header(&out, "Content-Type", contentType)
        header(&out, "Content-Length", String(body.count))
        for (name, value) in extraHeaders { header(&out, name, value) }
        if close { header(&out, "Connection", "close") }
        out.append(contentsOf: crlf)
        out.append(contentsOf: body)
        return out
    }

    /// The 101 that completes the WebSocket opening handshake (RFC 6455 §4.2.2 item 5).
    public static func switchingProtocols(accept: String, extraHeaders: [(String, String)] = []) -> [UInt8] {
        var out = statusLine(.switchingProtocols)
        header(&out, "Upgrade", "websocket")
        header(&out, "Connection", "Upgrade")
        header(&out, "Sec-WebSocket-Accept", accept)
        for (name, value) in extraHeaders { header(&out, name, value) }
        out.append(contentsOf: crlf)
        return out
    }

    private static let crlf: [UInt8] = [HTTPGrammar.cr, HTTPGrammar.lf]

    private static func statusLine(_ status: HTTPStatus) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(160)
        out.append(contentsOf: "HTTP/1.1 \(status.code) \(status.reason)\r\n".utf8)
        return out
    }

    private static func header(_ out: inout [UInt8], _ name: String, _ value: String) {
        // Response splitting guard: our own headers never contain CR/LF; catch a mistake in tests.
        assert(!name.utf8.contains(where: { $0 == HTTPGrammar.cr || $0 == HTTPGrammar.lf }))
        assert(!value.utf8.contains(where: { $0 == HTTPGrammar.cr || $0 == HTTPGrammar.lf }))
        out.append(contentsOf: name.utf8)
        out.append(contentsOf: ": ".utf8)
        out.append(contentsOf: value.utf8)
        out.append(contentsOf: crlf)
    }
}
