import CEpoll

/// Sole owner of a file descriptor: closes it exactly once, in `close()` or when the owner goes.
/// Everyone else borrows `raw` (NIO `BaseSocket` convention). Not copyable, so ownership is
/// spelled out (moved with `consume`, handed off with `release()`), and it costs no allocation:
/// a connection's fd is four bytes of its own object.
public struct FileDescriptor: ~Copyable {
    public private(set) var raw: Int32

    public init(_ raw: Int32) { self.raw = raw }

    public var isOpen: Bool { raw >= 0 }

    public mutating func close() {
        guard raw >= 0 else { return }
        // close(2) must not be retried on EINTR on Linux: the fd is already released.
        _ = CEpoll.close(raw)
        raw = -1
    }

    /// Hands the descriptor to a caller that will own it from now on.
    public consuming func release() -> Int32 {
        let r = raw
        discard self
        return r
    }

    deinit {
        if raw >= 0 { _ = CEpoll.close(raw) }
    }
}

/// Number of open descriptors of this process (the fd-leak checks read it).
public func openFileDescriptorCount() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var n = 0
    while readdir(dir) != nil { n += 1 }
    return n - 3  // ".", "..", and the directory stream's own fd
}
