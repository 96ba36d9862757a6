/// A parsed request line and header section (RFC 9112 §3, §5). Bodies are never read by the relay
/// (docs/protocol.md §3): `contentLength` and `hasTransferEncoding` let the caller refuse requests that carry one.
public struct HTTPRequestHead: Sendable {
    /// As sent: methods are case-sensitive (RFC 9110 §9.1), so `get` is not `GET`.
    public var method: String
    /// The request-target as sent (RFC 9112 §3.2).
    public var target: String
    /// `target` up to the first `?` (docs/protocol.md §2: query strings are ignored by routing). An
    /// absolute-form target (`http://host/p`) is kept whole, so it matches no route (404).
    public var path: String
    /// `HTTP/1.x` → x. Any single-digit minor version is accepted and a minor above 1 is handled
    /// as 1.1 (RFC 9110 §6.2); a major version other than 1 is refused with 505 by the parser.
    public var versionMinor: Int
    /// In arrival order; names lowercased (field names are case-insensitive, RFC 9110 §5.1),
    /// values with leading/trailing OWS removed (RFC 9112 §5.1).
    public var headers: [(name: String, value: String)]
    /// The validated Content-Length (all lines agree, digits only), nil when absent.
    public var contentLength: Int?
    /// True when any Transfer-Encoding line is present (with or without Content-Length: the parser
    /// refuses the combination, RFC 9112 §6.1).
    public var hasTransferEncoding: Bool

    public init(
        method: String, target: String, versionMinor: Int, headers: [(name: String, value: String)],
        contentLength: Int? = nil, hasTransferEncoding: Bool = false
    ) {
        self.method = method
        self.target = target
        if let q = target.utf8.firstIndex(of: HTTPGrammar.question) {
            self.path = String(target[..<q])
        } else {
            self.path = target
        }
        self.versionMinor = versionMinor
        self.headers = headers
        self.contentLength = contentLength
        self.hasTransferEncoding = hasTransferEncoding
    }

    /// The first value of the header `lowercasedName` (pass the name in lowercase).
    public func value(_ lowercasedName: String) -> String? {
        for h in headers where h.name == lowercasedName { return h.value }
        return nil
    }

    /// Every value of `lowercasedName`, one per header line, in arrival order.
    public func values(_ lowercasedName: String) -> [String] {
        headers.compactMap { $0.name == lowercasedName ? $0.value : nil }
    }

    /// How many header lines are named `lowercasedName`.
    public func count(_ lowercasedName: String) -> Int {
        var n = 0
        for h in headers where h.name == lowercasedName { n += 1 }
        return n
    }

    /// Whether the comma-separated token lists (RFC 9110 §5.6.1) of every `lowercasedName` line
    /// contain `token`, ASCII case-insensitively (RFC 9110 §7.6.1 connection options and §7.8
    /// protocol names are case-insensitive).
    public func hasToken(_ lowercasedName: String, _ token: String) -> Bool {
        var token = token
        return token.withUTF8 { t in
            for h in headers where h.name == lowercasedName {
                var value = h.value
                if value.withUTF8({ HTTPGrammar.listContains($0, t) }) { return true }
            }
            return false
        }
    }

    /// Persistence per RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 only
    /// with `Connection: keep-alive` (and no `close`).
    public var keepAlive: Bool {
        if hasToken("connection", "close") { return false }
        if versionMinor >= 1 { return true }
        return hasToken("connection", "keep-alive")
    }
}
