import RelayCodecs

/// A connection handle chosen by the caller: a slot index in the low 24 bits (`index`) and a
/// sequence number above it. A handle must never be reused for another connection during the
/// process lifetime (the registry keeps the handle of a binary in grace as the identity phones
/// registered with), and no two live connections may share an index (the registry keeps its
/// per-connection state in arrays by index, `HandleSlots`).
public struct ConnHandle: Hashable, Sendable, CustomStringConvertible {
    public let raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public init(raw: UInt64) { self.raw = raw }
    public var description: String { "#\(raw)" }

    package static let indexBits = 24
    package static let indexLimit = 1 << indexBits

    /// `index` below `indexLimit`.
    package init(index: Int, sequence: UInt64) {
        precondition(index >= 0 && index < ConnHandle.indexLimit, "handle index out of range")
        raw = sequence << UInt64(ConnHandle.indexBits) | UInt64(index)
    }

    package var index: Int { Int(truncatingIfNeeded: raw & UInt64(ConnHandle.indexLimit - 1)) }
}

/// A deadline the registry asks the caller to keep. Identity includes a token, so a timer that
/// fires after the registry moved on (reclaim, answered probe) is recognised and ignored: the
/// registry never asks to cancel one (lazy expiry; a cancel that had to find the entry would
/// make a reclaim storm quadratic).
public enum RegistryTimer: Hashable, Sendable {
    /// docs/protocol.md §5 grace window of a disconnected binary.
    case grace(serverID: String, token: UInt32)
    /// docs/protocol.md §5 claim probe: the deadline for the incumbent's pong, keyed by the newcomer.
    case probe(newcomer: ConnHandle, token: UInt32)
}

/// How a binary came to hold its server-id (docs/protocol.md §5).
public enum ClaimKind: Sendable, Equatable {
    /// The slot was free.
    case fresh
    /// The slot was in grace: phones evicted with 4404.
    case reclaim
    /// The incumbent did not answer the probe (or vanished during it): it is closed 1011 if
    /// still connected, its phones evicted with 4404.
    case takeover
}

/// Work for the caller, in the order returned.
public enum RegistryAction: Equatable, Sendable {
    /// Close this connection with this code and reason (close codes and reasons of docs/protocol.md §5).
    /// The registry has already forgotten a phone it closes; the caller's later `phoneLeft`
    /// for it is a no-op (so no close notice, docs/protocol.md §8).
    case closeConn(ConnHandle, code: CloseCode, reason: String)
    /// Ping this incumbent binary now; report any pong with `incumbentAnswered`.
    case probeIncumbent(ConnHandle)
    /// Call `timerFired(timer, now:)` at `atMs` (same clock as `now`).
    case armTimer(RegistryTimer, atMs: Int64)
    /// Queue `Envelope.closeNotice(connID: phoneConnID, code: code)` to this binary, after the
    /// phone's last forwarded message (docs/protocol.md §8).
    case sendCloseNotice(binary: ConnHandle, phoneConnID: String, code: UInt16)
    /// The binary now holds `serverID`: log `server_claimed` {server_id, binary_version,
    /// remote} (and `server_id_takeover` for a takeover) and start reading from it.
    case claimed(ConnHandle, serverID: String, kind: ClaimKind)
    /// The claim lost (accompanies its `closeConn` 4409): log `server_id_conflict`.
    case claimRefused(ConnHandle, serverID: String)
    /// Grace ran out (after the phones' `closeConn` 1000): count
    /// `pyrycode_relay_grace_expiries_total`.
    case graceExpired(serverID: String, phonesClosed: Int)
}

/// Outcome of a phone registration (docs/protocol.md §5).
public enum PhoneRegistration: Equatable, Sendable {
    /// Registered under the relay connection id `client-<server-id>-<8 hex>` whose 8 hex
    /// digits are `suffix` (`ConnectionID.make`).
    case registered(suffix: UInt32)
    /// Close the phone with this code and reason; it was not registered.
    case rejected(code: CloseCode, reason: String)
}

/// Where a phone's message goes (docs/protocol.md §7.1).
public enum PhoneRoute: Equatable, Sendable {
    /// Wrap it and queue it to this binary.
    case forward(binary: ConnHandle)
    /// The binary is in grace: close the phone with this code (1000, empty reason), then
    /// report `phoneLeft` (no notice will be due: the binary is gone).
    case closePhone(code: CloseCode, reason: String)
    /// Not a registered phone (already evicted or left): drop the message.
    case unknown
}

/// Close reasons of docs/protocol.md §5 (never echo the id).
public enum RegistryReason {
    public static let alreadyClaimed = "server-id already claimed"
    public static let heartbeatTimeout = "heartbeat timeout"
    public static let reclaimed = "binary reclaimed server-id"
    public static let noServer = "no server with that id"
    public static let tooManyPhones = "too many phones for server-id"
}
