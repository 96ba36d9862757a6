import RelayCodecs
import RelaySystem
import RelayTransport
import RelayCore

/// The relay's record of one upgraded connection. It owns the connection and is its delegate
/// from the upgrade on (`RelayService.admit` hands it over), so every callback arrives here with
/// its record, typed, and goes to the service with it: no lookup, no cast.
package final class Peer: ConnectionDelegate, HandleOwner {
    package enum Role { case binary, phone }

    // Widest fields first, the small ones together at the end: one record per idle connection
    // (docs/benchmarks.md, M1). What can be rebuilt when a log line needs it is not stored: the
    // conn id is the role, the server-id and `idSuffix`; what the client says it is waits in
    // `RelayService.unloggedLabels` until the one line that names it is written.
    package let handle: ConnHandle
    package let connection: Connection
    /// The service outlives every record; unmanaged so that a callback costs no retain and release.
    private let service: Unmanaged<RelayService>
    package let serverID: String
    /// A registered phone's conn id as escaped JSON string content, for wrapping its messages:
    /// a raw block this record owns (set once, freed in `deinit`), its length in the first 4
    /// bytes (a pointer here, not a pointer and a count), so wrapping a message retains no array.
    private var connIDBlock: UnsafeMutableRawPointer?
    /// For a phone: its binary while the registry lists the phone under that binary (a cache of
    /// `Registry.route`; saves a lookup in the peer table and one in the registry per message). Unretained and borrowed per message
    /// (`_withUnsafeGuaranteedRef`; an `unowned(unsafe)` load would still be retained), so a
    /// message costs no retain and release: the service clears it whenever the phone leaves the
    /// registry (`phoneLeavesNow`, eviction, `peerDidClose`) and on every phone of a binary that
    /// closes, before the binary's record can go.
    package var binary: Unmanaged<Peer>?
    /// What the forwarding rules remember of this connection (`ForwardingCore`): 25 bytes, the
    /// one-byte fields below fill its tail.
    package var flow = ForwardingState()
    package let role: Role
    /// A binary gets its conn id after the upgrade, a phone when the registry accepts it.
    private var hasConnID = false
    /// The 8 hex digits of the conn id (docs/protocol.md §2–§3), once `hasConnID`.
    private var idSuffix: UInt32 = 0
    /// The client's IP (the peer, or the trusted X-Forwarded-For entry), its two halves as
    /// `IPEndpoint` holds them: the connection lets go of its address at the upgrade, the record
    /// keeps it for logs and the per-IP count at close. 16 bytes, so the record is 120.
    private let addressHigh: UInt64
    private let addressLow: UInt64

    package init(role: Role, handle: ConnHandle, connection: Connection, service: RelayService, serverID: String,
                 remote: IPEndpoint) {
        self.role = role
        addressHigh = remote.high
        addressLow = remote.low
        self.handle = handle
        self.connection = connection
        self.service = Unmanaged.passUnretained(service)
        self.serverID = serverID
    }

    deinit { connIDBlock?.deallocate() }

    /// The escaped conn id a phone's messages are wrapped with (empty before registration).
    @inline(__always)
    package var connIDBytes: UnsafeRawBufferPointer {
        guard let b = connIDBlock else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: b + 4, count: Int(b.load(as: UInt32.self)))
    }

    /// The client (port 0: the record keeps the IP only).
    package var remote: IPEndpoint { IPEndpoint(ipHigh: addressHigh, low: addressLow) }

    /// The conn id, or "" before it has one.
    package var connID: String {
        hasConnID ? ConnectionID.make(role: role == .binary ? .binary : .phone, serverID: serverID, random: idSuffix) : ""
    }

    /// The client IP (the peer, or the trusted X-Forwarded-For entry), for logs.
    package var ip: String { remote.ipString }

    /// What the per-IP limits count this connection under (an IPv6 client's /64). Admission
    /// refuses a client whose address is not an IP, so the fallback is never taken.
    package var key: ClientKey { ClientKey(remote) ?? .unattributed }

    /// Gives the binary its conn id (`server-<server-id>-<8 hex>`).
    package func assignBinaryID(_ suffix: UInt32) {
        idSuffix = suffix
        hasConnID = true
    }

    /// Gives the phone the conn id the registry chose, and keeps it escaped for the wrap: the id
    /// embeds the server-id header, which may hold `"` or `\`.
    package func assignPhoneID(_ suffix: UInt32) {
        idSuffix = suffix
        hasConnID = true
        let bytes = JSONString.escaped(connID)
        let block = UnsafeMutableRawPointer.allocate(byteCount: 4 + bytes.count, alignment: 4)
        block.storeBytes(of: UInt32(bytes.count), as: UInt32.self)
        (block + 4).copyMemory(from: bytes, byteCount: bytes.count)
        connIDBlock?.deallocate()
        connIDBlock = block
    }

    /// A phone is registered once it has its conn id.
    package var isRegisteredPhone: Bool { role == .phone && hasConnID }

    // MARK: ConnectionDelegate (from the upgrade on)

    /// Requests end at the upgrade: a WebSocket reads frames only.
    package override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition { .drop }

    package override func connectionDidUpgrade(_ c: Connection) {
        service._withUnsafeGuaranteedRef { $0.peerDidUpgrade(self) }
    }

    package override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
        service._withUnsafeGuaranteedRef { service in
            switch role {
            case .phone: service.phoneMessage(self, payload, opcode)
            case .binary: service.binaryMessage(self, payload)
            }
        }
    }

    package override func connectionDidReceivePong(_ c: Connection) {
        service._withUnsafeGuaranteedRef { $0.peerDidReceivePong(self) }
    }

    package override func connectionDidDrain(_ c: Connection) { service._withUnsafeGuaranteedRef { $0.peerDidDrain(self) } }

    package override func connection(_ c: Connection, needsBufferRoom bytes: Int) {
        service._withUnsafeGuaranteedRef { $0.shedLargestHolders(growing: self, by: bytes) }
    }

    package override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        // The service lets go of this record here; it must outlive the call.
        withExtendedLifetime(self) {
            service._withUnsafeGuaranteedRef { $0.peerDidClose(self, peerCode: peerCode, localCode: localCode) }
        }
    }
}
