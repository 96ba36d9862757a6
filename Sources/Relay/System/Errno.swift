import CEpoll

/// A failed system call: the errno value plus the call's name, for logs.
public struct Errno: Error, Equatable, CustomStringConvertible {
    public let code: Int32
    public let call: StaticString

    public init(_ code: Int32, call: StaticString = "") {
        self.code = code
        self.call = call
    }

    public static func == (a: Errno, b: Errno) -> Bool { a.code == b.code }

    public static let wouldBlock = Errno(EAGAIN)
    public static let interrupted = Errno(EINTR)
    public static let connectionReset = Errno(ECONNRESET)
    public static let brokenPipe = Errno(EPIPE)
    public static let tooManyOpenFiles = Errno(EMFILE)
    public static let addressInUse = Errno(EADDRINUSE)
    public static let inProgress = Errno(EINPROGRESS)
    public static let accessDenied = Errno(EACCES)
    public static let tooManyOpenFilesInSystem = Errno(ENFILE)
    public static let addressFamilyNotSupported = Errno(EAFNOSUPPORT)

    public var description: String {
        let name = String(cString: strerror(code))
        return call.utf8CodeUnitCount == 0 ? name : "\(call): \(name)"
    }
}

/// The outcome of a non-blocking call: would-block is a value, not an error.
public enum IOResult<T> {
    case done(T)
    case wouldBlock
}

/// The one funnel every syscall goes through (NIO `System.swift` style):
/// retries EINTR, turns EAGAIN into `.wouldBlock`, throws `Errno` for the rest,
/// and traps on EBADF/EFAULT, which are bugs in this program, not runtime conditions.
/// `@inlinable`: callers in other layers (every read and write) get it specialized for their
/// integer type even without cross-module optimization, instead of a generic call through
/// witness tables.
@inlinable @inline(__always)
public func syscall<T: FixedWidthInteger>(_ call: StaticString, _ body: () -> T) throws(Errno) -> IOResult<T> {
    while true {
        let r = body()
        if r >= 0 { return .done(r) }
        let e = pyry_errno()
        switch e {
        case EINTR: continue
        case EAGAIN: return .wouldBlock
        case EBADF, EFAULT: fatalError("\(call): programmer error, errno \(e)")
        default: throw Errno(e, call: call)
        }
    }
}

/// A syscall that must not would-block (setup calls: socket, bind, epoll_ctl…).
@inlinable @inline(__always)
@discardableResult
public func syscallChecked<T: FixedWidthInteger>(_ call: StaticString, _ body: () -> T) throws(Errno) -> T {
    switch try syscall(call, body) {
    case .done(let v): return v
    case .wouldBlock: throw Errno(EAGAIN, call: call)
    }
}
