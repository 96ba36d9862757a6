import CEpoll
import RelaySystem
import RelayReactor

/// Accepts connections on one listening socket and hands each new fd to `onAccept`.
/// Accepts a bounded batch per readiness event so a connection storm cannot monopolise the
/// loop (uSockets `loop.c`), and survives EMFILE by shedding the connection with a spare fd.
public final class Listener: EventHandler {
    public private(set) var socket: FileDescriptor
    public let address: SocketAddress
    private let reactor: Reactor
    private var token = Token(raw: 0)
    private var spare: FileDescriptor
    private let onAccept: (consuming FileDescriptor, SocketAddress) -> Void
    public static let acceptBatch = 64

    public init(socket: consuming FileDescriptor, reactor: Reactor, onAccept: @escaping (consuming FileDescriptor, SocketAddress) -> Void) throws(Errno) {
        let raw = socket.raw
        self.socket = socket
        self.address = Socket.localAddress(raw)
        self.reactor = reactor
        self.onAccept = onAccept
        self.spare = FileDescriptor(pyry_open("/dev/null", O_RDONLY | O_CLOEXEC, 0))
        super.init()
        token = try reactor.register(fd: raw, events: Reactor.readable, handler: self)
    }

    override public func handleEvent(_ events: UInt32) {
        for _ in 0..<Listener.acceptBatch {
            do {
                switch try Socket.accept(socket.raw) {
                case .wouldBlock: return
                case .done(let (fd, addr)): onAccept(FileDescriptor(fd), addr)
                }
            } catch let e where e == .tooManyOpenFiles || e == .tooManyOpenFilesInSystem {
                // Out of descriptors: free the spare, accept and close the pending connection so it
                // gets a prompt RST instead of waiting in the backlog, then take the spare back.
                spare.close()
                if case .done(let (fd, _))? = try? Socket.accept(socket.raw) {
                    let refused = FileDescriptor(fd)
                    Socket.setAbortiveClose(refused.raw)
                }
                spare = FileDescriptor(pyry_open("/dev/null", O_RDONLY | O_CLOEXEC, 0))
                return
            } catch {
                return  // ECONNABORTED and friends: the peer gave up; nothing to do.
            }
        }
    }

    public func close() {
        try? reactor.deregister(fd: socket.raw, token: token)  // closed just below either way
        socket.close()
    }
}
