extension HTTPRequestHead {
    /// The request announces a body (RFC 9112 §6.3: `Transfer-Encoding`, or a non-zero
    /// `Content-Length`). The relay never reads bodies, so such a request ends its connection.
    public var carriesBody: Bool { hasTransferEncoding || (contentLength ?? 0) > 0 }
}

extension HTTPResponse {
    /// `response` (a complete status line + headers + body) cut after its header block, for
    /// HEAD (RFC 9110 §9.3.2: same headers as GET, `Content-Length` included, no content).
    public static func withoutBody(_ response: [UInt8]) -> [UInt8] {
        var i = 3
        while i < response.count {
            if response[i] == 0x0A && response[i - 1] == 0x0D && response[i - 2] == 0x0A && response[i - 3] == 0x0D {
                return Array(response[...i])
            }
            i += 1
        }
        return response
    }
}
