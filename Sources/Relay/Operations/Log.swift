import CEpoll

/// logfmt lines on stderr, one per event: `ts`, `level`, `msg`, then allow-listed keys only
/// (SPEC §14). A key outside the list is a programming error caught in debug builds, and
/// dropped in release builds, so no header, token or payload can reach the log by accident.
public enum Log {
    public enum Level: String, Sendable { case debug, info, warn, error }

    /// SPEC §14 keys, plus ones added with a reason:
    /// `listen`/`mode`/`version` (relay_started), `signal`, `code` (close codes by name),
    /// `same_host`/`fly`/`kubernetes` (single_instance_check evidence), `pid` (instance lock owner),
    /// `count` (drain/shutdown totals), `capabilities` (capability warning), `status` (HTTP status).
    public static let allowedKeys: Set<String> = [
        "server_id", "conn_id", "binary_conn_id", "device_name", "remote", "binary_version", "err", "path",
        "from", "to", "close_code", "token_fp", "duration", "fcm_message_id",
        "listen", "mode", "version", "signal", "same_host", "fly", "kubernetes", "pid", "count",
        "capabilities", "status", "metrics", "reason", "endpoint",
    ]

    public static func write(_ level: Level, _ msg: String, _ fields: KeyValuePairs<String, String> = [:]) {
        var line = ""
        line.reserveCapacity(128)
        line += "ts="
        line += timestamp()
        line += " level="
        line += level.rawValue
        line += " msg="
        line += quote(msg)
        for (k, v) in fields {
            guard allowedKeys.contains(k) else {
                assertionFailure("log key \(k) is not allow-listed")
                continue
            }
            line += " "
            line += k
            line += "="
            line += quote(v)
        }
        line += "\n"
        line.withUTF8 { p in _ = CEpoll.write(2, p.baseAddress, p.count) }
    }

    public static func info(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.info, msg, f) }
    public static func warn(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.warn, msg, f) }
    public static func error(_ msg: String, _ f: KeyValuePairs<String, String> = [:]) { write(.error, msg, f) }

    /// logfmt quoting: bare when safe, else double-quoted with `"`, `\\` and control characters escaped.
    public static func quote(_ v: String) -> String {
        let safe = !v.isEmpty && v.utf8.allSatisfy { $0 > 0x20 && $0 != 0x22 && $0 != 0x3D && $0 != 0x5C && $0 < 0x7F }
        if safe { return v }
        var out = "\""
        for s in v.unicodeScalars {
            switch s {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if s.value < 0x20 || s.value == 0x7F {
                    out += s.value < 0x10 ? "\\x0" : "\\x"
                    out += String(s.value, radix: 16)
                } else {
                    out.unicodeScalars.append(s)
                }
            }
        }
        out += "\""
        return out
    }

    /// RFC 3339 UTC with milliseconds, computed without Foundation.
    public static func timestamp() -> String {
        let (secs, ms) = wallClock()
        var t = time_t(secs)
        var tm = CEpoll.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ms), 3))Z"
    }
}
