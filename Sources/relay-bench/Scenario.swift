import CEpoll
import Histogram
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayCore

/// The named scenarios of docs/benchmarks.md.
enum ScenarioID: String, CaseIterable {
    case S1, S1b, S2, S2b, S3, S4, S5, S7, S8, L1, M1

    var summary: String {
        switch self {
        case .S1: return "100 pairs, 64 B, window 1 (one frame per write): msgs/s, relay µs CPU/msg"
        case .S1b: return "as S1, window 16, pipelined writes: msgs/s"
        case .S2: return "100 pairs, 1 KiB, window 1: msgs/s, MB/s"
        case .S2b: return "as S2, window 16: msgs/s, MB/s"
        case .S3: return "100 pairs, 64 KiB, window 1: GB/s"
        case .S4: return "fan-in: 60 binaries × 16 phones, echo, 64 B: forwarded msgs/s"
        case .S5: return "100 active pairs, then + 9,000 idle pairs: S1 rate drop"
        case .S7: return "connection storm, 64 attempts in flight: upgrades/s (ws://); full TLS handshakes/s and resumptions/s (wss://); per relay core"
        case .S8: return "slow binary (reads 1 MB/s), 10 pairs, 1 KiB: relay RSS bounded, no loss"
        case .L1: return "echo latency, 10 pairs, 64 B, at 10/50/75% of capacity: p50/p99/p99.9"
        case .M1: return "idle memory: N pairs (default 1,000) after one exchange: RSS per connection"
        }
    }

    /// Figures of `make bench` (scripts/bench.sh) that are made of several runs, not one scenario.
    static let composites = [
        "S6": "S6 is made of runs, not one: S1 and S3 with --target wss://… beside the same with ws:// (make bench SCENARIOS=S6 runs all four)",
        "M1TLS": "M1TLS is M1 with --target wss://… (make bench SCENARIOS=M1TLS)",
    ]

    var plan: LoadPlan {
        var p = LoadPlan()
        switch self {
        case .S1: break
        case .S1b: p.window = 16
        case .S2: p.size = 1024
        case .S2b: p.size = 1024; p.window = 16
        case .S3: p.size = 64 * 1024
        case .S4: p.pairs = 60; p.phonesPerGroup = 16; p.echo = true
        case .S5: break
        case .S7: p.pairs = 64; p.storm = true
        case .S8: p.pairs = 10; p.size = 1024; p.window = 1 << 30; p.phoneOutputCap = 256 * 1024
            p.slowBinaryBytesPerSec = 1_000_000
        case .L1: p.pairs = 10; p.echo = true
        case .M1: p.pairs = 1000; p.echo = true; p.messagesPerPhone = 1
        }
        return p
    }
}

/// Options shared by every scenario run.
struct RunOptions {
    var scenario: ScenarioID
    var plan: LoadPlan
    var endpoint: Endpoint
    var targetText: String
    var relayPid: Int32?
    var warmupSeconds: Double = 1
    var seconds: Double = 5
    var repeats = 3
    var idlePairs = 9000           // S5
    var loadPercents = [10.0, 50, 75]  // L1
    /// L1: the round trips/s the load percents are of (nil: the target's own closed-loop capacity).
    var loadBase: Double?
    var quiet = false
    var svgPath: String?
    var label: String?
    /// S7: only these phases (nil = all for the target's scheme).
    var stormPhases: [String]?
    /// Set in a `--workers` child: barriers and results go to the parent over pipes.
    var worker: WorkerLink?
}

/// One measurement window's deltas.
struct Window {
    var seconds: Double
    var counters: Counters
    var relayCPU: Double?
    var genCPU: Double

    var forwardedPerSec: Double { Double(counters.forwarded) / seconds }
    var completionsPerSec: Double { Double(counters.completions) / seconds }
    var mbPerSec: Double { Double(counters.payloadBytes) / seconds / 1e6 }
    var relayCPUPerMsgUs: Double? { relayCPU.map { $0 / Double(max(counters.forwarded, 1)) * 1e6 } }
    var relayCPUPct: Double? { relayCPU.map { $0 / seconds * 100 } }
    var genCPUPct: Double { genCPU / seconds * 100 }
}

