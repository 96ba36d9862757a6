import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport
@testable import RelayOperations

/// A bound AF_UNIX datagram socket standing in for systemd's notify socket.
private final class NotifyReceiver {
    let fd: Int32
    init(sunPath: [UInt8]) {
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        precondition(fd >= 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { for (i, b) in sunPath.enumerated() { $0[i] = b } }
        let len = socklen_t(NotifySocketAddress.pathOffset + sunPath.count)
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pyry_bind(fd, $0, len) } }
        precondition(r == 0, "bind errno \(pyry_errno())")
    }
    deinit { _ = close(fd) }

    /// Every datagram queued now, as text.
    func drain() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, Int32(MSG_DONTWAIT))
            if n <= 0 { return out }
            out.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
    }
}

@Suite struct NotifySocketAddressTests {
    @Test func absolutePathIsNulTerminated() throws {
        let e = try #require(NotifySocketAddress.encode("/run/systemd/notify"))
        #expect(e.abstract == false)
        #expect(e.path == Array("/run/systemd/notify".utf8) + [0])
    }

    @Test func atSignMeansAbstractNamespaceWithLeadingNulAndNoTerminator() throws {
        let e = try #require(NotifySocketAddress.encode("@sd-notify/1"))
        #expect(e.abstract == true)
        #expect(e.path == [0] + Array("sd-notify/1".utf8))
    }

    @Test func refusesRelativeEmptyVsockAndOverlongValues() {
        #expect(NotifySocketAddress.encode("") == nil)
        #expect(NotifySocketAddress.encode("@") == nil)
        #expect(NotifySocketAddress.encode("relative/notify") == nil)
        #expect(NotifySocketAddress.encode("vsock:2:1234") == nil)
        // sun_path holds 108 bytes: 107 path bytes + NUL fit, 108 do not; abstract names get 108.
        #expect(NotifySocketAddress.encode("/" + String(repeating: "a", count: 106)) != nil)
        #expect(NotifySocketAddress.encode("/" + String(repeating: "a", count: 107)) == nil)
        #expect(NotifySocketAddress.encode("@" + String(repeating: "a", count: 107)) != nil)
        #expect(NotifySocketAddress.encode("@" + String(repeating: "a", count: 108)) == nil)
    }
}

@Suite struct WatchdogScheduleTests {
    @Test func pingsAtHalfTheInterval() {
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "200000"], pid: 42) == 100)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "30000000"], pid: 42) == 15_000)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "1"], pid: 42) == 1)
    }

    @Test func watchdogPidMustBeOursWhenSet() {
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "42"], pid: 42) == 100)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "43"], pid: 42) == nil)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "x"], pid: 42) == nil)
    }

    @Test func offWhenUnsetZeroOrMalformed() {
        #expect(WatchdogSchedule.pingIntervalMs(environment: [:], pid: 42) == nil)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "0"], pid: 42) == nil)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "-5"], pid: 42) == nil)
        #expect(WatchdogSchedule.pingIntervalMs(environment: ["WATCHDOG_USEC": "2s"], pid: 42) == nil)
    }
}

@Suite struct SystemdNotifierTests {
    @Test func sendsOneDatagramToAPathSocket() throws {
        let dir = TempDir()
        let path = dir.path + "/notify"
        let rx = NotifyReceiver(sunPath: Array(path.utf8) + [0])
        defer { unlink(path) }
        let n = try #require(try SystemdNotifier(notifySocket: path))
        #expect(n.send("READY=1\nSTATUS=binaries=0 phones=0 connections=0"))
        #expect(rx.drain() == ["READY=1\nSTATUS=binaries=0 phones=0 connections=0"])
    }

    @Test func sendsToAnAbstractSocket() throws {
        let name = "pyry-notify-test-\(getpid())-\(monotonicNs())"
        let rx = NotifyReceiver(sunPath: [0] + Array(name.utf8))
        let n = try #require(try SystemdNotifier(notifySocket: "@" + name))
        #expect(n.send("WATCHDOG=1", wait: false))
        #expect(rx.drain() == ["WATCHDOG=1"])
    }

    @Test func missingListenerIsAFailedSendNotACrash() throws {
        let dir = TempDir()
        let n = try #require(try SystemdNotifier(notifySocket: dir.path + "/nobody"))
        #expect(n.send("WATCHDOG=1", wait: false) == false)
    }
}

@Suite struct SystemdSupervisorTests {
    enum OtherKind: UInt8 { case drain }

    @Test func absentWithoutNotifySocket() throws {
        let reactor = try Reactor()
        #expect(SystemdSupervisor(environment: [:], reactor: reactor) { .init(binaries: 0, phones: 0, connections: 0) } == nil)
        #expect(reactor.timers.count == 0)
    }

    @Test func statusLineFormat() {
        let c = SystemdSupervisor.Counts(binaries: 2, phones: 5, connections: 7)
        #expect(SystemdSupervisor.statusLine(c, draining: false) == "binaries=2 phones=5 connections=7")
        #expect(SystemdSupervisor.statusLine(c, draining: true) == "draining binaries=2 phones=5 connections=7")
    }

