import CEpoll
import RelayReactor
import RelaySystem

/// stderr while the loop runs: writing a log line never blocks the reactor.
///
/// Lines wait in a buffer of at most `capacity` bytes and leave in one write at the end of the
/// loop iteration that wrote them (`Reactor.callAtIterationEnd`): a connection's handshake logs
/// two or three lines, and a burst of connections shares one system call instead of one per line
/// (docs/benchmarks.md, TLS handshakes). When the reader is slow (a lagging journald, a full
/// pipe) the rest stays buffered and is flushed when the descriptor is writable — it is
/// registered with the reactor for EPOLLOUT only while bytes wait. A line that does not fit is
/// dropped and counted (`linesDropped`, the metric `pyrycode_relay_log_lines_dropped_total`);
/// once the buffer has drained, one line `msg=log_lines_dropped count=N` says how many were lost.
///
/// Non-blocking without touching a descriptor shared with others: O_NONBLOCK belongs to the
/// open file description, which fd 2 shares with the parent (a shell's terminal, a supervisor's
/// pipe) — setting it there would leave the shell with a non-blocking terminal. So:
/// - a socket (systemd's stream to journald): `send(MSG_DONTWAIT)` on fd 2, per call;
/// - a pipe, terminal or other device: a private description of the same file, opened through
///   /proc/self/fd/2 with O_NONBLOCK; fd 2 itself stays as it was (crash messages use it);
/// - a regular file: plain writes (the kernel never makes them wait for a reader);
/// - only when /proc cannot reopen it (no /proc, another user's pipe): O_NONBLOCK on fd 2,
///   restored by `finish`.
public final class LogOutput: EventHandler {
    package enum Kind {
        case socket, stream, file
    }

    private let fd: Int32
    private let kind: Kind
    /// The reopened /proc/self/fd/2 we own (nil when writing to fd 2 itself).
    private var owned: FileDescriptor?
    /// fd 2's flags before O_NONBLOCK was set on it (the fallback), restored by `finish`.
    private let restoreFlags: Int32?
    private let reactor: Reactor
    private let capacity: Int
    /// Buffer capacity kept between flushes (a busy iteration's lines); more is freed.
    private static let keptCapacity = 64 * 1024
    private var pending: [UInt8] = []
    private var head = 0
    private var token: Token?
    private var droppedUnreported = 0
    /// A flush at the end of this iteration has been asked for.
    private var flushAsked = false
    /// Lines lost since boot: the buffer was full, or stderr failed (its reader is gone).
    public private(set) var linesDropped = 0

    package init(fd: Int32, kind: Kind, reactor: Reactor, capacity: Int, ownsFD: Bool = false, restoreFlags: Int32? = nil) {
        self.fd = fd
        self.kind = kind
        self.reactor = reactor
        self.capacity = capacity
        self.owned = ownsFD ? FileDescriptor(fd) : nil
        self.restoreFlags = restoreFlags
    }

