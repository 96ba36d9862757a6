import CEpoll
import RelaySystem
import RelayReactor
import RelayLog

/// The sd_notify(3) protocol spoken directly, without libsystemd (docs/operations.md): one datagram of
/// newline-separated `KEY=VALUE` assignments to the AF_UNIX socket named by `$NOTIFY_SOCKET`.
/// Quietly absent when the variable is unset (not run by systemd, or not `Type=notify`).
public final class SystemdNotifier {
    private let socket: FileDescriptor
    private let address: sockaddr_un
    private let addressLength: socklen_t

    /// `value` is `$NOTIFY_SOCKET`. Throws when the socket cannot be created; returns nil when the
    /// value names no address we can reach (e.g. systemd ≥ 254's `vsock:` form, unsupported here).
    public init?(notifySocket value: String) throws(Errno) {
        guard let encoded = NotifySocketAddress.encode(value) else { return nil }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { dst in
            for (i, b) in encoded.path.enumerated() { dst[i] = b }
        }
        address = sa
        addressLength = socklen_t(NotifySocketAddress.pathOffset + encoded.path.count)
        let raw = try syscallChecked("socket") {
            CEpoll.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        socket = FileDescriptor(raw)
    }

    /// Sends one notification. `wait: false` (MSG_DONTWAIT) is for the periodic messages sent from
    /// the loop: a full receive queue drops a watchdog ping rather than stalling every connection.
    /// Returns false when the datagram was not sent.
    @discardableResult
    public func send(_ state: String, wait: Bool = true) -> Bool {
        var text = state
        var addr = address
        let flags = Int32(MSG_NOSIGNAL) | (wait ? 0 : Int32(MSG_DONTWAIT))
        let result = text.withUTF8 { bytes in
            withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    try? syscall("sendto") { pyry_sendto(socket.raw, bytes.baseAddress, bytes.count, flags, sa, addressLength) }
                }
            }
        }
        if case .done? = result { return true }
        return false
    }
}

/// `$NOTIFY_SOCKET` → the bytes of `sun_path` (sd_notify(3) NOTES): an absolute path
/// (NUL-terminated), or `@name` for the Linux abstract namespace (leading NUL, no terminator;
/// unix(7) "Abstract sockets": the name is exactly the bytes counted by the address length).
package enum NotifySocketAddress {
    package static let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
    package static let pathCapacity = MemoryLayout<sockaddr_un>.size - pathOffset  // 108 on Linux

    package static func encode(_ value: String) -> (path: [UInt8], abstract: Bool)? {
        var bytes = Array(value.utf8)
        guard bytes.count >= 2, !bytes.contains(0) else { return nil }
        let abstract: Bool
        switch bytes[0] {
        case UInt8(ascii: "@"):
            bytes[0] = 0
            abstract = true
        case UInt8(ascii: "/"):
            bytes.append(0)
            abstract = false
        default:
            return nil
        }
        guard bytes.count <= pathCapacity else { return nil }
        return (bytes, abstract)
    }
}

/// When to send `WATCHDOG=1` (sd_watchdog_enabled(3)): `$WATCHDOG_USEC` is the service's
/// `WatchdogSec=` in microseconds, meant for us only if `$WATCHDOG_PID` is unset or our PID.
/// We ping at half the interval, as the man page recommends, so one late loop turn is not fatal.
public enum WatchdogSchedule {
    /// The ping interval in milliseconds, or nil when the watchdog is off (or not ours).
    public static func pingIntervalMs(environment env: [String: String], pid: Int32) -> Int64? {
        guard let usecText = env["WATCHDOG_USEC"], let usec = UInt64(usecText), usec > 0 else { return nil }
        if let pidText = env["WATCHDOG_PID"] {
            guard let target = Int32(pidText), target == pid else { return nil }
        }
        return max(1, Int64(clamping: usec / 2_000))
    }
}

