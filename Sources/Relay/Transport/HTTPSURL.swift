/// "https://host[:port]/path?query" — https only (anything else: nil). host may be a name, an IPv4
/// literal or a bracketed IPv6 literal.
public struct HTTPSURL: Equatable, Sendable {
    public var host: String
    public var port: UInt16
    public var path: String

    public init?(_ string: String) {
        guard string.hasPrefix("https://") else { return nil }
        let rest = string.dropFirst("https://".count)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<slash]
        var p = String(rest[slash...])
        if p.isEmpty { p = "/" } else if p.hasPrefix("?") { p = "/" + p }
        guard !authority.contains("@"), !authority.isEmpty else { return nil }
        var portText: Substring? = nil
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
            authority = authority[authority.index(after: authority.startIndex)..<close]
        } else if let colon = authority.lastIndex(of: ":") {
            portText = authority[authority.index(after: colon)...]
            authority = authority[..<colon]
        }
        guard !authority.isEmpty, !p.contains(where: { $0 == " " || $0 == "#" }) else { return nil }
        if let t = portText {
            guard let n = UInt16(t), n > 0 else { return nil }
            port = n
        } else {
            port = 443
        }
        host = String(authority)
        path = p
    }
}
