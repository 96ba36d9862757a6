
/// The one logfmt encoder (SPEC §14: `ts`, `level`, `msg`, then keys). `Log` filters keys
/// through its allow-list and writes through here; boot-time lines (SPEC §12) call it directly.
public enum Logfmt {
    /// `ts=<RFC 3339 UTC, ms> level=<level> msg=<msg> k=v ...`, no trailing newline.
    public static func line(level: String, msg: String, _ fields: [(key: String, value: String)] = [],
                            timestamp: String = Logfmt.timestamp()) -> String {
        var s = "ts=\(timestamp) level=\(quote(level)) msg=\(quote(msg))"
        for f in fields { s += " \(f.key)=\(quote(f.value))" }
        return s
    }

    /// A value is quoted when it is empty or holds a space, `"`, `=`, `\` or a control character
    /// (the go-logfmt rules); inside quotes `\` and `"` are escaped and controls become `\n`, `\t`, `\u00XX`.
    public static func quote(_ value: String) -> String {
        let needs = value.isEmpty || value.unicodeScalars.contains {
            $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || $0.value < 0x20 || $0.value == 0x7f
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
                if u.value < 0x20 || u.value == 0x7f {
                    let hex = Array("0123456789abcdef")
                    out += "\\u00" + String(hex[Int(u.value >> 4)]) + String(hex[Int(u.value & 0xf)])
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Wall-clock now as RFC 3339 UTC with milliseconds, e.g. `2025-01-02T03:04:05.678Z`.
    public static func timestamp() -> String {
        let (seconds, millis) = wallClock()
        return format(epochSeconds: Int64(seconds), milliseconds: millis)
    }

    /// Civil-from-days (Howard Hinnant's algorithm): no libc time zone state involved.
    public static func format(epochSeconds: Int64, milliseconds: Int) -> String {
        let days = epochSeconds >= 0 ? epochSeconds / 86_400 : (epochSeconds - 86_399) / 86_400
        let secs = epochSeconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):"
            + "\(pad(secs % 60, 2)).\(pad(Int64(milliseconds), 3))Z"
    }
}
