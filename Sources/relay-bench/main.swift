import ArgumentParser
import CEpoll
import Relay

/// relay-bench: the load tool of BENCH.md. `run` drives a relay (or the floor) with a named
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
        abstract: "Run a named scenario (S1 S1b S2 S2b S3 S4 S5 S8 L1 M1) against a relay or a floor.")

    @Argument(help: "Scenario id (see `relay-bench list`).") var scenario: String
    @Option(help: "ws://host:port of the relay or floor (wss:// is not supported yet).") var target = "ws://127.0.0.1:8080"
    @Option(help: "PID of the target process: CPU per message and RSS from /proc.") var relayPid: Int32?
    @Option(help: "Override the scenario's pair (binary) count.") var pairs: Int?
    @Option(help: "Override the phones per binary.") var phones: Int?
    @Option(help: "Override the message payload size in bytes (≥ 31).") var size: Int?
    @Option(help: "Override the messages in flight per phone.") var window: Int?
    @Option(help: "Seconds per measurement window.") var duration: Double = 5
    @Option(help: "Warm-up seconds before measuring.") var warmup: Double = 1
    @Option(help: "Measurement windows (median and range are reported).") var repeats: Int = 3
    @Option(help: "S5: idle pairs added after the baseline.") var idlePairs: Int = 9000
    @Option(help: "Client addressing: many-ips (127.B.x.y source addresses, IP_BIND_ADDRESS_NO_PORT), xff (X-Forwarded-For per connection; relay needs --trust-x-forwarded-for), single.")
    var addressing = "many-ips"
    @Option(help: "Connections per source IP / X-Forwarded-For value (SPEC §10 burst is 20).") var perIp = 16
    @Option(help: "Second octet for source IPs (default: random 2–254, so repeated runs get fresh rate-limit buckets).")
    var ipBase: Int?
    @Option(help: "Concurrent connection attempts.") var connectConcurrency = 256
    @Option(help: "Append the JSON line to this file too.") var jsonOut: String?
    @Option(help: "Write a latency percentile plot (SVG) here.") var svg: String?
    @Option(help: "Free-form label recorded in the JSON line.") var label: String?
    @Flag(help: "No progress line.") var quiet = false

    func run() throws {
        guard let id = ScenarioID(rawValue: scenario) ?? ScenarioID.allCases.first(where: { $0.rawValue.lowercased() == scenario.lowercased() }) else {
            throw ValidationError("unknown scenario \(scenario); known: \(ScenarioID.allCases.map(\.rawValue).joined(separator: " "))")
        }
        if target.hasPrefix("wss://") { throw ValidationError("wss:// (TLS) is not supported yet: S6/S7 wait for it") }
        let hostPort = target.hasPrefix("ws://") ? String(target.dropFirst(5)) : target
        let hp = hostPort.split(separator: "/", maxSplits: 1).first.map(String.init) ?? hostPort
        guard let addr = try? SocketAddress(parsing: hp) else { throw ValidationError("bad --target \(target)") }
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
                                connectConcurrency: connectConcurrency, runTag: String(monotonicNs() % 1_000_000, radix: 36))
        switch addressing {
        case "many-ips": endpoint.sourceBase = base
        case "xff": endpoint.xffBase = base
        case "single": break
        default: throw ValidationError("--addressing must be many-ips, xff or single")
        }
        var o = RunOptions(scenario: id, plan: plan, endpoint: endpoint, targetText: target)
        o.relayPid = relayPid
        o.seconds = duration
        o.warmupSeconds = warmup
        o.repeats = max(1, repeats)
        o.idlePairs = idlePairs
        o.quiet = quiet || isatty(2) == 0
        o.svgPath = svg
        o.label = label
        raiseFileLimit()
        pyry_ignore_sigpipe()
        let runner = try ScenarioRunner(options: o)
        let ok = runner.execute()
        if let path = jsonOut { _ = writeFile(path, JSONValue.obj(runner.json).text + "\n", append: true) }
        if !ok { throw ExitCode(1) }
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
    static let configuration = CommandConfiguration(abstract: "List the scenarios.")
    func run() {
        for s in ScenarioID.allCases { print(s.rawValue.rightPad(5) + s.summary) }
        print("S6, S7 (TLS) wait for TLS in the relay.")
    }
}

struct CallgrindDriverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "callgrind-driver",
        abstract: "Deterministic forwarding loop for instruction counting (scripts/callgrind-check.sh).")
    @Option(help: "path (per-message user-space work), service (RelayService over loopback), decode-text or decode-binary (the frame decoder alone).") var mode = "service"
    @Option(help: "Messages to forward.") var messages = 20_000
    @Option(help: "Payload bytes.") var size = 64

    func run() throws {
        pyry_ignore_sigpipe()
        let rc = CallgrindDriver.run(mode: mode, messages: messages, size: size)
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
