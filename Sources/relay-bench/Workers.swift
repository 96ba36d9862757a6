import CEpoll
import Histogram
import RelayReactor

// Multi-process generator (`relay-bench run … --workers N`): one process holds at most ~18k
// sockets under the 20,000-fd limit, so 9k pairs (18k client sockets) plus the S5 active pairs
// need two processes. The parent forks and execs itself N times (each child: its own reactor,
// its own source-address range 127.<base+i>.x.y, its own server-id tag), steps them through
// the scenario's barriers in lock step over pipes, and aggregates what they report.
//
// Child → parent, one line each on the child's stdout:
//   READY <barrier>                       waiting at a barrier; the parent answers "GO\n" on stdin
//   WINDOW <prefix> <s> <fwd> <compl> <bytes> <relayCPU|-> <genCPU> <resumed>
//   HIST <value>:<count> …                the latency histogram's recorded buckets
//   COUNT <key> <int>                     connections, exchanges, failures, floor
//   FAIL <text>                           up to five failure reasons
//   JSON <line>                           the child's own result line (kept for the record)

@_silgen_name("waitpid") private func c_waitpid(_ pid: Int32, _ status: UnsafeMutablePointer<Int32>?, _ options: Int32) -> Int32

/// The child's end of the pipes.
final class WorkerLink {
    let index: Int
    private var pending = 0
    private var eof = false

    init(index: Int) { self.index = index }

    func send(_ line: String) {
        var t = line + "\n"
        t.withUTF8 { p in
            var off = 0
            while off < p.count {
                let n = write(1, p.baseAddress! + off, p.count - off)
                if n <= 0 { return }
                off += n
            }
        }
    }

    /// Non-blocking: true once the parent said GO (or went away).
    func goReceived() -> Bool {
        if pending > 0 { pending -= 1; return true }
        if eof { return true }
        var pfd = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, 0) > 0 else { return false }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress, 256) }
        if n <= 0 { eof = true; return true }
        pending += buf[0..<n].filter { $0 == 10 }.count
        if pending > 0 { pending -= 1; return true }
        return false
    }
}

/// The parent's view of its children.
final class WorkerPool {
    struct Child {
        var pid: Int32
        var toChild: Int32
        var fromChild: Int32
        var buffer: [UInt8] = []
        var eof = false
        var ready: String?
        var records: [String] = []
    }
    var children: [Child] = []

    /// Forks and execs `/proc/self/exe` once per argument vector.
    init(argvs: [[String]]) throws(BenchError) {
        for argv in argvs {
            var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
            guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else { throw BenchError("pipe failed") }
            // Everything the child needs is allocated before fork (then only async-signal-safe calls).
            var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
            let exe = strdup("/proc/self/exe")
            let pid = fork()
            if pid == 0 {
                _ = dup2(toChild[0], 0)
                _ = dup2(fromChild[1], 1)
                _ = CEpoll.close(toChild[0]); _ = CEpoll.close(toChild[1])
                _ = CEpoll.close(fromChild[0]); _ = CEpoll.close(fromChild[1])
                _ = execv(exe!, &cargs)
                _exit(127)
            }
            for p in cargs { free(p) }
            free(exe)
            guard pid > 0 else { throw BenchError("fork failed") }
            _ = CEpoll.close(toChild[0]); _ = CEpoll.close(fromChild[1])
            children.append(Child(pid: pid, toChild: toChild[1], fromChild: fromChild[0]))
        }
    }

    /// Reads child lines until every live child waits at a barrier; returns its name (nil when all
    /// children have exited). A child that exits early simply drops out of later barriers.
    func nextBarrier(timeoutSeconds: Double = 900) -> String? {
        let deadline = monotonicNs() + UInt64(timeoutSeconds * 1e9)
        while true {
            let live = children.indices.filter { !children[$0].eof }
            if live.isEmpty { return nil }
            if live.allSatisfy({ children[$0].ready != nil }) { return children[live[0]].ready }
            if monotonicNs() > deadline { return nil }
            var pfds = live.map { pollfd(fd: children[$0].fromChild, events: Int16(POLLIN), revents: 0) }
            _ = poll(&pfds, nfds_t(pfds.count), 1000)
            for (k, i) in live.enumerated() where pfds[k].revents != 0 { drain(i) }
        }
    }

