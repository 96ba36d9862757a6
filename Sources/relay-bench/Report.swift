import CEpoll
import Histogram
import RelayCodecs

/// A JSON value for the one-line result (written by hand: no Foundation in the tool's hot loop,
/// and key order stays as written).
indirect enum JSONValue {
    case int(Int)
    case num(Double)
    case str(String)
    case bool(Bool)
    case null
    case obj([(String, JSONValue)])
    case arr([JSONValue])

    var text: String {
        switch self {
        case .int(let v): return String(v)
        case .num(let v): return v.isFinite ? formatNumber(v) : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .str(let s): return "\"" + Self.escape(s) + "\""
        case .arr(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .obj(let o): return "{" + o.map { "\"\(Self.escape($0.0))\":\($0.1.text)" }.joined(separator: ",") + "}"
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case _ where u.value < 0x20: out += "\\u00" + String(u.value, radix: 16).leftPad(2)
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}

/// Up to 3 decimals, no exponent, trailing zeros trimmed.
func formatNumber(_ v: Double, decimals: Int = 3) -> String {
    let neg = v < 0
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (abs(v) * scale).rounded()
    guard r < 9e18 else { return String(v) }
    let n = UInt64(r)
    let whole = n / UInt64(scale)
    var frac = String(n % UInt64(scale)).leftPad(decimals)
    while frac.hasSuffix("0") { frac.removeLast() }
    return (neg ? "-" : "") + String(whole) + (frac.isEmpty ? "" : "." + frac)
}

extension String {
    func leftPad(_ n: Int, _ c: Character = "0") -> String {
        count >= n ? self : String(repeating: c, count: n - count) + self
    }
    func rightPad(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}

/// Median and range of repeated measurements (repeat 3×, report median and range).
struct Spread {
    var median: Double, min: Double, max: Double
    init(_ xs: [Double]) {
        let s = xs.filter { $0.isFinite }.sorted()
        if s.isEmpty { median = .nan; min = .nan; max = .nan; return }
        median = s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        min = s.first!
        max = s.last!
    }
    var json: JSONValue { .obj([("median", .num(median)), ("min", .num(min)), ("max", .num(max))]) }
    func human(_ unit: String = "", decimals: Int = 1) -> String {
        guard median.isFinite else { return "n/a" }
        let f = { (v: Double) in formatNumber(v, decimals: decimals) }
        return "\(f(median))\(unit)  [\(f(min)) – \(f(max))]"
    }
}

func latencyJSON(_ h: Histogram<UInt64>) -> JSONValue {
    guard h.totalCount > 0 else { return .null }
    let us = { (v: UInt64) in JSONValue.num(Double(v) / 1000) }
    return .obj([("count", .int(Int(h.totalCount))), ("p50", us(h.valueAtPercentile(50))),
                 ("p90", us(h.valueAtPercentile(90))), ("p99", us(h.valueAtPercentile(99))),
                 ("p99_9", us(h.valueAtPercentile(99.9))), ("max", us(h.max))])
}

func latencyHuman(_ h: Histogram<UInt64>) -> String {
    guard h.totalCount > 0 else { return "n/a" }
    let f = { (p: Double) in formatNumber(Double(h.valueAtPercentile(p)) / 1000, decimals: 1) }
    return "p50 \(f(50)) µs  p99 \(f(99)) µs  p99.9 \(f(99.9)) µs  max \(formatNumber(Double(h.max) / 1000, decimals: 1)) µs"
}

/// A percentile plot (x: percentile on the usual 1/(1−p) log scale, y: µs) as standalone SVG.
func percentileSVG(title: String, series: [(String, Histogram<UInt64>)]) -> String {
    let w = 720.0, h = 420.0, left = 70.0, bottom = 50.0, top = 40.0, right = 20.0
    let percentiles = [0.0, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]
    let xOf = { (p: Double) -> Double in
        let v = approxLog10(1 / (1 - min(p, 99.99) / 100))  // 0 … 4
        return left + v / 4 * (w - left - right)
    }
    var ymax = 1.0
    for (_, hist) in series where hist.totalCount > 0 {
        ymax = max(ymax, Double(hist.valueAtPercentile(99.99)) / 1000)
    }
    ymax *= 1.1
    let yOf = { (v: Double) -> Double in h - bottom - v / ymax * (h - bottom - top) }
    let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"]
    var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    s += "<text x=\"\(Int(left))\" y=\"22\" font-size=\"14\">\(JSONValue.escape(title))</text>\n"
    s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"black\"/>\n"
    for p in [0.0, 90, 99, 99.9, 99.99] {
        let x = xOf(p)
        s += "<text x=\"\(formatNumber(x))\" y=\"\(h - bottom + 16)\" text-anchor=\"middle\">\(formatNumber(p, decimals: 2))%</text>\n"
    }
    for i in 0...4 {
        let v = ymax * Double(i) / 4
        s += "<text x=\"\(left - 6)\" y=\"\(formatNumber(yOf(v) + 4))\" text-anchor=\"end\">\(formatNumber(v, decimals: 0))</text>\n"
    }
    s += "<text x=\"16\" y=\"\(formatNumber((h - bottom + top) / 2))\" transform=\"rotate(-90 16 \(formatNumber((h - bottom + top) / 2)))\" text-anchor=\"middle\">latency µs</text>\n"
    for (i, (name, hist)) in series.enumerated() where hist.totalCount > 0 {
        let pts = percentiles.map { "\(formatNumber(xOf($0))),\(formatNumber(yOf(Double(hist.valueAtPercentile($0)) / 1000)))" }
        let c = colors[i % colors.count]
        s += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\"\(pts.joined(separator: " "))\"/>\n"
        s += "<text x=\"\(Int(w - right - 200))\" y=\"\(Int(top) + 16 * (i + 1))\" fill=\"\(c)\">\(JSONValue.escape(name))</text>\n"
    }
    s += "</svg>\n"
    return s
}

/// UTC date and time, ISO 8601 (docs/benchmarks.md records the date of every figure).
func isoDateUTC() -> String {
    var t = time(nil)
    var tm = tm()
    gmtime_r(&t, &tm)
    let p = { (v: Int32, n: Int) in String(v).leftPad(n) }
    return "\(p(tm.tm_year + 1900, 4))-\(p(tm.tm_mon + 1, 2))-\(p(tm.tm_mday, 2))T\(p(tm.tm_hour, 2)):\(p(tm.tm_min, 2)):\(p(tm.tm_sec, 2))Z"
}

func writeFile(_ path: String, _ text: String, append: Bool = false) -> Bool {
    let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC)
    let fd = pyry_open(path, flags, 0o644)
    guard fd >= 0 else { return false }
    defer { _ = close(fd) }
    var t = text
    return t.withUTF8 { p in write(fd, p.baseAddress, p.count) == p.count }
}

func eprint(_ s: String) {
    var t = s
    t.withUTF8 { p in _ = write(2, p.baseAddress, p.count) }
}

/// log10 for the plot's axis (no libm import here: Glibc and CEpoll's _GNU_SOURCE headers clash).
func approxLog10(_ x: Double) -> Double {
    guard x > 0 else { return 0 }
    let e = Double(x.exponent)
    let m = x.significand  // [1, 2)
    // ln(m) = 2·atanh((m−1)/(m+1)), series to the 9th power: error < 1e-6 on [1, 2).
    let y = (m - 1) / (m + 1), y2 = y * y
    let ln = 2 * y * (1 + y2 / 3 + y2 * y2 / 5 + y2 * y2 * y2 / 7 + y2 * y2 * y2 * y2 / 9)
    return (e * 0.6931471805599453 + ln) / 2.302585092994046
}
