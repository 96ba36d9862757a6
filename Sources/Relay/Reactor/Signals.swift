import CEpoll
import RelaySystem

/// Signals delivered as readable events on a signalfd (no async signal handlers).
/// The signals must be blocked before any thread starts, so this runs first in main.
public final class SignalChannel {
    private let sfd: FileDescriptor

    public init(_ signals: [Int32]) throws(Errno) {
        // A closed peer must be an EPIPE return, not a process-killing signal.
        pyry_ignore_sigpipe()
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        _ = pyry_sigmask_block(&set)
        let fd = try syscallChecked("signalfd") { signalfd(-1, &set, Int32(SFD_NONBLOCK | SFD_CLOEXEC)) }
        sfd = FileDescriptor(fd)
    }

    public var fd: Int32 { sfd.raw }

    /// The next pending signal number, or nil when none is pending.
    public func next() -> Int32? {
        var info = signalfd_siginfo()
        let n = read(sfd.raw, &info, MemoryLayout<signalfd_siginfo>.size)
        guard n == MemoryLayout<signalfd_siginfo>.size else { return nil }
        return Int32(info.ssi_signo)
    }
}