    @Test func readyWatchdogStatusStoppingFromTheLoop() throws {
        let dir = TempDir()
        let path = dir.path + "/notify"
        let rx = NotifyReceiver(sunPath: Array(path.utf8) + [0])
        defer { unlink(path) }
        let reactor = try Reactor()
        let other = TimerRecorder<OtherKind>(reactor)
        var counts = SystemdSupervisor.Counts(binaries: 0, phones: 0, connections: 0)
        let sup = try #require(SystemdSupervisor(environment: ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"],
                                                 reactor: reactor) { counts })
        #expect(sup.watchdogIntervalMs == 10)
        sup.ready()
        #expect(rx.drain() == ["READY=1\nSTATUS=binaries=0 phones=0 connections=0", "WATCHDOG=1"])

        // Another owner's timer, registered before the supervisor's first, still reaches it alone.
        other.handle.schedule(.drain, at: reactor.now, key: 250)
        counts = .init(binaries: 1, phones: 2, connections: 3)
        var got: [String] = []
        let deadline = monotonicMs() + 5_000
        // Watchdog pings every 10 ms; the changed STATUS waits for the 1 s rate limit.
        while !got.contains("STATUS=binaries=1 phones=2 connections=3") && monotonicMs() < deadline {
            reactor.runOnce(timeoutMs: 50)
            got += rx.drain()
        }
        #expect(other.fired.map(\.key) == [250])
        #expect(got.filter { $0 == "WATCHDOG=1" }.count >= 20)
        #expect(got.last == "STATUS=binaries=1 phones=2 connections=3")
        #expect(got.allSatisfy { $0 == "WATCHDOG=1" || $0 == "STATUS=binaries=1 phones=2 connections=3" })

        sup.stopping()
        #expect(rx.drain() == ["STOPPING=1\nSTATUS=draining binaries=1 phones=2 connections=3"])
    }
}

@Suite struct SocketActivationTests {
    @Test func notForUsWithoutListenPidOrWithAnotherPid() throws {
        #expect(try SocketActivation.parse(["LISTEN_FDS": "1"], pid: 42).get() == [])
        #expect(try SocketActivation.parse(["LISTEN_PID": "41", "LISTEN_FDS": "1"], pid: 42).get() == [])
    }

    @Test func descriptorsStartAtThreeWithOptionalNames() throws {
        #expect(try SocketActivation.parse(["LISTEN_PID": "42", "LISTEN_FDS": "2"], pid: 42).get()
                == [.init(fd: 3, name: nil), .init(fd: 4, name: nil)])
        #expect(try SocketActivation.parse(["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "https:"], pid: 42).get()
                == [.init(fd: 3, name: "https"), .init(fd: 4, name: nil)])
        #expect(try SocketActivation.parse(["LISTEN_PID": "42", "LISTEN_FDS": "0"], pid: 42).get() == [])
    }

    @Test func malformedValuesMeantForUsFail() {
        for env in [["LISTEN_PID": "42"], ["LISTEN_PID": "42", "LISTEN_FDS": "x"], ["LISTEN_PID": "42", "LISTEN_FDS": "-1"],
                    ["LISTEN_PID": "zero", "LISTEN_FDS": "1"],
                    ["LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "https"]] {
            guard case .failure = SocketActivation.parse(env, pid: 42) else {
                Issue.record("accepted \(env)")
                continue
            }
        }
    }

    @Test func classifiesListeningTCPOnly() throws {
        let listener = try Socket.listen(on: #require(SocketAddress(ip: "127.0.0.1", port: 0)))
        #expect(SocketActivation.classify(listener.raw) == .listeningStream)
        let udp = FileDescriptor(socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0))
        #expect(SocketActivation.classify(udp.raw) == .other("not a stream socket"))
        let unbound = FileDescriptor(socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0))
        #expect(SocketActivation.classify(unbound.raw) == .other("not listening"))
        let devnull = FileDescriptor(pyry_open("/dev/null", O_RDONLY | O_CLOEXEC, 0))
        #expect(SocketActivation.classify(devnull.raw) == .other("not a socket"))
    }

    @Test func inheritedSocketBecomesNonBlockingCloseOnExec() throws {
        let raw = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)  // as systemd hands it over: blocking, inheritable
        let fd = FileDescriptor(raw)
        #expect(descriptorFlags(raw).status & O_NONBLOCK == 0)
        #expect(makeNonBlockingCloseOnExec(raw))
        #expect(descriptorFlags(raw).status & O_NONBLOCK != 0)
        #expect(descriptorFlags(raw).descriptor & FD_CLOEXEC != 0)
        withExtendedLifetime(fd) {}
    }

    @Test func takesTheFirstListenerOnceAndUnsetsTheVariables() throws {
        let listener = try Socket.listen(on: #require(SocketAddress(ip: "127.0.0.1", port: 0)))
        let raw = listener.release()
        let activation = SocketActivation(available: [.init(fd: raw, name: "https")])
        var takenRaw: Int32?
        if let taken = activation.takePublicListener(configured: nil) { takenRaw = taken.raw }
        #expect(takenRaw == raw)
        var again = false
        if activation.takePublicListener(configured: nil) != nil { again = true }
        #expect(!again)

        // Meant for another process: nothing inherited, and the variables are gone either way.
        setenv("LISTEN_FDNAMES", "x", 1)
        let other = try SocketActivation.fromEnvironment(["LISTEN_PID": String(getpid() + 1), "LISTEN_FDS": "1"]).get()
        #expect(other.available.isEmpty)
        #expect(getenv("LISTEN_FDNAMES") == nil)
    }
}