/// Runs one scenario end to end; prints the progress line and the table on stderr and leaves
/// the result line (`json`) to the caller.
final class ScenarioRunner {
    let o: RunOptions
    let run: LoadRun
    var table: [(String, String)] = []
    var json: [(String, JSONValue)] = []
    var histograms: [(String, Histogram<UInt64>)] = []
    /// Other processes' CPU over the whole run (not in a `--workers` child: the parent judges).
    var load: MachineLoad?

    init(options: RunOptions, tls: TLSClientContext? = nil) throws(Errno) {
        o = options
        let reactor = try Reactor()
        run = LoadRun(context: ClientContext(reactor: reactor, tls: tls, plainGet: options.endpoint.plainGetPath != nil), endpoint: options.endpoint, plan: options.plan)
    }

    /// `--workers` child: tell the parent we reached `name`, keep the loop (pongs, flushes)
    /// running until it says GO. No-op in a single-process run.
    func barrier(_ name: String) {
        guard let w = o.worker else { return }
        w.send("READY \(name)")
        run.loop(until: monotonicNs() + 1_800_000_000_000, tickNs: 1_000_000_000, stop: { w.goReceived() })
    }

    func progress(_ s: String) {
        if !o.quiet { eprint("\r\u{1b}[2K" + s) }
    }

    func relaySample() -> ProcSample? { o.relayPid.flatMap { ProcSample.read(pid: $0) } }

    /// Connects everything queued; fails the run if any connection is refused.
    func connectAll(timeoutSeconds: Double = 120) -> Bool {
        run.pumpConnects()
        let deadline = monotonicNs() + UInt64(timeoutSeconds * 1e9)
        run.loop(until: deadline, tickNs: 500_000_000, tick: { _ in
            self.progress("[\(self.o.scenario.rawValue)] connecting: \(self.run.openConnections) open, \(self.run.failureCount) failed")
        }, stop: { self.run.allOpen || self.run.failureCount > 0 })
        progress("")
        if run.failureCount > 0 || !run.allOpen {
            eprint("relay-bench: setup failed: \(run.openConnections) open; \(run.failures.joined(separator: "; "))\n")
            return false
        }
        return true
    }

    /// One closed-loop measurement window of `seconds`.
    func measure(_ seconds: Double, name: String) -> Window {
        let r0 = relaySample()
        let g0 = ProcSample.selfCPU()
        let t0 = monotonicNs()
        run.counters = Counters()
        var last = run.counters
        var lastT = t0
        run.loop(until: t0 + UInt64(seconds * 1e9), tick: { now in
            let c = self.run.counters
            let dt = Double(now - lastT) / 1e9
            let rate = Double(c.forwarded - last.forwarded) / dt
            var line = "[\(self.o.scenario.rawValue) \(self.run.targetIsFloor ? "floor" : "relay")] \(name) t=\(formatNumber(Double(now - t0) / 1e9, decimals: 1))s msgs/s=\(formatNumber(rate, decimals: 0))"
            if self.run.latency.totalCount > 0 {
                line += " p50=\(formatNumber(Double(self.run.latency.valueAtPercentile(50)) / 1000, decimals: 1))µs"
            }
            if self.run.failureCount > 0 { line += " failures=\(self.run.failureCount)" }
            self.progress(line)
            last = c
            lastT = now
        })
        let t1 = monotonicNs()
        let r1 = relaySample()
        let secs = Double(t1 - t0) / 1e9
        var relayCPU: Double?
        if let a = r0, let b = r1 { relayCPU = b.cpuSeconds - a.cpuSeconds }
        progress("")
        return Window(seconds: secs, counters: run.counters, relayCPU: relayCPU, genCPU: ProcSample.selfCPU() - g0)
    }

