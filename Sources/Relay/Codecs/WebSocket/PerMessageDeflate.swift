/// permessage-deflate negotiation (RFC 7692 §5, §7.1), server side. Pure: offers in, the
/// agreement and its response header out.
///
/// The relay always answers `server_no_context_takeover` and `client_no_context_takeover`
/// (§7.1.1), so neither direction keeps an LZ77 window between messages: one deflate and one
/// inflate stream on the loop (`DeflateCodec`) serve every connection, reset per message, and an
/// idle compressed connection holds no compression state.
public enum PerMessageDeflate {
    public static let extensionName = "permessage-deflate"

    /// What was agreed for one connection.
    public struct Agreement: Equatable, Sendable {
        /// LZ77 window of what we send (§7.1.2.1): 15 unless the client asked for less; answered
        /// with the value offered.
        public var serverMaxWindowBits: UInt8
        /// The `windowBits` our deflater runs with. zlib refuses raw deflate with 8 (deflateInit2
        /// needs 9–15 without a zlib header), so 8 runs as 9, as Python websockets and Autobahn do.
        /// That still honours 8: zlib's deflate never reaches back further than the window minus
        /// its 262-byte lookahead (`MAX_DIST`), 250 bytes for a 9-bit window, within the 256 of 8.
        public var deflateWindowBits: Int32 { Int32(max(serverMaxWindowBits, 9)) }
        /// The `Sec-WebSocket-Extensions` value of the 101 response.
        public var responseValue: String {
            var s = "\(PerMessageDeflate.extensionName); server_no_context_takeover; client_no_context_takeover"
            if answersServerWindowBits { s += "; server_max_window_bits=\(serverMaxWindowBits)" }
            return s
        }
        /// The offer named `server_max_window_bits`, so the answer must name it too (§7.1.2.1).
        package var answersServerWindowBits: Bool
    }

    /// Accepts the first acceptable `permessage-deflate` offer among the request's
    /// `Sec-WebSocket-Extensions` header values (§7.1: "a server accepts the first ... it supports";
    /// §5.1: a list may hold several offers, across several header lines). An offer with an unknown,
    /// duplicated or malformed parameter is declined (§7.1: "MUST decline"); nil when none is
    /// acceptable, and the connection runs without the extension.
    public static func negotiate(_ headerValues: [String]) -> Agreement? {
        for value in headerValues {
            for element in split(value, on: ",") {
                if let agreement = accept(element) { return agreement }
            }
        }
        return nil
    }

    /// One offer: `permessage-deflate *( ";" param [ "=" value ] )` (RFC 6455 §9.1).
    package static func accept(_ element: Substring) -> Agreement? {
        let parts = split(element, on: ";")
        guard let name = parts.first, name.lowercased() == extensionName else { return nil }
        var seen = Set<String>()
        var serverBits: UInt8?
        for param in parts.dropFirst() {
            let nameValue = param.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = nameValue[0].trimmingASCIISpaces().lowercased()
            // §7.1: the same parameter twice → decline the offer.
            guard !key.isEmpty, seen.insert(key).inserted else { return nil }
            let raw: Substring? = nameValue.count == 2 ? unquote(nameValue[1].trimmingASCIISpaces()) : nil
            switch key {
            case "server_no_context_takeover", "client_no_context_takeover":
                // §7.1.1.1, §7.1.1.2: these carry no value.
                guard raw == nil else { return nil }
            case "server_max_window_bits":
                // §7.1.2.1: a value is required.
                guard let raw, let bits = windowBits(raw) else { return nil }
                serverBits = bits
            case "client_max_window_bits":
                // §7.1.2.2: the value is optional. We inflate with the largest window (15), which
                // decodes whatever window the client picks, so we never limit it in the answer.
                if let raw, windowBits(raw) == nil { return nil }
            default:
                return nil  // §7.1: an unknown parameter → decline
            }
        }
        return Agreement(serverMaxWindowBits: serverBits ?? 15, answersServerWindowBits: serverBits != nil)
    }

    /// §7.1.2: `1*DIGIT` in 8...15, no leading zero.
    package static func windowBits(_ s: Substring) -> UInt8? {
        guard !s.isEmpty, s.count <= 2, s.first != "0", s.allSatisfy({ $0.isASCII && $0.isNumber }),
              let v = UInt8(s), (8...15).contains(v) else { return nil }
        return v
    }

    /// A quoted-string value (RFC 6455 §9.1 allows one; RFC 7692 §7.1 says it must parse as the
    /// token it would otherwise be). Nil for an unterminated quote, which declines the offer.
    package static func unquote(_ s: Substring) -> Substring? {
        guard s.first == "\"" else { return s }
        guard s.count >= 2, s.last == "\"" else { return nil }
        let inner = s.dropFirst().dropLast()
        return inner.contains("\\") || inner.contains("\"") ? nil : inner
    }

    /// Splits on `separator` outside quoted strings, trimming optional whitespace; empty list
    /// elements are skipped (RFC 9110 §5.6.1).
    package static func split(_ s: some StringProtocol, on separator: Character) -> [Substring] {
        let text = Substring(s)
        var out: [Substring] = []
        var start = text.startIndex
        var quoted = false
        var i = text.startIndex
        while i < text.endIndex {
            let ch = text[i]
            if ch == "\"" { quoted.toggle() }
            if ch == separator && !quoted {
                let part = text[start..<i].trimmingASCIISpaces()
                if !part.isEmpty { out.append(part) }
                start = text.index(after: i)
            }
            i = text.index(after: i)
        }
        let last = text[start...].trimmingASCIISpaces()
        if !last.isEmpty { out.append(last) }
        return out
    }
}
