import Glibc
import RelayReactor
import RelayCodecs

/// The one logfmt encoder (docs/operations.md: `ts`, `level`, `msg`, then keys). `Log` filters keys
/// through its allow-list and writes through here; boot-time lines (docs/architecture.md (v1 = single-instance)) call it directly.
public enum Logfmt {
    /// `ts=<RFC 3339 UTC, ms> level=<level> msg=<msg> k=v ...`, no trailing newline.
    public static func line(level: String, msg: String, _ fields: [(key: String, value: String)] = [],
                            timestamp: String? = nil) -> String {
        var line = Line(level: level, msg: msg, timestamp: timestamp)
        for f in fields { line.add(f.key, f.value) }
        return String(decoding: line.bytes, as: UTF8.self)
    }

    /// A line being built as UTF-8 bytes, the form it is written in: a line costs one buffer, not
    /// a String per field and per quoting (a connection logs two or three lines, and in a
    /// reconnect storm the lines were a third of the relay's instructions, docs/benchmarks.md
    /// "What a connection costs").
    package struct Line {
        package private(set) var bytes: [UInt8] = []

        /// `ts=… level=… msg=…`; `timestamp` nil is now.
        package init(level: String, msg: String, timestamp: String? = nil) {
            bytes.reserveCapacity(256)
            bytes.append(contentsOf: "ts=".utf8)
            if let timestamp { bytes.append(contentsOf: timestamp.utf8) } else {
                let (seconds, millis) = wallClock()
                appendTimestamp(epochSeconds: Int64(seconds), milliseconds: millis, to: &bytes)
            }
            add("level", level)
            add("msg", msg)
        }

        /// ` key=value`, the value quoted when it must be (`quote`).
        package mutating func add(_ key: String, _ value: String) {
            bytes.append(UInt8(ascii: " "))
            bytes.append(contentsOf: key.utf8)
            bytes.append(UInt8(ascii: "="))
            appendQuoted(value, to: &bytes)
        }

        package mutating func endLine() { bytes.append(UInt8(ascii: "\n")) }
    }

    /// A value is quoted when it is empty or holds a space, `"`, `=`, `\` or a character that
    /// `mustEscape` (the go-logfmt rules, widened); inside quotes `\` and `"` are escaped and
    /// those characters become `\n`, `\r`, `\t` or `\uXXXX`.
    public static func quote(_ value: String) -> String {
        var out: [UInt8] = []
        appendQuoted(value, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `quote`, appended to `out`. Printable ASCII without ` `, `"`, `=`, `\` — every value the
    /// relay chooses and most a peer sends — is copied as it is after one pass over its bytes;
    /// anything else takes the per-character path.
    package static func appendQuoted(_ value: String, to out: inout [UInt8]) {
        var contiguous = value
        let copied = contiguous.withUTF8 { bytes -> Bool in
            guard !bytes.isEmpty else { return false }
            for b in bytes where b <= 0x20 || b >= 0x7f || b == UInt8(ascii: "\"") || b == UInt8(ascii: "=") || b == UInt8(ascii: "\\") {
                return false
            }
            out.append(contentsOf: bytes)
            return true
        }
        if copied { return }
        let needs = value.isEmpty || value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || mustEscape($0)
        }
        guard needs else {
            out.append(contentsOf: value.utf8)  // non-ASCII, nothing to escape
            return
        }
        out.append(UInt8(ascii: "\""))
        for u in value.unicodeScalars {
            switch u {
            case "\\": out.append(contentsOf: "\\\\".utf8)
            case "\"": out.append(contentsOf: "\\\"".utf8)
            case "\n": out.append(contentsOf: "\\n".utf8)
            case "\r": out.append(contentsOf: "\\r".utf8)
            case "\t": out.append(contentsOf: "\\t".utf8)
            default:
                if mustEscape(u) {
                    out.append(contentsOf: "\\u".utf8)
                    out.append(contentsOf: Hex.string(u.value, digits: 4).utf8)
                } else {
                    out.append(contentsOf: String(u).utf8)
                }
            }
        }
        out.append(UInt8(ascii: "\""))
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

    /// `appendTimestamp` as a String.
    public static func format(epochSeconds: Int64, milliseconds: Int) -> String {
        var out: [UInt8] = []
        appendTimestamp(epochSeconds: epochSeconds, milliseconds: milliseconds, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// RFC 3339 §5.6 `date-time` in UTC with milliseconds: libc's `gmtime_r` makes the calendar
    /// date, the digits are written here (`strftime` and its locale machinery cost more than the
    /// rest of a log line).
    package static func appendTimestamp(epochSeconds: Int64, milliseconds: Int, to out: inout [UInt8]) {
        var t = time_t(epochSeconds)
        var civil = tm()
        guard gmtime_r(&t, &civil) != nil else { return }
        // YYYY-MM-DDTHH:MM:SS.mmmZ: 24 bytes, written in place, then appended at once.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 24) { text in
            func put(_ value: Int, at end: Int, digits: Int) {
                var v = value
                for i in stride(from: end - 1, through: end - digits, by: -1) {
                    text[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                    v /= 10
                }
            }
            put(Int(civil.tm_year) + 1900, at: 4, digits: 4)
            text[4] = UInt8(ascii: "-")
            put(Int(civil.tm_mon) + 1, at: 7, digits: 2)
            text[7] = UInt8(ascii: "-")
            put(Int(civil.tm_mday), at: 10, digits: 2)
            text[10] = UInt8(ascii: "T")
            put(Int(civil.tm_hour), at: 13, digits: 2)
            text[13] = UInt8(ascii: ":")
            put(Int(civil.tm_min), at: 16, digits: 2)
            text[16] = UInt8(ascii: ":")
            put(Int(civil.tm_sec), at: 19, digits: 2)
            text[19] = UInt8(ascii: ".")
            put(milliseconds, at: 23, digits: 3)
            text[23] = UInt8(ascii: "Z")
            out.append(contentsOf: text)
        }
    }
}
