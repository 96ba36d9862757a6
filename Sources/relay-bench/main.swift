import ArgumentParser
import CEpoll
import CRelaySIMD
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayCore

/// relay-bench: the load tool behind docs/benchmarks.md. `run` drives a relay (or the floor) with a named
/// scenario; `floor` is the yardstick forwarder; `callgrind-driver` is the instruction-count
/// gate of `scripts/callgrind-check.sh`.
struct RelayBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay-bench",
        abstract: "Load generator and yardstick for pyrycode-relay (docs/benchmarks.md).",
        subcommands: [Run.self, Floor.self, List.self, CallgrindDriverCommand.self])
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a named scenario (S1 S1b S2 S2b S3 S4 S5 S7 S8 L1 M1) against a relay or a floor.")

    @Argument(help: "Scenario id (see `relay-bench list`).") var scenario: String
    @Option(help: "ws://host:port or wss://host:port (TLS, SNI localhost) of the relay or floor.") var target = "ws://127.0.0.1:8080"
    @Option(help: "wss://: verify the relay's certificate against this CA (PEM) and the name localhost (default: no verification).")
    var ca: String?
    @Option(help: "Generator processes (each its own reactor, fd budget and source-address range 127.<base+i>.x.y); 9k pairs need 2. Not for L1/S8.")
    var workers = 1
    @Option(help: "S7 phases to run (comma-separated): upgrades for ws://; full, resumed for wss:// (default: all).")
    var stormPhases: String?
    @Option(help: "S7: send `GET PATH` instead of the WebSocket upgrade and count a 200 as done (an HTTP server as the yardstick, e.g. nginx: scripts/tls-handshake-bench.sh).")
    var stormGet: String?
    @Option(help: .hidden) var workerIndex: Int?
    @Option(help: .hidden) var runTag: String?
    @Option(help: "PID of the target process: CPU per message and RSS from /proc.") var relayPid: Int32?
    @Option(help: "Override the scenario's pair (binary) count.") var pairs: Int?
    @Option(help: "Override the phones per binary.") var phones: Int?
    @Option(help: "Override the message payload size in bytes (≥ 31).") var size: Int?
    @Option(help: "Override the messages in flight per phone.") var window: Int?
    @Option(help: "Seconds per measurement window.") var duration: Double = 5
    @Option(help: "Warm-up seconds before measuring.") var warmup: Double = 1
    @Option(help: "Measurement windows (median and range are reported).") var repeats: Int = 3
    @Option(help: "S5: idle pairs added after the baseline.") var idlePairs: Int = 9000
    @Option(help: "L1: the open-loop rates are 10/50/75% of this many round trips/s (default: the target's own closed-loop capacity; make bench gives both targets the floor's).")
    var loadBase: Double?
    @Option(help: "Client addressing: many-ips (127.B.x.y source addresses, IP_BIND_ADDRESS_NO_PORT), xff (X-Forwarded-For per connection; relay needs --trust-x-forwarded-for), single.")
    var addressing = "many-ips"
    @Option(help: "Connections per source IP / X-Forwarded-For value (docs/protocol.md §3.3 burst is 20).") var perIp = 16
    @Option(help: "Second octet for source IPs (default: random 2–254, so repeated runs get fresh rate-limit buckets).")
    var ipBase: Int?
    @Option(help: "Concurrent connection attempts.") var connectConcurrency = 256
    @Option(help: "Append the JSON line to this file too.") var jsonOut: String?
    @Option(help: "Write a latency percentile plot (SVG) here.") var svg: String?
    @Option(help: "Free-form label recorded in the JSON line.") var label: String?
    @Flag(help: "No progress line.") var quiet = false

    func run() throws {
        guard let id = ScenarioID(rawValue: scenario) ?? ScenarioID.allCases.first(where: { $0.rawValue.lowercased() == scenario.lowercased() }) else {
            var message = "unknown scenario \(scenario); known: \(ScenarioID.allCases.map(\.rawValue).joined(separator: " "))"
            if let hint = ScenarioID.composites[scenario.uppercased()] { message += ". " + hint }
            throw ValidationError(message)
        }
        guard let (secure, hp) = Run.splitTarget(target), let addr = try? SocketAddress(parsing: hp) else {
            throw ValidationError("bad --target \"\(target)\": expected ws://HOST:PORT or wss://HOST:PORT "
                                  + "(HOST an IP literal, [IPv6] or localhost; e.g. ws://127.0.0.1:8080)")
        }
        if let path = jsonOut, !writeFile(path, "", append: true) {
            throw ValidationError("--json-out \(path): cannot open for appending")
        }
        var plan = id.plan
        if let pairs { plan.pairs = pairs }
        if let phones { plan.phonesPerGroup = phones }
        if let size {
            guard size >= 31 else { throw ValidationError("--size must be ≥ 31") }
            plan.size = size
        }
        if let window { plan.window = window }
        var base = UInt8(truncatingIfNeeded: ipBase ?? Int(2 + monotonicNs() % 253))
        if base < 2 { base = 2 }
        var endpoint = Endpoint(target: addr, hostHeader: hp, perSourceIP: perIp,
                                connectConcurrency: connectConcurrency, runTag: runTag ?? String(monotonicNs() % 1_000_000, radix: 36))
        switch addressing {
        case "many-ips": endpoint.sourceBase = base
        case "xff": endpoint.xffBase = base
        case "single": break
        default: throw ValidationError("--addressing must be many-ips, xff or single")
        }
        if let stormGet {
            guard id == .S7, stormGet.hasPrefix("/") else { throw ValidationError("--storm-get takes a path starting with / and applies to S7 only") }
            endpoint.plainGetPath = stormGet
        }
        var o = RunOptions(scenario: id, plan: plan, endpoint: endpoint, targetText: target)
        o.relayPid = relayPid
        o.seconds = duration
        o.warmupSeconds = warmup
        o.repeats = max(1, repeats)
        o.idlePairs = idlePairs
        if let loadBase {
            guard id == .L1, loadBase > 0 else { throw ValidationError("--load-base takes a positive rate and applies to L1 only") }
            o.loadBase = loadBase
        }
        o.stormPhases = stormPhases.map { $0.split(separator: ",").map(String.init) }
        o.quiet = quiet || isatty(2) == 0
        o.svgPath = svg
        o.label = label
        raiseFileLimit()
        pyry_ignore_sigpipe()
        let tls = secure ? try TLSClientContext(caFile: ca) : nil
        if workers > 1 && workerIndex == nil {
            guard id != .L1 && id != .S8 else { throw ValidationError("--workers does not apply to \(id.rawValue)") }
            let pool = try WorkerPool(argvs: (0..<workers).map { childArgv(index: $0, of: workers, plan: plan, base: base, tag: endpoint.runTag) })
            let runner = try ScenarioRunner(options: o, tls: tls)
            let ok = runner.executeCoordinated(pool: pool, workers: workers)
            try emitResult(runner.json)
            if !ok { throw ExitCode(1) }
            return
        }
        if let i = workerIndex {
            o.worker = WorkerLink(index: i)
            o.quiet = true
        }
        let runner = try ScenarioRunner(options: o, tls: tls)
        let ok = runner.execute()
        if o.worker != nil { if !ok { throw ExitCode(1) }; return }
        try emitResult(runner.json)
        if !ok { throw ExitCode(1) }
    }

    /// The result line goes to `--json-out` (appended) when given, else to stdout; the table is
    /// on stderr, so stdout carries JSON lines only.
    func emitResult(_ json: [(String, JSONValue)]) throws {
        let line = JSONValue.obj(json).text + "\n"
        guard let path = jsonOut else {
            print(line, terminator: "")
            return
        }
        if !writeFile(path, line, append: true) {
            eprint("relay-bench: cannot append to --json-out \(path); the result line follows on stdout\n")
            print(line, terminator: "")
            throw ExitCode(1)
        }
    }

    /// `ws://HOST:PORT[/…]` or `wss://…` → (TLS, "HOST:PORT"); nil for any other scheme or none.
    static func splitTarget(_ target: String) -> (secure: Bool, hostPort: String)? {
        let secure: Bool
        let rest: Substring
        if target.hasPrefix("wss://") {
            (secure, rest) = (true, target.dropFirst(6))
        } else if target.hasPrefix("ws://") {
            (secure, rest) = (false, target.dropFirst(5))
        } else {
            return nil
        }
        let hostPort = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first ?? rest
        return hostPort.isEmpty ? nil : (secure, String(hostPort))
    }
}