    /// The writer for this process's stderr (see the type's comment for how each kind of
    /// descriptor is made non-blocking).
    public static func stderr(reactor: Reactor, capacity: Int) -> LogOutput {
        var st = stat()
        if fstat(2, &st) == 0 {
            switch Int32(st.st_mode) & S_IFMT {
            case S_IFREG:
                return LogOutput(fd: 2, kind: .file, reactor: reactor, capacity: capacity)
            case S_IFSOCK:
                return LogOutput(fd: 2, kind: .socket, reactor: reactor, capacity: capacity)
            default:
                let own = pyry_open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0)
                if own >= 0 {
                    return LogOutput(fd: own, kind: .stream, reactor: reactor, capacity: capacity, ownsFD: true)
                }
            }
        }
        let flags = pyry_fcntl_int(2, F_GETFL, 0)
        if flags >= 0, pyry_fcntl_int(2, F_SETFL, flags | O_NONBLOCK) == 0 {
            return LogOutput(fd: 2, kind: .stream, reactor: reactor, capacity: capacity, restoreFlags: flags)
        }
        return LogOutput(fd: 2, kind: .file, reactor: reactor, capacity: capacity)
    }

    /// Bytes written so far but not yet taken by the reader.
    public var pendingBytes: Int { pending.count - head }

    /// One complete line, newline included.
    public func write(_ line: UnsafeRawBufferPointer) {
        if pendingBytes + line.count > capacity {
            drop(lines: 1)
            return
        }
        pending.append(contentsOf: line)
        // Armed: EPOLLOUT flushes, in order. Otherwise the end of this iteration does.
        if token == nil && !flushAsked {
            flushAsked = true
            reactor.callAtIterationEnd(self)
        }
    }

    // MARK: the loop

    override public func handleEvent(_ events: UInt32) {
        flush()
    }

    override public func flushTick() {
        flushAsked = false
        flush()
    }

    private func flush() {
        var readerGone = false
        while pendingBytes > 0 {
            let result = pending.withUnsafeBytes { attempt(UnsafeRawBufferPointer(rebasing: $0[head...])) }
            switch result {
            case .wrote(0):
                if head > capacity / 2 { compact() }
                arm()  // the reader is behind: EPOLLOUT says when it takes more
                return
            case .wrote(let n):
                head += n
            case .failed:
                dropPending()
                readerGone = true
            }
        }
        // Keep a small buffer for the next iteration's lines; give a large one back.
        if pending.capacity > Self.keptCapacity { pending = [] } else { pending.removeAll(keepingCapacity: true) }
        head = 0
        disarm()
        // The summary waits for a reader that takes lines again (it would only fail and count itself).
        if !readerGone { reportDropped() }
    }

    private func arm() {
        guard token == nil else { return }
        do { token = try reactor.register(fd: fd, events: Reactor.writable, handler: self) } catch {
            // Not pollable: nothing would ever flush these bytes.
            dropPending()
        }
    }

    private func disarm() {
        guard let t = token else { return }
        // The slot is freed either way; a failure means the fd was not in the set (nothing to undo).
        try? reactor.deregister(fd: fd, token: t)
        token = nil
    }

    // MARK: exit

    /// Writes what is left, waiting up to `timeoutMs` for a slow reader, then the dropped-lines
    /// summary; lines still unwritten at the deadline are given up. Called once the loop has
    /// stopped; afterwards lines go straight to fd 2 again (`Log.output` is cleared).
    public func finish(timeoutMs: Int64) {
        disarm()
        let deadline = monotonicMs() + timeoutMs
        drainBlocking(until: deadline)
        if droppedUnreported > 0 {
            var line = dropSummary()
            line.withUTF8 { pending.append(contentsOf: UnsafeRawBufferPointer($0)) }
            droppedUnreported = 0
            drainBlocking(until: deadline)
        }
        if let flags = restoreFlags { _ = pyry_fcntl_int(2, F_SETFL, flags) }
        owned = nil  // closes the reopened descriptor
    }

    private func drainBlocking(until deadline: Int64) {
        while pendingBytes > 0 {
            let result = pending.withUnsafeBytes { attempt(UnsafeRawBufferPointer(rebasing: $0[head...])) }
            switch result {
            case .wrote(0):
                let left = deadline - monotonicMs()
                guard left > 0 else {
                    dropPending()
                    return
                }
                var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&p, 1, Int32(left))
            case .wrote(let n):
                head += n
            case .failed:
                dropPending()
            }
        }
    }

    // MARK: bytes

    private enum Attempt {
        case wrote(Int)  // 0: would block
        case failed  // the reader is gone or the descriptor is unusable
    }

    private func attempt(_ bytes: UnsafeRawBufferPointer) -> Attempt {
        var done = 0
        while done < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[done...])
            let n = kind == .socket
                ? send(fd, rest.baseAddress, rest.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
                : CEpoll.write(fd, rest.baseAddress, rest.count)
            if n > 0 {
                done += n
                continue
            }
            let e = pyry_errno()
            if n < 0 && e == EINTR { continue }
            if n < 0 && e == EAGAIN && kind != .file { return .wrote(done) }
            return done > 0 ? .wrote(done) : .failed
        }
        return .wrote(done)
    }

    /// Forgets every byte waiting; each line among them counts as dropped.
    private func dropPending() {
        let lines = pending[head...].reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        pending = []
        head = 0
        drop(lines: max(lines, 1))
    }

    private func drop(lines: Int) {
        linesDropped += lines
        droppedUnreported += lines
    }

    private func compact() {
        pending.removeSubrange(0..<head)
        head = 0
    }

    private func reportDropped() {
        guard droppedUnreported > 0 else { return }
        var line = dropSummary()
        droppedUnreported = 0
        line.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    private func dropSummary() -> String {
        Logfmt.line(level: "warn", msg: "log_lines_dropped", [("count", String(droppedUnreported))]) + "\n"
    }
}
