import CEpoll
import RelaySystem
import RelayLog
import RelayTransport

/// systemd socket activation (sd_listen_fds(3), docs/operations.md), without libsystemd: when
/// `$LISTEN_PID` is our PID, descriptors 3 ..< 3+`$LISTEN_FDS` are listening sockets systemd (or
/// `systemd-socket-activate`) bound for us, optionally named by the colon-separated
/// `$LISTEN_FDNAMES` (`FileDescriptorName=`). The first listening stream socket becomes the
/// public listener (`--insecure-listen` in insecure mode, the TLS listener in TLS mode); the
/// relay then binds nothing on that address itself.
public final class SocketActivation {
    /// sd_listen_fds(3): SD_LISTEN_FDS_START.
    public static let firstFD: Int32 = 3
    package static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]

    public struct Inherited: Equatable {
        public let fd: Int32
        public let name: String?
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Listening stream sockets not yet taken, in descriptor order.
    public private(set) var available: [Inherited]

    package init(available: [Inherited]) { self.available = available }

    /// Reads and validates the inherited descriptors, makes them non-blocking and close-on-exec,
    /// and unsets the three variables so nothing we might start inherits them (what
    /// `sd_listen_fds(1)` does). A failure is a boot failure (docs/operations.md § Boot order, step 6 → exit 1).
    public static func fromEnvironment(_ env: [String: String]) -> Result<SocketActivation, Failure> {
        defer { for v in variables { unsetenv(v) } }
        let parsed: [Inherited]
        switch parse(env, pid: getpid()) {
        case .failure(let f): return .failure(f)
        case .success(let list): parsed = list
        }
        var listening: [Inherited] = []
        var failure: Failure?
        for item in parsed {
            guard makeNonBlockingCloseOnExec(item.fd) else {
                failure = failure ?? Failure(description: "socket activation: inherited fd \(item.fd) is not open (\(Errno(pyry_errno())))")
                continue
            }
            switch classify(item.fd) {
            case .listeningStream:
                listening.append(item)
            case .other(let what):
                // Not ours to use (a datagram or connected socket from a misconfigured unit):
                // close it so it does not leak, and say so.
                Log.warn("socket_activation_unused", ["reason": "fd \(item.fd) is \(what)"])
                var unused = FileDescriptor(item.fd)
                unused.close()
            }
        }
        if let failure {
            for item in listening {
                var unused = FileDescriptor(item.fd)
                unused.close()
            }
            return .failure(failure)
        }
        if !parsed.isEmpty && listening.isEmpty {
            return .failure(Failure(description: "socket activation: none of the \(parsed.count) inherited descriptors is a listening stream socket (Accept=yes is not supported)"))
        }
        return .success(SocketActivation(available: listening))
    }

    /// The pure part of sd_listen_fds(3): which descriptors the environment hands us.
    /// No `LISTEN_PID`, or one that is not our PID → none (the variables were meant for another
    /// process, e.g. leaked from a parent). A malformed value meant for us is a failure.
    package static func parse(_ env: [String: String], pid: Int32) -> Result<[Inherited], Failure> {
        guard let pidText = env["LISTEN_PID"] else { return .success([]) }
        guard let target = Int32(pidText), target > 0 else {
            return .failure(Failure(description: "socket activation: LISTEN_PID is not a process id"))
        }
        guard target == pid else { return .success([]) }
        guard let countText = env["LISTEN_FDS"], let count = Int32(countText), count >= 0,
              count <= Int32.max - firstFD else {
            return .failure(Failure(description: "socket activation: LISTEN_FDS is missing or not a count"))
        }
        var names: [String?] = Array(repeating: nil, count: Int(count))
        if let namesText = env["LISTEN_FDNAMES"] {
            let split = namesText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard split.count == Int(count) else {
                return .failure(Failure(description: "socket activation: LISTEN_FDNAMES has \(split.count) names for \(count) descriptors"))
            }
            names = split.map { $0.isEmpty ? nil : $0 }
        }
        return .success((0..<Int(count)).map { Inherited(fd: firstFD + Int32($0), name: names[$0]) })
    }

    package enum Kind: Equatable {
        case listeningStream
        case other(String)
    }

    /// SO_TYPE and SO_ACCEPTCONN: a listening TCP socket is what `Listener` can serve.
    package static func classify(_ fd: Int32) -> Kind {
        func option(_ name: Int32) -> Int32? {
            var v: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(fd, SOL_SOCKET, name, &v, &len) == 0 ? v : nil
        }
        guard let type = option(SO_TYPE) else { return .other("not a socket") }
        guard type == Int32(SOCK_STREAM.rawValue) else { return .other("not a stream socket") }
        let family = Socket.localAddress(fd).family
        guard family == AF_INET || family == AF_INET6 else { return .other("not a TCP socket") }
        guard option(SO_ACCEPTCONN) == 1 else { return .other("not listening") }
        return .listeningStream
    }

    /// Takes the public listener's socket, or nil when none was inherited (the caller binds
    /// `configured` itself). A port other than the configured one is logged, not refused: the
    /// socket unit is the source of truth for what is bound.
    public func takePublicListener(configured: SocketAddress?) -> FileDescriptor? {
        guard !available.isEmpty else { return nil }
        let item = available.removeFirst()
        let fd = FileDescriptor(item.fd)
        let bound = Socket.localAddress(item.fd)
        Log.info("socket_activation", ["listen": bound.description, "reason": item.name.map { "fd name " + $0 } ?? "first inherited socket"])
        if let configured, configured.port != bound.port {
            Log.warn("socket_activation_port_mismatch", ["from": configured.description, "to": bound.description])
        }
        return fd
    }

    /// Closes inherited sockets nothing took, so their port does not accept into a void.
    public func closeUnused() {
        for item in available {
            Log.warn("socket_activation_unused", ["listen": Socket.localAddress(item.fd).description, "reason": "no listener of this mode uses it"])
            var unused = FileDescriptor(item.fd)
            unused.close()
        }
        available.removeAll()
    }
}

/// Sets O_NONBLOCK and FD_CLOEXEC on an inherited descriptor (sd_listen_fds(3) sets FD_CLOEXEC;
/// the loop needs non-blocking accept). Returns false, errno set, on failure.
package func makeNonBlockingCloseOnExec(_ fd: Int32) -> Bool {
    let fl = pyry_fcntl_int(fd, F_GETFL, 0)
    guard fl >= 0, pyry_fcntl_int(fd, F_SETFL, fl | O_NONBLOCK) >= 0 else { return false }
    let fdfl = pyry_fcntl_int(fd, F_GETFD, 0)
    guard fdfl >= 0, pyry_fcntl_int(fd, F_SETFD, fdfl | FD_CLOEXEC) >= 0 else { return false }
    return true
}

/// The descriptor flags and status flags, for tests.
package func descriptorFlags(_ fd: Int32) -> (status: Int32, descriptor: Int32) {
    (pyry_fcntl_int(fd, F_GETFL, 0), pyry_fcntl_int(fd, F_GETFD, 0))
}
