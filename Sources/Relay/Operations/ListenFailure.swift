import CEpoll
import RelaySystem
import RelayTransport

/// A listener that could not be bound, named the way the operator configured it:
/// `listen --metrics-listen 127.0.0.1:9090: address already in use`.
package struct ListenFailure: Error, CustomStringConvertible {
    package let flag: String
    /// The address as the relay prints it elsewhere (`relay_started listen=`).
    package let address: String
    package let port: UInt16
    package let error: Errno

    package var description: String { "listen --\(flag) \(address): \(Self.words(error, port: port))" }

    /// strerror(3) in lower case, as Go's net package prints it, plus the usual fix where one exists.
    package static func words(_ error: Errno, port: UInt16) -> String {
        let text = String(cString: strerror(error.code))
        let lowered = (text.first.map { String($0).lowercased() } ?? "") + text.dropFirst()
        if error == .accessDenied && port < 1024 {
            return lowered + " (ports below 1024 need CAP_NET_BIND_SERVICE or root)"
        }
        return lowered
    }
}

/// Binds the listener `--flag` configures; a failure names the flag and the address.
package func bindListener(_ flag: String, _ address: SocketAddress) throws(ListenFailure) -> FileDescriptor {
    do { return try Socket.listen(on: address) } catch {
        throw ListenFailure(flag: flag, address: address.description, port: address.port, error: error)
    }
}