extension Run {
    /// The command line of worker `index`: this one, with its share of the pairs, its own
    /// source-address range and server-id tag, and no output files (the parent writes those).
    func childArgv(index: Int, of n: Int, plan: LoadPlan, base: UInt8, tag: String) -> [String] {
        let drop: Set<String> = ["--workers", "--pairs", "--idle-pairs", "--ip-base", "--json-out", "--svg", "--run-tag", "--worker-index"]
        var out = [CommandLine.arguments[0]]
        var skip = false
        for a in CommandLine.arguments.dropFirst() {
            if skip { skip = false; continue }
            if drop.contains(a) { skip = true; continue }
            if let eq = a.firstIndex(of: "="), drop.contains(String(a[..<eq])) { continue }
            out.append(a)
        }
        let share = { (total: Int) in total / n + (index < total % n ? 1 : 0) }
        // S5: the active pairs (the measured ones) live in worker 0; the idle ones are shared.
        let pairsHere = scenario.uppercased() == "S5" ? (index == 0 ? plan.pairs : 0) : share(plan.pairs)
        let idleHere = scenario.uppercased() == "S5" ? share(idlePairs) : 0
        let b = 2 + (Int(base) - 2 + index) % 253
        out += ["--worker-index", String(index), "--pairs", String(pairsHere), "--idle-pairs", String(idleHere),
                "--ip-base", String(b), "--run-tag", "\(tag)w\(index)", "--quiet"]
        return out
    }
}

