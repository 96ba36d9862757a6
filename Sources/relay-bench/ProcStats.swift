import CEpoll
import RelaySystem
import RelayReactor

/// A process's CPU time and resident memory from /proc (docs/benchmarks.md method: CPU per message from
/// `/proc/<pid>/stat` utime+stime deltas, RSS from `/proc/<pid>/status` VmRSS).
struct ProcSample {
    var cpuSeconds: Double
    var rssKB: Int
    var at: UInt64  // monotonic ns

    static func read(pid: Int32) -> ProcSample? {
        guard let stat = readSmallFile("/proc/\(pid)/stat"),
              let status = readSmallFile("/proc/\(pid)/status") else { return nil }
        // Fields after the parenthesised command name (which may hold spaces): state is field 3;
        // utime and stime are fields 14 and 15 (proc(5)).
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let ut = Double(fields[11]), let st = Double(fields[12]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "0") ?? 0
        }
        return ProcSample(cpuSeconds: (ut + st) / hz, rssKB: rss, at: monotonicNs())
    }

    /// This process (the generator): finer than clock ticks.
    static func selfCPU() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Whole-machine idle fraction over an interval, from /proc/stat (docs/benchmarks.md: check the machine
/// is quiet first, idle ≥ 85% over 2 s).
func machineIdleFraction(overMs: Int) -> Double? {
    func sample() -> (idle: Double, total: Double)? {
        guard let s = readSmallFile("/proc/stat"), let line = s.split(separator: "\n").first else { return nil }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 5 else { return nil }
        return (v[3] + v[4], v.reduce(0, +))
    }
    guard let a = sample() else { return nil }
    var ts = timespec(tv_sec: overMs / 1000, tv_nsec: (overMs % 1000) * 1_000_000)
    nanosleep(&ts, nil)
    guard let b = sample(), b.total > a.total else { return nil }
    return (b.idle - a.idle) / (b.total - a.total)
}
