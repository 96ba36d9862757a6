import RelayReactor
import RelayCodecs
/// The close handshake of a WebSocket connection (RFC 6455 §7.1): who closed first, with which
/// codes. What `connectionDidClose` reports and the relay's close notices are read from it.
public enum CloseHandshake: Equatable, Sendable {
    /// No close frame either way (yet, or ever: the peer dropped).
    case none
    /// We closed first with `code` — a close frame, or a dropped socket after a write stall —
    /// and `answer` is the code of the peer's close frame once it came (nil: none, or no code).
    case local(CloseCode, answer: CloseCode?)
    /// The peer's close frame came first with `code` (nil: no status code), and ours echoed it
    /// (RFC 6455 §5.5.1: no code in, no code out).
    case peer(CloseCode?)

    /// The code of the peer's close frame, if one came with a code.
    public var peerCode: CloseCode? {
        switch self {
        case .none: nil
        case .local(_, let answer): answer
        case .peer(let code): code
        }
    }

    /// The code we closed with (the echoed one when the peer closed first).
    public var localCode: CloseCode? {
        switch self {
        case .none: nil
        case .local(let code, _): code
        case .peer(let code): code
        }
    }

    public var initiatedByPeer: Bool {
        if case .peer = self { true } else { false }
    }

    /// The peer's close frame arrived: it answers ours, or it opens the handshake.
    package mutating func peerSent(_ code: CloseCode?) {
        if case .local(let ours, _) = self { self = .local(ours, answer: code) } else { self = .peer(code) }
    }
}

/// The WebSocket phase's deadlines (the HTTP phase keeps its own in `Connection.HTTPPhase`),
/// four bytes each: a connection keeps them for its lifetime (docs/benchmarks.md, M1).
/// A timer entry of each kind acts only if its deadline is still armed and has passed. The
/// heartbeat needs none: its one pending entry is the next ping and the check of the
/// outstanding one (an idle connection's only heap entry); a pong deadline gets an entry of its
/// own when it comes before the next beat (a heartbeat timeout shorter than the interval) or
/// when that beat is not known (a probe's ping).
package struct ConnectionDeadlines {
    /// The end of the message being assembled (docs/protocol.md §4: 30 s from its first frame).
    package var assembly = ShortDeadline.unarmed
    /// Queued output that makes no progress until then marks the peer dead (docs/protocol.md §4);
    /// unarmed while the queue is empty.
    package var writeStall = ShortDeadline.unarmed
    /// One slot for three deadlines, each of one state: the states only move forward
    /// (`.open` → `.closeSent` → `.closing` → `.lingering`), each is armed on entering its state
    /// or in it, and each timer kind checks its state before its deadline.
    private var stateBound = ShortDeadline.unarmed

    /// `.open`: the pong to our outstanding ping (the heartbeat timeout); armed exactly while a
    /// ping is outstanding (`Connection.pingOutstanding`).
    package var pong: ShortDeadline {
        get { stateBound }
        set { stateBound = newValue }
    }
    /// `.closeSent`: the peer's answering close frame (RFC 6455 §7.1.2).
    package var closeAnswer: ShortDeadline {
        get { stateBound }
        set { stateBound = newValue }
    }
    /// `.closing` / `.lingering`: the flush and the peer's FIN after ours.
    package var linger: ShortDeadline {
        get { stateBound }
        set { stateBound = newValue }
    }
}

/// What OpenSSL asked for beyond the direction in progress (e.g. a TLS 1.3 KeyUpdate, RFC 8446
/// §4.6.3): the other readiness must wake us too.
package struct TLSWants {
    /// `SSL_read` needs the socket writable.
    package var readNeedsWritable = false
    /// `SSL_write` needs the socket readable.
    package var writeNeedsReadable = false
}

/// Output water marks and read pausing (docs/protocol.md §7.5): `connectionDidDrain` fires when
/// the queue falls to `lowWater` after having reached `highWater`. The marks are stored in 32
/// bits (a queue never holds more: `ByteBuffer.maxCapacity`); a larger mark means "never".
public struct Backpressure {
    private var high32 = UInt32.max
    private var low32: UInt32 = 0
    public package(set) var aboveHighWater = false
    /// Reading from the peer is paused (its kernel buffers fill, TCP pushes back).
    public package(set) var readingPaused = false

    public var highWater: Int {
        @inline(__always) get { Int(high32) }
        set { high32 = UInt32(clamping: newValue) }
    }
    public var lowWater: Int {
        @inline(__always) get { Int(low32) }
        set { low32 = UInt32(clamping: newValue) }
    }
}
