/// A decoded JSON document (RFC 8259) for the few small documents the relay reads whole on
/// cold paths — the FCM service-account key, the OAuth2 token answer, FCM's answer, a wake
/// request (docs/protocol.md §9) — never for relayed messages, which are only scanned.
/// Built on `JSONScanner`, so the grammar (and its UTF-8 strictness) is the relay's one grammar.
public enum JSONValue: Equatable, Sendable {
    case string(String)
    /// An integer literal without sign, fraction or exponent (saturated at `UInt64.max`).
    case unsigned(UInt64)
    /// Any other number, as its literal text.
    case number(String)
    case bool(Bool)
    case null
    case array([JSONValue])
    /// Members in document order; a repeated name keeps every occurrence (`member` takes the last,
    /// as Go's `encoding/json` does).
    case object([(String, JSONValue)])

    /// Nesting deeper than this is refused: the documents read this way are a few levels deep.
    public static let maxDepth = 16

    /// The document in `bytes`, or nil when it is not exactly one JSON value or nests too deep.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> JSONValue? {
        var s = JSONScanner(bytes)
        s.skipWhitespace()
        guard let v = value(&s, depth: maxDepth) else { return nil }
        s.skipWhitespace()
        return s.atEnd ? v : nil
    }

    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        bytes.withUnsafeBytes { parse($0) }
    }

    /// `s` as a JSON string literal (RFC 8259 §7), for the few documents the relay writes itself
    /// (ACME requests, the ACME port's /healthz).
    public static func quote(_ s: String) -> String {
        "\"" + String(decoding: JSONString.escaped(s), as: UTF8.self) + "\""
    }

    /// The last member called exactly `name` of an object; nil for anything else.
    public subscript(_ name: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.0 == name })?.1
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.string(let x), .string(let y)): return x == y
        case (.unsigned(let x), .unsigned(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.bool(let x), .bool(let y)): return x == y
        case (.null, .null): return true
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    private static func value(_ s: inout JSONScanner, depth: Int) -> JSONValue? {
        switch s.peek {
        case UInt8(ascii: "{"):
            guard depth > 0 else { return nil }
            s.index += 1
            var members: [(String, JSONValue)] = []
            s.skipWhitespace()
            if s.peek == UInt8(ascii: "}") { s.index += 1; return .object(members) }
            while true {
                guard s.peek == UInt8(ascii: "\""), let name = string(&s) else { return nil }
                s.skipWhitespace()
                guard s.peek == UInt8(ascii: ":") else { return nil }
                s.index += 1
                s.skipWhitespace()
                guard let v = value(&s, depth: depth - 1) else { return nil }
                members.append((name, v))
                s.skipWhitespace()
                if s.peek == UInt8(ascii: ",") { s.index += 1; s.skipWhitespace(); continue }
                guard s.peek == UInt8(ascii: "}") else { return nil }
                s.index += 1
                return .object(members)
            }
        case UInt8(ascii: "["):
            guard depth > 0 else { return nil }
            s.index += 1
            var items: [JSONValue] = []
            s.skipWhitespace()
            if s.peek == UInt8(ascii: "]") { s.index += 1; return .array(items) }
            while true {
                guard let v = value(&s, depth: depth - 1) else { return nil }
                items.append(v)
                s.skipWhitespace()
                if s.peek == UInt8(ascii: ",") { s.index += 1; s.skipWhitespace(); continue }
                guard s.peek == UInt8(ascii: "]") else { return nil }
                s.index += 1
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return string(&s).map { .string($0) }
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            guard let n = s.scanNumber() else { return nil }
            if n.unsigned { return .unsigned(n.value) }
            return .number(String(decoding: UnsafeBufferPointer(start: s.base + n.range.lowerBound, count: n.range.count),
                                  as: UTF8.self))
        case UInt8(ascii: "t"): return s.scanLiteral("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return s.scanLiteral("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return s.scanLiteral("null") ? .null : nil
        default: return nil
        }
    }

    private static func string(_ s: inout JSONScanner) -> String? {
        guard let t = s.scanString() else { return nil }
        if t.hasEscapes { return String(decoding: JSONString.unescaped(t.content, in: s), as: UTF8.self) }
        return String(decoding: UnsafeBufferPointer(start: s.base + t.content.lowerBound, count: t.content.count),
                      as: UTF8.self)
    }
}