    private func drain(_ i: Int) {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { read(children[i].fromChild, $0.baseAddress, 65536) }
        if n <= 0 { children[i].eof = true; return }
        children[i].buffer += buf[0..<n]
        while let nl = children[i].buffer.firstIndex(of: 10) {
            let line = String(decoding: children[i].buffer[0..<nl], as: UTF8.self)
            children[i].buffer.removeSubrange(0...nl)
            if line.hasPrefix("READY ") { children[i].ready = String(line.dropFirst(6)) } else { children[i].records.append(line) }
        }
    }

    func goAll() {
        for i in children.indices where !children[i].eof {
            children[i].ready = nil
            _ = write(children[i].toChild, "GO\n", 3)
        }
    }

    /// Closes the pipes and reaps the children; true when all exited 0.
    func finish() -> Bool {
        var ok = true
        for c in children {
            _ = CEpoll.close(c.toChild)
            _ = CEpoll.close(c.fromChild)
            var status: Int32 = 0
            _ = c_waitpid(c.pid, &status, 0)
            if status != 0 { ok = false }
        }
        return ok
    }
}

/// The child's reported figures, parsed back by the parent.
struct WorkerReport {
    var windows: [String: [Window]] = [:]
    var counts: [String: Int] = [:]
    var failures: [String] = []
    var histogram: Histogram<UInt64>?

    init(records: [String]) {
        for r in records {
            let f = r.split(separator: " ", omittingEmptySubsequences: true)
            guard let kind = f.first else { continue }
            switch kind {
            case "WINDOW" where f.count >= 9:
                var c = Counters()
                c.forwarded = Int(f[3]) ?? 0
                c.completions = Int(f[4]) ?? 0
                c.payloadBytes = Int(f[5]) ?? 0
                c.resumed = Int(f[8]) ?? 0
                let w = Window(seconds: Double(f[2]) ?? 0, counters: c, relayCPU: Double(f[6]), genCPU: Double(f[7]) ?? 0)
                windows[String(f[1]), default: []].append(w)
            case "COUNT" where f.count >= 3:
                counts[String(f[1]), default: 0] += Int(f[2]) ?? 0
            case "FAIL":
                failures.append(String(r.dropFirst(5)))
            case "HIST":
                var h = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
                for pair in f.dropFirst() {
                    let vc = pair.split(separator: ":")
                    if vc.count == 2, let v = UInt64(vc[0]), let n = UInt64(vc[1]) { _ = h.record(v, count: n) }
                }
                histogram = h
            default: break
            }
        }
    }
}

/// Window-by-window sum over workers (the windows start together at a barrier): counts add up,
/// the duration is the longest, relay CPU comes from the first worker that sampled it (every
/// worker samples the same relay process over nearly the same interval).
func mergeWindows(_ perWorker: [[Window]]) -> [Window] {
    let n = perWorker.map(\.count).max() ?? 0
    var out: [Window] = []
    for i in 0..<n {
        var c = Counters()
        var secs = 0.0, gen = 0.0
        var relay: Double?
        for ws in perWorker where i < ws.count {
            let w = ws[i]
            c.forwarded += w.counters.forwarded
            c.completions += w.counters.completions
            c.payloadBytes += w.counters.payloadBytes
            c.resumed += w.counters.resumed
            secs = max(secs, w.seconds)
            gen += w.genCPU
            if relay == nil { relay = w.relayCPU }
        }
        out.append(Window(seconds: secs, counters: c, relayCPU: relay, genCPU: gen))
    }
    return out
}

/// `HIST` line for a histogram: every recorded bucket as value:count (bucket-exact merge).
func histogramLine(_ h: Histogram<UInt64>) -> String {
    var s = "HIST"
    for v in h.recordedValues() { s += " \(v.value):\(v.count)" }
    return s
}
