import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayOperations

@Suite struct SameHostLockSignalTests {
    @Test func secondLockInSameProcessConflictsAndNamesOurPID() throws {
        let dir = TempDir()
        let first = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        let a1 = first.probe()
        #expect(a1 == .single(evidence: "lock \(dir.path)/instance.lock held by this process, pid \(getpid())"))
        #expect(first.lock != nil)
        #expect(dir.read("instance.lock") == "\(getpid())\n")

        // flock(2) locks belong to the open file description: a second open conflicts even here.
        let second = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        #expect(second.probe() == .multiple(evidence: "lock \(dir.path)/instance.lock is held by another relay, pid \(getpid())"))
        #expect(second.lock == nil)
        #expect(second.holderPID == getpid())
    }

    @Test func droppingTheLockReleasesIt() {
        let dir = TempDir()
        do {
            let first = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
            guard case .single = first.probe() else { Issue.record("first probe"); return }
            let blocked = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
            guard case .multiple = blocked.probe() else { Issue.record("not held"); return }
        }
        let again = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        guard case .single = again.probe() else { Issue.record("lock not released"); return }
    }

    @Test func stampTruncatesAnOldLongerPID() {
        let dir = TempDir()
        dir.write("instance.lock", "9999999999 stale junk\n")
        let s = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        _ = s.probe()
        #expect(dir.read("instance.lock") == "\(getpid())\n")
    }

    @Test func heldWithoutPIDIsStillMultiple() throws {
        let dir = TempDir()
        let first = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        _ = first.probe()
        let lockFD = first.lock?.fd.raw
        let fd = try #require(lockFD)
        #expect(ftruncate(fd, 0) == 0)
        let second = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        #expect(second.probe() == .multiple(evidence: "lock \(dir.path)/instance.lock is held by another process (no pid recorded)"))
        #expect(second.holderPID == nil)
        let report = [SignalReport(signal: second.name, isPlatform: false, answer: second.probe())]
        #expect(SingleInstanceRefusal.remedy(for: report, sameHost: second)
            == "stop the process holding \(dir.path)/instance.lock (fuser -v \(dir.path)/instance.lock), "
            + "or give this relay another --runtime-dir if it serves a different deployment")
    }

    @Test func lockFdIsCloseOnExec() throws {
        let dir = TempDir()
        let s = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:])
        _ = s.probe()
        let lockFD = s.lock?.fd.raw
        let fd = try #require(lockFD)
        // /proc/self/fdinfo/N "flags:" is octal open flags; O_CLOEXEC is 02000000.
        let info = try #require(readSmallFile("/proc/self/fdinfo/\(fd)"))
        let line = try #require(info.split(separator: "\n").first { $0.hasPrefix("flags:") })
        let flags = try #require(Int(line.dropFirst("flags:".count).trimmingPrefix { $0 == " " || $0 == "\t" }, radix: 8))
        #expect(flags & Int(O_CLOEXEC) != 0)
    }

    @Test func missingDirectoryIsUnknown() {
        let s = SameHostLockSignal(runtimeDirFlag: "/nonexistent-relay-dir", env: [:])
        guard case .unknown(let e) = s.probe() else { Issue.record("expected unknown"); return }
        #expect(e.hasPrefix("cannot open lock /nonexistent-relay-dir/instance.lock: open: "))
        #expect(s.lock == nil)
    }

    @Test func noRuntimeDirectoryIsUnknown() {
        let s = SameHostLockSignal(runtimeDirFlag: nil, env: [:], defaultDirectory: "/nonexistent-relay-dir")
        #expect(s.runtimeDirectory == nil)
        guard case .unknown = s.probe() else { Issue.record("expected unknown"); return }
    }

    @Test func runtimeDirectoryResolutionOrder() {
        let yes: (String) -> Bool = { _ in true }
        let no: (String) -> Bool = { _ in false }
        typealias S = SameHostLockSignal
        #expect(S.resolveRuntimeDirectory(flag: "/f", env: ["RUNTIME_DIRECTORY": "/r"], defaultDirectory: "/d", isDirectory: yes) == "/f")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: ["RUNTIME_DIRECTORY": "/r"], defaultDirectory: "/d", isDirectory: yes) == "/r")
        #expect(S.resolveRuntimeDirectory(flag: "", env: ["RUNTIME_DIRECTORY": "/r"], defaultDirectory: "/d", isDirectory: yes) == "/r")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: ["RUNTIME_DIRECTORY": "/r1:/r2"], defaultDirectory: "/d", isDirectory: yes) == "/r1")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: ["RUNTIME_DIRECTORY": "/r1 /r2"], defaultDirectory: "/d", isDirectory: yes) == "/r1")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: ["RUNTIME_DIRECTORY": ""], defaultDirectory: "/d", isDirectory: yes) == "/d")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: [:], defaultDirectory: "/d", isDirectory: yes) == "/d")
        #expect(S.resolveRuntimeDirectory(flag: nil, env: [:], defaultDirectory: "/d", isDirectory: no) == nil)
    }

    @Test func parsePID() {
        #expect(SameHostLockSignal.parsePID(Array("1234\n".utf8)[...]) == 1234)
        #expect(SameHostLockSignal.parsePID(Array("1234".utf8)[...]) == 1234)
        #expect(SameHostLockSignal.parsePID(Array("".utf8)[...]) == nil)
        #expect(SameHostLockSignal.parsePID(Array("0\n".utf8)[...]) == nil)
        #expect(SameHostLockSignal.parsePID(Array("12a\n".utf8)[...]) == nil)
        #expect(SameHostLockSignal.parsePID(Array("99999999999\n".utf8)[...]) == nil)
    }
}