struct Floor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The yardstick: a trivial epoll TCP forwarder that pairs binaries and phones by server-id.")
    @Option(help: "Listen address host:port.") var listen = "127.0.0.1:8090"

    func run() throws {
        guard let addr = try? SocketAddress(parsing: listen) else { throw ValidationError("bad --listen \(listen)") }
        raiseFileLimit()
        pyry_ignore_sigpipe()
        let reactor = try Reactor()
        let floor = FloorServer(reactor: reactor)
        try floor.listen(on: addr)
        eprint("relay-bench floor: listening on \(addr)\n")
        reactor.run()
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the scenarios `run` takes (make bench also reports S6 and M1TLS: runs of these against wss://).")
    func run() {
        for s in ScenarioID.allCases { print(s.rawValue.rightPad(5) + s.summary) }
    }
}

struct CallgrindDriverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "callgrind-driver",
        abstract: "Deterministic forwarding loop for instruction counting (scripts/callgrind-check.sh).")
    @Option(help: "path (per-message user-space work), service (RelayService over loopback, phone to binary), service-reverse (binary to phone), service-deflate (service with permessage-deflate on both legs), decode-text or decode-binary (the frame decoder alone).") var mode = "service"
    @Option(help: "Messages to forward.") var messages = 20_000
    @Option(help: "Payload bytes.") var size = 64
    @Option(help: "Message kind: x (the gate's filler), pyry (JSON around base64 of --size ciphertext bytes), text (about --size bytes of JSON text).") var payload = "x"
    @Option(help: "Kernel level of the per-byte work: scalar, sse2 or avx2 (default: the best this CPU has).") var simd: String?

    func run() throws {
        pyry_ignore_sigpipe()
        if let simd {
            guard let level = ["scalar", "sse2", "avx2"].firstIndex(of: simd), pyry_simd_select(Int32(level)) else {
                throw ValidationError("--simd \(simd): not a level this CPU (or build) has")
            }
        }
        let rc = CallgrindDriver.run(mode: mode, messages: messages, size: size, payload: payload)
        if rc != 0 { throw ExitCode(rc) }
    }
}

/// Soft fd limit up to the hard limit (20,000 here): 9k pairs need 18k sockets.
func raiseFileLimit() {
    var rl = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 && rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
}

RelayBench.main()