    func summarize(_ ws: [Window], prefix: String) {
        if let w = o.worker {
            for x in ws {
                let c = x.counters
                w.send("WINDOW \(prefix.isEmpty ? "-" : prefix) \(x.seconds) \(c.forwarded) \(c.completions) \(c.payloadBytes) \(x.relayCPU.map { String($0) } ?? "-") \(x.genCPU) \(c.resumed)")
            }
        }
        let fwd = Spread(ws.map(\.forwardedPerSec))
        let mb = Spread(ws.map(\.mbPerSec))
        let gen = Spread(ws.map(\.genCPUPct))
        let p = prefix.isEmpty ? "" : prefix + "_"
        table.append(("\(prefix.isEmpty ? "" : prefix + " ")msgs/s forwarded", fwd.human(decimals: 0)))
        table.append(("\(prefix.isEmpty ? "" : prefix + " ")MB/s payload", mb.human(decimals: 1)))
        json.append(("\(p)msgs_per_s", fwd.json))
        json.append(("\(p)mb_per_s", mb.json))
        if o.plan.echo {
            let rt = Spread(ws.map(\.completionsPerSec))
            table.append(("\(prefix.isEmpty ? "" : prefix + " ")round trips/s", rt.human(decimals: 0)))
            json.append(("\(p)round_trips_per_s", rt.json))
        }
        if ws.allSatisfy({ $0.relayCPU != nil }) {
            let cpu = Spread(ws.compactMap(\.relayCPUPerMsgUs))
            let pct = Spread(ws.compactMap(\.relayCPUPct))
            table.append(("\(prefix.isEmpty ? "" : prefix + " ")target CPU µs/msg", cpu.human(decimals: 3)))
            table.append(("\(prefix.isEmpty ? "" : prefix + " ")target CPU %", pct.human("%", decimals: 0)))
            json.append(("\(p)target_cpu_us_per_msg", cpu.json))
            json.append(("\(p)target_cpu_pct", pct.json))
        }
        table.append(("\(prefix.isEmpty ? "" : prefix + " ")generator CPU %", gen.human("%", decimals: 0)))
        json.append(("\(p)generator_cpu_pct", gen.json))
    }

    private func header() {
        json = [("tool", .str("relay-bench")), ("scenario", .str(o.scenario.rawValue)),
                ("label", o.label.map { .str($0) } ?? .null), ("date", .str(isoDateUTC())),
                ("target", .str(o.targetText))]
        if let idle = machineIdleFraction(overMs: 500) { json.append(("machine_idle_before", .num(idle))) }
        if o.worker == nil { load = MachineLoad(targetPid: o.relayPid) }
    }

    func execute() -> Bool {
        header()
        let baseline = relaySample()
        var ok: Bool
        switch o.scenario {
        case .M1: ok = runM1(baseline: baseline)
        case .L1: ok = runL1()
        case .S5: ok = runS5()
        case .S8: ok = runS8(baseline: baseline)
        case .S7: ok = runS7()
        default: ok = runThroughput()
        }
        return finish(ok: ok)
    }

    /// The parent of a `--workers` run: steps the children through their barriers, samples the
    /// target where a figure needs every worker's connections open (M1), merges their reports.
    func executeCoordinated(pool: WorkerPool, workers: Int) -> Bool {
        header()
        json.append(("workers", .int(workers)))
        let baseline = relaySample()
        var settled: ProcSample?
        while let b = pool.nextBarrier() {
            progress("[\(o.scenario.rawValue) × \(workers) workers] all at \(b)")
            if b == "settled" { settled = relaySample() }
            pool.goAll()
        }
        progress("")
        var ok = pool.finish()
        let reports = pool.children.map { WorkerReport(records: $0.records) }
        run.failureCount = reports.reduce(0) { $0 + ($1.counts["failures"] ?? 0) }
        run.failures = Array(reports.flatMap(\.failures).prefix(5))
        run.targetIsFloor = reports.contains { ($0.counts["floor"] ?? 0) > 0 }
        for r in reports { if let h = r.histogram { run.latency.add(h) } }
        let merged = { (prefix: String) in mergeWindows(reports.map { $0.windows[prefix] ?? [] }) }
        switch o.scenario {
        case .M1:
            let conns = reports.reduce(0) { $0 + ($1.counts["connections"] ?? 0) }
            let exchanges = reports.reduce(0) { $0 + ($1.counts["exchanges"] ?? 0) }
            ok = ok && exchanges == o.plan.pairs * o.plan.phonesPerGroup
            reportM1(connections: conns, exchanges: exchanges, before: baseline, after: settled)
        case .S5:
            reportS5(before: merged("active_only"), after: merged("with_idle"))
        case .S7:
            for phase in ["upgrades", "full", "resumed"] where reports.contains(where: { $0.windows[phase] != nil }) {
                summarizeStorm(merged(phase), phase: phase)
            }
        default:
            summarize(merged("-"), prefix: "")
        }
        return finish(ok: ok && run.failureCount == 0)
    }