/// Ties the notifier to the loop: `READY=1` once the listeners are bound, `STATUS=` with live
/// counts, `WATCHDOG=1` from a loop timer (so a stalled loop stops the pings and systemd
/// restarts us), `STOPPING=1` when the drain starts. Everything is a no-op without systemd.
public final class SystemdSupervisor: TimerOwner {
    public enum TimerKind: UInt8 {
        /// Watchdog ping and status refresh.
        case tick
    }
    /// STATUS= is sent at most this often (and only when it changed): it is for `systemctl status`,
    /// not a metrics channel.
    public static let statusIntervalMs: Int64 = 1_000

    public struct Counts: Equatable, Sendable {
        public var binaries: Int
        public var phones: Int
        public var connections: Int
        public init(binaries: Int, phones: Int, connections: Int) {
            self.binaries = binaries
            self.phones = phones
            self.connections = connections
        }
    }

    private let notifier: SystemdNotifier
    private let reactor: Reactor
    private let counts: () -> Counts
    /// Watchdog ping interval, when the watchdog is on.
    public let watchdogIntervalMs: Int64?
    private let tickMs: Int64
    private var lastStatus = ""
    private var lastStatusAt: Int64 = .min
    private var draining = false
    private lazy var timers = reactor.registerTimers(for: self)

    /// Nil when `NOTIFY_SOCKET` is unset; logs a warning and returns nil when it is unusable.
    public init?(environment env: [String: String], reactor: Reactor, counts: @escaping () -> Counts) {
        guard let value = env["NOTIFY_SOCKET"] else { return nil }
        let made: SystemdNotifier?
        do { made = try SystemdNotifier(notifySocket: value) } catch {
            Log.warn("systemd_notify_unavailable", ["err": error.description])
            return nil
        }
        guard let n = made else {
            Log.warn("systemd_notify_unavailable", ["reason": "NOTIFY_SOCKET is neither an absolute path nor @abstract"])
            return nil
        }
        notifier = n
        self.reactor = reactor
        self.counts = counts
        watchdogIntervalMs = WatchdogSchedule.pingIntervalMs(environment: env, pid: getpid())
        tickMs = min(watchdogIntervalMs ?? SystemdSupervisor.statusIntervalMs, SystemdSupervisor.statusIntervalMs)
    }

    public func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) { tick(now: now) }

    /// docs/operations.md § Boot order, step 7: sent after every listener is bound and listening, so a client that connects
    /// the moment systemd reports "active" lands in a backlog rather than being refused.
    public func ready() {
        let status = SystemdSupervisor.statusLine(counts(), draining: false)
        notifier.send("READY=1\nSTATUS=" + status)
        lastStatus = status
        lastStatusAt = reactor.now
        if watchdogIntervalMs != nil { notifier.send("WATCHDOG=1", wait: false) }
        timers.schedule(.tick, at: reactor.now + tickMs)
    }

    /// docs/operations.md: the drain started (systemd shows "deactivating" instead of a hung "active").
    public func stopping() {
        draining = true
        let status = SystemdSupervisor.statusLine(counts(), draining: true)
        notifier.send("STOPPING=1\nSTATUS=" + status)
        lastStatus = status
        lastStatusAt = reactor.now
    }

    private func tick(now: Int64) {
        if watchdogIntervalMs != nil { notifier.send("WATCHDOG=1", wait: false) }
        if now - lastStatusAt >= SystemdSupervisor.statusIntervalMs {
            let status = SystemdSupervisor.statusLine(counts(), draining: draining)
            if status != lastStatus, notifier.send("STATUS=" + status, wait: false) {
                lastStatus = status
                lastStatusAt = now
            }
        }
        timers.schedule(.tick, at: now + tickMs)
    }

    /// The `STATUS=` text `systemctl status` shows (one line, no newline).
    public static func statusLine(_ c: Counts, draining: Bool) -> String {
        (draining ? "draining " : "") + "binaries=\(c.binaries) phones=\(c.phones) connections=\(c.connections)"
    }
}
