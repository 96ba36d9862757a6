import RelaySystem
import RelayCodecs

/// What the application does with a request head that arrived before any upgrade.
public enum HTTPDisposition {
    /// Write this complete response; close afterwards when `close` (else keep-alive).
    case respond([UInt8], close: Bool)
    /// Answer 101 with this accept key (the delegate ran `WebSocketHandshake.validate`) and
    /// switch the connection to WebSocket framing.
    case upgrade(acceptKey: String, extraHeaders: [(String, String)])
    /// Close at once without a byte (e.g. the half-open cap).
    case drop
}

/// The application on top of the transport: the relay service, or the Autobahn echo harness.
/// Every callback runs on the loop thread, synchronously.
/// A class, not a protocol (as `EventHandler`): a connection calls it borrowed
/// (`Unmanaged._withUnsafeGuaranteedRef`), which a protocol existential cannot be, so a message
/// costs no retain and release. Subclasses override what they handle; the rest does nothing.
open class ConnectionDelegate {
    public init() {}
    /// A request head arrived before any upgrade. The default drops the connection.
    open func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition { .drop }
    open func connectionDidUpgrade(_ c: Connection) {}
    /// A whole data message; `payload` is valid only during the call.
    open func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {}
    /// A pong arrived (heartbeat bookkeeping is done by the connection; the relay's claim probe listens here).
    open func connectionDidReceivePong(_ c: Connection) {}
    /// The output queue fell below the low-water mark after having been above the high-water mark.
    open func connectionDidDrain(_ c: Connection) {}
    /// The connection is gone. `peerCode` is the code of the peer's close frame (nil when it sent
    /// none or dropped), `localCode` the code we sent, if any.
    open func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {}
    /// A TLS handshake finished (`ok`) or failed / timed out (the connection then closes).
    open func connection(_ c: Connection, tlsHandshakeFinished ok: Bool) {}
    /// The PROXY v2 header named the client (`c.remote` is now `source`).
    open func connection(_ c: Connection, proxiedFrom source: SocketAddress) {}
    /// Growing `c`'s input or message assembly by `bytes` would pass `IOContext.bufferBudget`
    /// (0: it already grew past it). Shed holders, `c` included, until it fits; whatever is
    /// still missing on return is refused by shedding `c`.
    open func connection(_ c: Connection, needsBufferRoom bytes: Int) {}
}

/// WebSocket settings chosen by the application: one object, shared by reference by every
/// connection it accepts (set them before the first accept).
public final class ConnectionSettings {
    public var maxMessageBytes = Limits.maxMessageBytes
    public var headerTimeoutMs = Limits.headerTimeoutMs
    public var keepAliveIdleMs = Limits.keepAliveIdleMs
    public var heartbeatIntervalMs = Limits.heartbeatIntervalMs
    public var heartbeatTimeoutMs = Limits.heartbeatTimeoutMs
    public var messageAssemblyTimeoutMs = Limits.messageAssemblyTimeoutMs
    public var writeStallTimeoutMs = Limits.writeStallTimeoutMs
    public var closeHandshakeTimeoutMs = Limits.closeHandshakeTimeoutMs
    public var maxHeaderBytes = Limits.maxHeaderBytes
    public init() {}
}