    private func finish(ok: Bool) -> Bool {
        let plan = o.plan
        json.insert(("target_kind", .str(run.targetIsFloor ? "floor" : "relay")), at: 5)
        json.append(contentsOf: [
            ("pairs", .int(plan.pairs)), ("phones_per_binary", .int(plan.phonesPerGroup)),
            ("size", .int(plan.size)), ("window", .int(min(plan.window, 1 << 20))), ("echo", .bool(plan.echo)),
            ("seconds", .num(o.seconds)), ("repeats", .int(o.repeats)),
            ("addressing", .str(o.endpoint.sourceBase != nil ? "source-ips" : (o.endpoint.xffBase != nil ? "x-forwarded-for" : "single"))),
            ("failures", .int(run.failureCount)), ("ok", .bool(ok)),
        ])
        if run.latency.totalCount > 0 && o.scenario != .L1 {
            histograms.append((o.scenario.rawValue, run.latency))
            json.append(("latency_us", latencyJSON(run.latency)))
            table.append(("latency (\(plan.echo ? "round trip" : "one way"))", latencyHuman(run.latency)))
        }
        if !run.failures.isEmpty { table.append(("failures", "\(run.failureCount): " + run.failures.joined(separator: "; "))) }
        if let w = o.worker {
            if run.latency.totalCount > 0 { w.send(histogramLine(run.latency)) }
            w.send("COUNT failures \(run.failureCount)")
            w.send("COUNT floor \(run.targetIsFloor ? 1 : 0)")
            for f in run.failures { w.send("FAIL " + f) }
            w.send("JSON " + JSONValue.obj(json).text)
            barrier("done")
            return ok
        }
        if let v = load?.verdict(targetPid: o.relayPid) {
            table.append(v.tableRow)
            json += v.json
        }
        var text = "relay-bench \(o.scenario.rawValue) — \(o.scenario.summary)\n"
        text += "target \(o.targetText) (\(run.targetIsFloor ? "floor" : "relay")), \(isoDateUTC())\n"
        let w = (table.map(\.0.count).max() ?? 10) + 2
        for (k, v) in table { text += "  " + k.rightPad(w) + v + "\n" }
        eprint(text)
        if let svg = o.svgPath, !histograms.isEmpty {
            _ = writeFile(svg, percentileSVG(title: "relay-bench \(o.scenario.rawValue) latency (\(o.targetText))", series: histograms))
        }
        return ok
    }

    // MARK: scenarios

    func warmupAndMeasure(prefix: String = "") -> [Window] {
        run.startTraffic()
        _ = measure(o.warmupSeconds, name: "warmup")
        run.latency.reset()
        var ws: [Window] = []
        for i in 0..<o.repeats { ws.append(measure(o.seconds, name: "run \(i + 1)/\(o.repeats)")) }
        return ws
    }

    func runThroughput() -> Bool {
        run.addGroups(o.plan.pairs)
        guard connectAll() else { return false }
        barrier("connected")
        let ws = warmupAndMeasure()
        run.stopTraffic()
        summarize(ws, prefix: "")
        return run.failureCount == 0
    }

    func runS5() -> Bool {
        // A `--workers` child may hold idle pairs only (pairs 0): it measures nothing itself.
        let measuring = o.plan.pairs > 0
        run.addGroups(o.plan.pairs)
        run.activeGroups = o.plan.pairs
        guard connectAll() else { return false }
        barrier("active-connected")
        let before = measuring ? warmupAndMeasure() : []
        summarize(before, prefix: "active_only")
        barrier("active-measured")
        run.addGroups(o.idlePairs)
        guard connectAll(timeoutSeconds: 600) else { return false }
        barrier("idle-connected")
        run.latency.reset()
        var after: [Window] = []
        if measuring {
            for i in 0..<o.repeats { after.append(measure(o.seconds, name: "with idle \(i + 1)/\(o.repeats)")) }
        }
        run.stopTraffic()
        summarize(after, prefix: "with_idle")
        if o.worker != nil { return run.failureCount == 0 }
        reportS5Drop(before: before, after: after)
        return run.failureCount == 0
    }

    func reportS5(before: [Window], after: [Window]) {
        summarize(before, prefix: "active_only")
        summarize(after, prefix: "with_idle")
        reportS5Drop(before: before, after: after)
    }

