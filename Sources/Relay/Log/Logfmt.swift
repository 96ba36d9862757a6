import Glibc
import RelayReactor
import RelayCodecs

/// The one logfmt encoder (docs/operations.md: `ts`, `level`, `msg`, then keys). `Log` filters keys
/// through its allow-list and writes through here; boot-time lines (docs/architecture.md (v1 = single-instance)) call it directly.
public enum Logfmt {
    /// `ts=<RFC 3339 UTC, ms> level=<level> msg=<msg> k=v ...`, no trailing newline.
    public static func line(level: String, msg: String, _ fields: [(key: String, value: String)] = [],
                            timestamp: String = Logfmt.timestamp()) -> String {
        var s = "ts=\(timestamp) level=\(quote(level)) msg=\(quote(msg))"
        for f in fields { s += " \(f.key)=\(quote(f.value))" }
        return s
    }

    /// A value is quoted when it is empty or holds a space, `"`, `=`, `\` or a character that
    /// `mustEscape` (the go-logfmt rules, widened); inside quotes `\` and `"` are escaped and
    /// those characters become `\n`, `\r`, `\t` or `\uXXXX`.
    public static func quote(_ value: String) -> String {
        let needs = value.isEmpty || value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || mustEscape($0)
        }
        guard needs else { return value }
        var out = "\""
        for u in value.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if mustEscape(u) {
                    out += "\\u" + Hex.string(u.value, digits: 4)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Characters never written raw: the C0 controls, DEL and the C1 controls (0x80–0x9F, which
    /// terminals act on), and U+2028/U+2029 — with U+0085 (NEL, a C1 control) these end a line
    /// for Unicode-aware readers (Unicode §5.8), so a header value holding one could start a
    /// forged log line; and the bidirectional formatting characters (U+061C, U+200E/U+200F,
    /// U+202A–U+202E, U+2066–U+2069, Unicode UAX #9 §2), which make a viewer show the rest of the
    /// line in another order than it was written (CVE-2021-42574, "Trojan Source").
    package static func mustEscape(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0..<0x20, 0x7f...0x9f, 0x2028, 0x2029: return true
        case 0x061c, 0x200e, 0x200f, 0x202a...0x202e, 0x2066...0x2069: return true
        default: return false
        }
    }

    /// `value` cut to at most `maxBytes` UTF-8 bytes when it is longer: its head and its last
    /// `clipTailBytes` bytes around `…`, both cut on code point boundaries. The tail is kept
    /// because a connection id ends in the 8 hex digits that tell two connections apart.
    public static func clip(_ value: String, maxBytes: Int = Limits.logValueMaxBytes) -> String {
        guard value.utf8.count > maxBytes else { return value }
        let marker = "…"
        let room = max(0, maxBytes - marker.utf8.count)
        let tailBudget = min(clipTailBytes, room / 2)
        var tailStart = value.unicodeScalars.endIndex
        var tailBytes = 0
        while tailStart > value.unicodeScalars.startIndex {
            let i = value.unicodeScalars.index(before: tailStart)
            let n = UTF8.width(value.unicodeScalars[i])
            if tailBytes + n > tailBudget { break }
            tailBytes += n
            tailStart = i
        }
        return truncatedUTF8(value, maxBytes: room - tailBytes) + marker + String(value.unicodeScalars[tailStart...])
    }

    /// Bytes `clip` keeps from the end of a value.
    package static let clipTailBytes = 16

    /// Wall-clock now as RFC 3339 UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
    public static func timestamp() -> String {
        let (seconds, millis) = wallClock()
        return format(epochSeconds: Int64(seconds), milliseconds: millis)
    }

    /// libc's `gmtime_r` and `strftime`, then the milliseconds. UTC throughout: `strftime` loads
    /// the local zone once (glibc, on first use) but no field written here depends on it.
    public static func format(epochSeconds: Int64, milliseconds: Int) -> String {
        var t = time_t(epochSeconds)
        var civil = tm()
        var text = [CChar](repeating: 0, count: 32)
        guard gmtime_r(&t, &civil) != nil, strftime(&text, text.count, "%Y-%m-%dT%H:%M:%S.", &civil) > 0 else { return "" }
        let ms = String(milliseconds)
        return String(cString: text) + String(repeating: "0", count: max(0, 3 - ms.count)) + ms + "Z"
    }
}
