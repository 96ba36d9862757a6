import CEpoll
import RelaySystem
import RelayLog

/// Thin, typed wrappers over the socket calls, all through the `syscall` funnel.
public enum Socket {
    /// A non-blocking, close-on-exec listening TCP socket. `:port` (`address.anyFamily`) is one
    /// `[::]` socket serving IPv4 too; on a host without IPv6 it falls back to `0.0.0.0`.
    public static func listen(on address: SocketAddress, backlog: Int32 = 4096) throws(Errno) -> FileDescriptor {
        try listenFallingBackToIPv4(address) { a throws(Errno) in try bindAndListen(a, backlog: backlog) }
    }

    /// Go's net.Listen does the same: a kernel without IPv6 (booted with ipv6.disable=1, or a
    /// sandbox without AF_INET6) refuses socket(AF_INET6) with EAFNOSUPPORT; then an empty host
    /// means IPv4 only, and the log says so. An explicit `[::]` or IPv6 host still fails.
    package static func listenFallingBackToIPv4(_ address: SocketAddress,
                                        _ open: (SocketAddress) throws(Errno) -> FileDescriptor) throws(Errno) -> FileDescriptor {
        do { return try open(address) } catch let e where e == .addressFamilyNotSupported && address.anyFamily {
            let v4 = SocketAddress(ip: "0.0.0.0", port: address.port)!
            Log.warn("ipv6_unavailable", ["listen": v4.description, "err": e.description])
            return try open(v4)
        }
    }

    private static func bindAndListen(_ address: SocketAddress, backlog: Int32) throws(Errno) -> FileDescriptor {
        let raw = try syscallChecked("socket") {
            socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        let fd = FileDescriptor(raw)
        var one: Int32 = 1
        _ = setsockopt(raw, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.family == AF_INET6 {
            // "[::]:port" and ":port" serve IPv4 too, as Go's net.Listen does (not every
            // distribution leaves net.ipv6.bindv6only at 0, so set it explicitly).
            var zero: Int32 = 0
            _ = setsockopt(raw, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
        }
        try address.withSockAddr { sa, len throws(Errno) in
            _ = try syscallChecked("bind") { pyry_bind(raw, sa, len) }
        }
        try syscallChecked("listen") { CEpoll.listen(raw, backlog) }
        return fd
    }

    /// Accepts one pending connection (non-blocking, close-on-exec).
    public static func accept(_ listener: Int32) throws(Errno) -> IOResult<(Int32, SocketAddress)> {
        var addr = SocketAddress()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = try withUnsafeMutablePointer(to: &addr.storage) { p throws(Errno) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(Errno) in
                try syscall("accept4") {
                    pyry_accept4(listener, sa, &len, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                }
            }
        }
        switch r {
        case .wouldBlock: return .wouldBlock
        case .done(let fd):
            addr.length = len
            return .done((fd, addr.unmappingIPv4))
        }
    }

    /// Local address a socket is bound to (for listeners bound to port 0 in tests).
    public static func localAddress(_ fd: Int32) -> SocketAddress {
        var addr = SocketAddress()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &addr.storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = pyry_getsockname(fd, $0, &len) }
        }
        addr.length = len
        return addr
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Reads into `buffer`; `.done(0)` is end of stream.
    @inline(__always)
    public static func read(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        try syscall("read") { CEpoll.read(fd, buffer, count) }
    }

    @inline(__always)
    public static func write(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) throws(Errno) -> IOResult<Int> {
        try syscall("write") { CEpoll.write(fd, buffer, count) }
    }

    /// Closes with an RST instead of FIN (SO_LINGER 0): for connections we abandon, so no
    /// TIME_WAIT or unsent data lingers.
    public static func setAbortiveClose(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
    }
}