    private func reportS5Drop(before: [Window], after: [Window]) {
        let a = Spread(before.map(\.forwardedPerSec)).median, b = Spread(after.map(\.forwardedPerSec)).median
        let drop = (1 - b / a) * 100
        table.append(("rate drop with \(o.idlePairs) idle pairs", formatNumber(drop, decimals: 1) + "%  (target ≤ 5%)"))
        json.append(("idle_pairs", .int(o.idlePairs)))
        json.append(("rate_drop_pct", .num(drop)))
    }

    // MARK: S7 connection storm

    /// ws:// target: plain upgrades; wss://: full TLS handshakes, then resumptions of one session.
    func runS7() -> Bool {
        let phases: [(String, Bool)] = run.context.tls != nil ? [("full", false), ("resumed", true)] : [("upgrades", false)]
        run.recordLatency = false
        for (name, resume) in phases where o.stormPhases?.contains(name) ?? true {
            barrier("start-\(name)")
            run.stormResume = resume
            run.clearSavedSession()
            run.storming = true
            run.stormRefill()
            run.pumpConnects()
            _ = measure(o.warmupSeconds, name: "\(name) warmup")
            var ws: [Window] = []
            for i in 0..<o.repeats { ws.append(measure(o.seconds, name: "\(name) \(i + 1)/\(o.repeats)")) }
            run.storming = false
            run.loop(until: monotonicNs() + 10_000_000_000, tickNs: 1_000_000_000, stop: { self.run.connecting == 0 })
            summarizeStorm(ws, phase: name)
        }
        run.clearSavedSession()
        return run.failureCount == 0
    }

    func summarizeStorm(_ ws: [Window], phase: String) {
        summarize(ws, prefix: phase)
        if !ws.isEmpty && ws.allSatisfy({ ($0.relayCPU ?? 0) > 0 }) {
            let perCore = Spread(ws.map { Double($0.counters.forwarded) / $0.relayCPU! })
            table.append(("\(phase) per target core /s", perCore.human(decimals: 0)))
            json.append(("\(phase)_per_core_per_s", perCore.json))
        }
        let total = ws.reduce(0) { $0 + $1.counters.forwarded }, resumed = ws.reduce(0) { $0 + $1.counters.resumed }
        let frac = total > 0 ? Double(resumed) / Double(total) : 0
        table.append(("\(phase) TLS resumed", formatNumber(frac * 100, decimals: 1) + "%"))
        json.append(("\(phase)_resumed_fraction", .num(frac)))
    }

    func runM1(baseline: ProcSample?) -> Bool {
        run.addGroups(o.plan.pairs)
        run.startTraffic()  // each phone sends its one message as soon as it is open
        guard connectAll(timeoutSeconds: 600) else { return false }
        let deadline = monotonicNs() + 60_000_000_000
        run.loop(until: deadline, tickNs: 500_000_000, tick: { _ in
            self.progress("[M1] exchanges \(self.run.exchangesDone)/\(self.o.plan.pairs * self.o.plan.phonesPerGroup)")
        }, stop: { self.run.exchangesDone >= self.o.plan.pairs * self.o.plan.phonesPerGroup })
        // Settle: let the target finish flushing and free per-message buffers.
        run.loop(until: monotonicNs() + 1_000_000_000)
        progress("")
        if let w = o.worker {
            w.send("COUNT connections \(run.openConnections)")
            w.send("COUNT exchanges \(run.exchangesDone)")
            barrier("settled")  // the parent samples the relay's RSS with every worker's pairs open
            return run.failureCount == 0 && run.exchangesDone == o.plan.pairs * o.plan.phonesPerGroup
        }
        reportM1(connections: o.plan.pairs * (1 + o.plan.phonesPerGroup), exchanges: run.exchangesDone,
                 before: baseline, after: relaySample())
        return run.failureCount == 0 && run.exchangesDone == o.plan.pairs * o.plan.phonesPerGroup
    }

    func reportM1(connections conns: Int, exchanges: Int, before baseline: ProcSample?, after: ProcSample?) {
        json.append(("connections", .int(conns)))
        table.append(("connections", String(conns)))
        table.append(("exchanges completed", "\(exchanges)"))
        if let b0 = baseline, let b1 = after {
            let per = Double(b1.rssKB - b0.rssKB) * 1024 / Double(conns)
            table.append(("target RSS", "\(b0.rssKB) kB → \(b1.rssKB) kB"))
            table.append(("RSS growth per connection", formatNumber(per, decimals: 0) + " B  (target " + (run.context.tls != nil ? "≤ OpenSSL's idle SSL + 1 KB: bench/tls-idle-ssl.c)" : "≤ 512 B plain)")))
            json.append(("rss_kb_before", .int(b0.rssKB)))
            json.append(("rss_kb_after", .int(b1.rssKB)))
            json.append(("rss_bytes_per_connection", .num(per)))
        } else {
            table.append(("RSS", "n/a (give --relay-pid)"))
        }
    }

