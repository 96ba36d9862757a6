import CEpoll
import RelaySystem
import RelayCore
import RelayCodecs

/// The held `instance.lock`: the lock lives as long as this object (the open file description
/// owns the flock), so the caller keeps it for the process lifetime. Dropping it unlocks.
public final class InstanceLock {
    public let path: String
    public let fd: FileDescriptor

    package init(path: String, fd: consuming FileDescriptor) {
        self.path = path
        self.fd = fd
    }
}

/// docs/architecture.md (v1 = single-instance) same-host signal: an exclusive `flock` on `<runtime dir>/instance.lock`,
/// stamped with our PID. Another live holder → `multiple` naming its PID.
/// flock(2) locks belong to the open file description, so a second open of the file in the
/// same process conflicts too, and the kernel drops the lock when its holder dies (no stale
/// lock after a crash, unlike a PID file).
public final class SameHostLockSignal: ReplicaSignal {
    public let name = "same_host"
    public let isPlatform = false
    public static let lockFileName = "instance.lock"
    /// systemd's `RuntimeDirectory=pyrycode-relay` path, used when nothing names one.
    public static let defaultRuntimeDirectory = "/run/pyrycode-relay"

    /// The directory in use, or nil when none could be resolved (→ `unknown`).
    public let runtimeDirectory: String?
    /// Sharded mode: the lock is per shard, so one host runs one process per shard.
    public let shard: ShardAssignment?
    /// `instance.lock`, or `instance-<i>-of-<N>.lock` for shard i/N.
    public var lockFileName: String { Self.lockFileName(shard: shard) }
    /// Set by a successful `probe()`; hand it to the caller to keep alive.
    public private(set) var lock: InstanceLock?
    /// The PID stamped in the lock another process holds, when `probe()` found one.
    public private(set) var holderPID: Int32?

    /// `<runtime dir>/<lockFileName>`, nil when no directory was resolved.
    public var lockPath: String? {
        runtimeDirectory.map { $0.hasSuffix("/") ? $0 + lockFileName : $0 + "/" + lockFileName }
    }

    public static func lockFileName(shard: ShardAssignment?) -> String {
        guard let shard else { return lockFileName }
        return "instance-\(shard.index)-of-\(shard.count).lock"
    }

    public init(runtimeDirFlag: String?, env: [String: String],
                defaultDirectory: String = SameHostLockSignal.defaultRuntimeDirectory, shard: ShardAssignment? = nil) {
        self.shard = shard
        runtimeDirectory = Self.resolveRuntimeDirectory(
            flag: runtimeDirFlag, env: env, defaultDirectory: defaultDirectory, isDirectory: Self.isDirectory)
    }

    /// `--runtime-dir`, else `$RUNTIME_DIRECTORY`, else the default if it is a directory.
    /// systemd joins several `RuntimeDirectory=` entries into `$RUNTIME_DIRECTORY` (colon-separated;
    /// spaces accepted too): the first is ours.
    public static func resolveRuntimeDirectory(flag: String?, env: [String: String], defaultDirectory: String,
                                               isDirectory: (String) -> Bool) -> String? {
        if let f = flag, !f.isEmpty { return f }
        if let r = env["RUNTIME_DIRECTORY"],
           let first = r.split(whereSeparator: { $0 == ":" || $0 == " " }).first {
            return String(first)
        }
        return isDirectory(defaultDirectory) ? defaultDirectory : nil
    }

    /// opendir(3) succeeds only on a directory we may read (CEpoll carries dirent.h, not sys/stat.h).
    package static func isDirectory(_ path: String) -> Bool {
        guard let d = opendir(path) else { return false }
        closedir(d)
        return true
    }

    public func probe() -> ReplicaSignalAnswer {
        guard let path = lockPath else {
            return .unknown(evidence: "no runtime directory (--runtime-dir, RUNTIME_DIRECTORY, "
                + "\(Self.defaultRuntimeDirectory)); same-host instances not checked")
        }
        let raw: Int32
        var writable = true
        do throws(Errno) {
            // O_CLOEXEC: a child must not inherit (and so keep) our lock. O_NOFOLLOW: a planted
            // symlink in a shared directory must not redirect the truncate below. 0644: anyone
            // may read the PID.
            raw = try syscallChecked("open") {
                pyry_open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
            }
        } catch where error == .accessDenied {
            // The file belongs to another user (e.g. a relay started by hand beside the unit):
            // flock(2) works on a read-only descriptor, so the signal can still answer.
            do throws(Errno) {
                raw = try syscallChecked("open") { pyry_open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0) }
                writable = false
            } catch {
                return .unknown(evidence: "cannot open lock \(path): \(error)")
            }
        } catch {
            return .unknown(evidence: "cannot open lock \(path): \(error)")
        }
        let fd = FileDescriptor(raw)
        let acquired: Bool
        do throws(Errno) {
            switch try syscall("flock", { flock(fd.raw, LOCK_EX | LOCK_NB) }) {
            case .done: acquired = true
            case .wouldBlock: acquired = false  // EWOULDBLOCK == EAGAIN on Linux
            }
        } catch {
            return .unknown(evidence: "cannot lock \(path): \(error)")
        }
        guard acquired else {
            let what = shard.map { "another relay for shard \($0)" } ?? "another relay"
            if let pid = Self.readPID(fd.raw) {
                holderPID = pid
                return .multiple(evidence: "lock \(path) is held by \(what), pid \(pid)")
            }
            // The holder has locked but not yet stamped the file (or a foreign process holds it).
            return .multiple(evidence: "lock \(path) is held by another process (no pid recorded)"
                + (shard.map { "; this relay claims shard \($0)" } ?? ""))
        }
        let me = getpid()
        guard writable else {
            lock = InstanceLock(path: path, fd: fd)
            return .single(evidence: "lock \(path) held by this process, pid \(me) (read-only: pid not stamped)")
        }
        do throws(Errno) {
            try Self.stamp(fd.raw, pid: me)
        } catch {
            // We do hold the lock; the stamp only helps the next operator read who holds it.
            lock = InstanceLock(path: path, fd: fd)
            return .single(evidence: "lock \(path) held by this process, pid \(me) (pid stamp failed: \(error))")
        }
        lock = InstanceLock(path: path, fd: fd)
        return .single(evidence: "lock \(path) held by this process, pid \(me)")
    }

    /// Truncate, then write `"<pid>\n"` at offset 0: the file names exactly one holder.
    package static func stamp(_ fd: Int32, pid: pid_t) throws(Errno) {
        try syscallChecked("ftruncate") { ftruncate(fd, 0) }
        let text = Array("\(pid)\n".utf8)
        let n = try syscallChecked("pwrite") { text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } }
        if n != text.count { throw Errno(EIO, call: "pwrite") }
    }

    /// The holder's PID from the file: leading decimal digits up to a newline; nil otherwise.
    package static func readPID(_ fd: Int32) -> Int32? {
        var buf = [UInt8](repeating: 0, count: 24)
        let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return parsePID(buf[0..<n])
    }

    package static func parsePID(_ bytes: ArraySlice<UInt8>) -> Int32? {
        guard let v = DecimalDigits.value(bytes.prefix { $0 != UInt8(ascii: "\n") }, maxDigits: 10),
              v > 0, v <= Int(Int32.max) else { return nil }
        return Int32(v)
    }
}
