import CEpoll
import RelaySystem
import RelayReactor

/// Accepts connections on one listening socket and hands each new fd to `onAccept`.
/// Accepts a bounded batch per readiness event so a connection storm cannot monopolise the
/// loop (uSockets `loop.c`), and survives EMFILE by shedding the connection with a spare fd.
public final class Listener: EventHandler {
    public let socket: FileDescriptor
    public let address: SocketAddress
    private let reactor: Reactor
    private var token = Token(raw: 0)
    private var spare: Int32
    private let onAccept: (Int32, SocketAddress) -> Void
    public static let acceptBatch = 64

    public init(socket: FileDescriptor, reactor: Reactor, onAccept: @escaping (Int32, SocketAddress) -> Void) throws(Errno) {
        self.socket = socket
        self.address = Socket.localAddress(socket.raw)
        self.reactor = reactor
        self.onAccept = onAccept
        self.spare = pyry_open("/dev/null", O_RDONLY | O_CLOEXEC, 0)
        token = try reactor.register(fd: socket.raw, events: Reactor.readable, handler: self)
    }

    deinit { if spare >= 0 { _ = CEpoll.close(spare) } }

    public func handleEvent(_ events: UInt32) {
        for _ in 0..<Listener.acceptBatch {
            do {
                switch try Socket.accept(socket.raw) {
                case .wouldBlock: return
                case .done(let (fd, addr)): onAccept(fd, addr)
                }
            } catch let e where e.code == EMFILE || e.code == ENFILE {
                // Out of descriptors: free the spare, accept and close the pending connection so it
                // gets a prompt RST instead of waiting in the backlog, then take the spare back.
                if spare >= 0 { _ = CEpoll.close(spare); spare = -1 }
                if case .done(let (fd, _))? = try? Socket.accept(socket.raw) {
                    Socket.setAbortiveClose(fd)
                    _ = CEpoll.close(fd)
                }
                spare = pyry_open("/dev/null", O_RDONLY | O_CLOEXEC, 0)
                return
            } catch {
                return  // ECONNABORTED and friends: the peer gave up; nothing to do.
            }
        }
    }

    public func close() {
        reactor.deregister(fd: socket.raw, token: token)
        socket.close()
    }
}