    func runL1() -> Bool {
        run.addGroups(o.plan.pairs)
        guard connectAll() else { return false }
        let cap = warmupAndMeasure()
        let capacity = Spread(cap.map(\.completionsPerSec)).median
        table.append(("capacity (closed loop) round trips/s", formatNumber(capacity, decimals: 0)))
        json.append(("capacity_round_trips_per_s", .num(capacity)))
        histograms.append(("closed loop", run.latency))
        // Two targets compared at the same offered load are both given the same base (make bench:
        // the floor's capacity); without one, each is loaded relative to its own capacity.
        let base = o.loadBase ?? capacity
        json.append(("load_base_round_trips_per_s", .num(base)))
        var levels: [JSONValue] = []
        for pct in o.loadPercents {
            run.stopTraffic()
            // Drain what is in flight before switching to the open-loop schedule.
            run.loop(until: monotonicNs() + 200_000_000)
            run.plan.openLoopRate = base * pct / 100
            for g in run.groups { for p in g.phones { p.nextSendNs = 0; p.inflight = 0 } }
            run.latency.reset()
            run.running = true
            let w = measure(o.seconds, name: "\(formatNumber(pct, decimals: 0))% load")
            table.append(("\(formatNumber(pct, decimals: 0))% load (\(formatNumber(w.completionsPerSec, decimals: 0)) rt/s)", latencyHuman(run.latency)))
            var entry: [(String, JSONValue)] = [("load_pct", .num(pct)), ("round_trips_per_s", .num(w.completionsPerSec))]
            if case .obj(let l) = latencyJSON(run.latency) { entry += l }
            levels.append(.obj(entry))
            histograms.append(("\(formatNumber(pct, decimals: 0))% load", run.latency))
        }
        run.stopTraffic()
        json.append(("latency_us_by_load", .arr(levels)))
        return run.failureCount == 0
    }

    func runS8(baseline: ProcSample?) -> Bool {
        run.addGroups(o.plan.pairs)
        guard connectAll() else { return false }
        run.recordLatency = false
        run.startTraffic()
        var maxRSS = baseline?.rssKB ?? 0
        let t0 = monotonicNs()
        run.loop(until: t0 + UInt64(o.seconds * 1e9), tickNs: 100_000_000, tick: { now in
            if let s = self.relaySample() { maxRSS = max(maxRSS, s.rssKB) }
            self.progress("[S8] t=\(formatNumber(Double(now - t0) / 1e9, decimals: 1))s delivered=\(self.run.counters.completions) relay RSS max=\(maxRSS) kB")
        })
        run.stopTraffic()
        let sent = run.groups.reduce(0) { $0 + $1.phones.reduce(0) { $0 + $1.sent } }
        // Drain at full speed: every message sent must arrive (docs/protocol.md §7.5: none dropped).
        run.plan.slowBinaryBytesPerSec = 0
        for g in run.groups { g.binary.readLimit = 0; g.binary.resumeReading() }
        let totalBefore = run.groups.reduce(0) { $0 + $1.binary.received }
        _ = totalBefore
        run.loop(until: monotonicNs() + 60_000_000_000, tickNs: 500_000_000, stop: {
            self.run.groups.reduce(0) { $0 + $1.binary.received } >= sent
        })
        progress("")
        let received = run.groups.reduce(0) { $0 + $1.binary.received }
        table.append(("messages sent / received", "\(sent) / \(received)  (lost \(sent - received))"))
        json.append(("sent", .int(sent)))
        json.append(("received", .int(received)))
        json.append(("lost", .int(sent - received)))
        if let b = baseline {
            table.append(("target RSS baseline → max", "\(b.rssKB) kB → \(maxRSS) kB (+\(maxRSS - b.rssKB) kB)"))
            json.append(("rss_kb_before", .int(b.rssKB)))
            json.append(("rss_kb_max", .int(maxRSS)))
        }
        return run.failureCount == 0 && sent == received
    }
}
