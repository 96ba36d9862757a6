import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// Whether something else used the machine during a run: figures taken beside another busy
/// process are not comparable with the quiet-machine ones in docs/benchmarks.md. The machine's
/// CPU time (/proc/stat, every CPU) minus this generator's, its workers' and the target's
/// (`--relay-pid`) is what other processes used; steal is time the hypervisor gave to other guests.
struct MachineLoad {
    /// Other processes plus steal above this share of one core, averaged over the run: "busy".
    static let busyPercentOfCore = 10.0

    /// CPU seconds, summed over every CPU (proc(5), first line of /proc/stat; USER_HZ ticks).
    struct MachineCPU {
        var processes: Double  // user + nice + system (guest time is inside user)
        var steal: Double

        static func read() -> MachineCPU? {
            guard let s = readSmallFile("/proc/stat"), let line = s.split(separator: "\n").first,
                  line.hasPrefix("cpu ") else { return nil }
            let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            guard v.count >= 8 else { return nil }
            let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
            return MachineCPU(processes: (v[0] + v[1] + v[2]) / hz, steal: v[7] / hz)
        }
    }

    struct Verdict {
        var otherPercentOfCore: Double
        var stealPercentOfCore: Double
        /// nil without `--relay-pid`: the target's CPU is then inside `otherPercentOfCore`.
        var busy: Bool?
    }

    let machine: MachineCPU
    let own: Double
    let target: Double?
    let at: UInt64

    /// Starts the measurement (nil where /proc/stat cannot be read).
    init?(targetPid: Int32?) {
        guard let m = MachineCPU.read() else { return nil }
        machine = m
        own = MachineLoad.ownCPU()
        target = targetPid.flatMap { ProcSample.read(pid: $0)?.cpuSeconds }
        at = monotonicNs()
    }

    /// Ends it. Call after `--workers` children were waited for, so their CPU counts as ours.
    func verdict(targetPid: Int32?) -> Verdict? {
        guard let m = MachineCPU.read() else { return nil }
        let seconds = Double(monotonicNs() - at) / 1e9
        guard seconds > 0 else { return nil }
        var other = (m.processes - machine.processes) - (MachineLoad.ownCPU() - own)
        var targetKnown = false
        if let t0 = target, let pid = targetPid, let t1 = ProcSample.read(pid: pid)?.cpuSeconds {
            other -= t1 - t0
            targetKnown = true
        }
        let otherPct = max(0, other) / seconds * 100
        let stealPct = (m.steal - machine.steal) / seconds * 100
        return Verdict(otherPercentOfCore: otherPct, stealPercentOfCore: stealPct,
                       busy: targetKnown ? otherPct + stealPct > MachineLoad.busyPercentOfCore : nil)
    }

    /// This process and its waited-for children (the `--workers` generators), user + system.
    static func ownCPU() -> Double {
        var total = 0.0
        for who in [RUSAGE_SELF.rawValue, RUSAGE_CHILDREN.rawValue] {
            var u = rusage()
            if getrusage(who, &u) == 0 {
                total += Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6
                total += Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
            }
        }
        return total
    }
}

extension MachineLoad.Verdict {
    var tableRow: (String, String) {
        let other = formatNumber(otherPercentOfCore, decimals: 0), steal = formatNumber(stealPercentOfCore, decimals: 0)
        let limit = formatNumber(MachineLoad.busyPercentOfCore, decimals: 0)
        switch busy {
        case true?:
            return ("machine", "BUSY: other processes used \(other)% of a core during the run (steal \(steal)%; limit \(limit)%): figures not comparable")
        case false?:
            return ("machine", "quiet: other processes \(other)% of a core, steal \(steal)% (limit \(limit)%)")
        case nil:
            return ("machine", "other processes and the target \(other)% of a core, steal \(steal)% (give --relay-pid to tell them apart)")
        }
    }

    var json: [(String, JSONValue)] {
        [("other_cpu_pct_of_core", .num(otherPercentOfCore)), ("steal_pct_of_core", .num(stealPercentOfCore)),
         ("machine_busy", busy.map { .bool($0) } ?? .null)]
    }
}
