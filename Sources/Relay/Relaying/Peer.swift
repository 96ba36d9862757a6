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
    /// a raw block this record owns (set once, freed in `deinit`), so wrapping a message retains
    /// no array.
    package private(set) var connIDBytes = UnsafeRawBufferPointer(start: nil, count: 0)
    /// For a phone: its binary while the registry lists the phone under that binary (a cache of
    /// `Registry.route`; saves a lookup in the peer table and one in the registry per message). Unretained and borrowed per message
    /// (`_withUnsafeGuaranteedRef`; an `unowned(unsafe)` load would still be retained), so a
    /// message costs no retain and release: the service clears it whenever the phone leaves the
    /// registry (`phoneLeavesNow`, eviction, `peerDidClose`) and on every phone of a binary that
    /// closes, before the binary's record can go.
    package var binary: Unmanaged<Peer>?
    /// What the forwarding rules remember of this connection (`ForwardingCore`).
    package var flow = ForwardingState()
    /// The client (the peer, or the trusted X-Forwarded-For entry): the connection lets go of its
    /// address at the upgrade, the record keeps it for logs and the per-IP count at close.
    package let remote: IPEndpoint
    /// The 8 hex digits of the conn id (docs/protocol.md §2–§3), once `hasConnID`.
    private var idSuffix: UInt32 = 0
    package let role: Role
    /// A binary gets its conn id after the upgrade, a phone when the registry accepts it.
    private var hasConnID = false

    package init(role: Role, handle: ConnHandle, connection: Connection, service: RelayService, serverID: String,
                 remote: IPEndpoint) {
        self.role = role
        self.remote = remote
        self.handle = handle
        self.connection = connection
        self.service = Unmanaged.passUnretained(service)
        self.serverID = serverID
    }

    deinit { connIDBytes.deallocate() }

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
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        block.copyMemory(from: UnsafeRawBufferPointer(start: bytes, count: bytes.count))
        connIDBytes.deallocate()
        connIDBytes = UnsafeRawBufferPointer(block)
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
