/// A command-line parser with the semantics of Go's `flag` package, which the Go relay's
/// deploy tooling relies on: `-name` and `--name`, `=value` or a separate value, boolean flags
/// take no separate value, a flag given twice keeps its last value, `--` ends the flags.
public struct FlagSet {
    public enum Kind { case string, bool }
    public struct Spec {
        public let name: String
        public let kind: Kind
        public let usage: String
        public let defaultText: String
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public private(set) var specs: [Spec] = []
    public private(set) var values: [String: String] = [:]

    public init() {}

    public mutating func string(_ name: String, default d: String, _ usage: String) {
        specs.append(Spec(name: name, kind: .string, usage: usage, defaultText: d))
    }

    public mutating func bool(_ name: String, _ usage: String) {
        specs.append(Spec(name: name, kind: .bool, usage: usage, defaultText: "false"))
    }

    /// Parses `args` (without the program name). `help` is returned as a value, not an error.
    public mutating func parse(_ args: [String]) throws(ParseError) {
        var i = 0
        while i < args.count {
            let a = args[i]
            i += 1
            if a == "--" {
                if i < args.count { throw ParseError(description: "unexpected argument \(args[i])") }
                return
            }
            guard a.hasPrefix("-"), a != "-" else { throw ParseError(description: "unexpected argument \(a)") }
            var body = Substring(a.dropFirst(a.hasPrefix("--") ? 2 : 1))
            var inline: String?
            if let eq = body.firstIndex(of: "=") {
                inline = String(body[body.index(after: eq)...])
                body = body[..<eq]
            }
            let name = String(body)
            if name == "help" || name == "h" {
                values["help"] = "true"
                continue
            }
            guard let spec = specs.first(where: { $0.name == name }) else {
                throw ParseError(description: "flag provided but not defined: -\(name)")
            }
            switch spec.kind {
            case .bool:
                let v = inline ?? "true"
                switch v {
                case "1", "t", "T", "true", "TRUE", "True": values[name] = "true"
                case "0", "f", "F", "false", "FALSE", "False": values[name] = "false"
                default: throw ParseError(description: "invalid boolean value \"\(v)\" for -\(name)")
                }
            case .string:
                if let v = inline {
                    values[name] = v
                } else {
                    guard i < args.count else { throw ParseError(description: "flag needs an argument: -\(name)") }
                    values[name] = args[i]
                    i += 1
                }
            }
        }
    }

    public func isSet(_ name: String) -> Bool { values[name] != nil }
    public func string(_ name: String) -> String {
        values[name] ?? specs.first(where: { $0.name == name })!.defaultText
    }
    public func bool(_ name: String) -> Bool { values[name] == "true" }

    /// One entry per flag: `  --name VALUE`, then its explanation and default, indented.
    public func flagList() -> String {
        var out = ""
        for s in specs {
            out += "  --\(s.name)"
            if s.kind == .string { out += " VALUE" }
            out += "\n        \(s.usage)"
            if s.kind == .string && !s.defaultText.isEmpty { out += " (default \"\(s.defaultText)\")" }
            out += "\n"
        }
        return out
    }
}

/// Go's `time.ParseDuration`, the syntax of the Go relay's duration flags, in milliseconds: an
/// optional sign, then one or more decimal numbers, each with an optional fraction and a unit
/// `ns`, `us` (or `µs`, `μs`), `ms`, `s`, `m`, `h` (`30s`, `1m30s`, `1.5h`, `.5s`); a bare `0`
/// needs no unit. Nil wherever Go returns an error, including a magnitude past Go's range
/// (2^63-1 ns, about 292 years). One deliberate difference: the relay's clocks count
/// milliseconds, so the result is rounded to the nearest one where Go keeps nanoseconds
/// (`1500us` is 2 ms, `100us` is 0).
public func parseGoDuration(_ text: String) -> Int64? {
    var s = Substring(text)
    var negative = false
    if let sign = s.first, sign == "-" || sign == "+" {
        negative = sign == "-"
        s = s.dropFirst()
    }
    if s == "0" { return 0 }
    guard !s.isEmpty else { return nil }
    var ms: Double = 0
    while !s.isEmpty {
        let numEnd = s.firstIndex(where: { !($0.isASCII && ($0.isNumber || $0 == ".")) }) ?? s.endIndex
        guard numEnd != s.startIndex, let n = Double(s[..<numEnd]) else { return nil }
        s = s[numEnd...]
        let unitEnd = s.firstIndex(where: { $0.isASCII && ($0.isNumber || $0 == ".") }) ?? s.endIndex
        let unit = s[..<unitEnd]
        s = s[unitEnd...]
        switch unit {
        case "ns": ms += n / 1_000_000
        case "us", "\u{B5}s", "\u{3BC}s": ms += n / 1000  // micro sign and Greek mu, as Go
        case "ms": ms += n
        case "s": ms += n * 1000
        case "m": ms += n * 60_000
        case "h": ms += n * 3_600_000
        default: return nil
        }
    }
    guard ms < 9_223_372_036_854.775807 else { return nil }  // Int64.max ns
    let rounded = Int64(ms + 0.5)  // ms ≥ 0 here; avoids libm
    return negative ? -rounded : rounded
}
