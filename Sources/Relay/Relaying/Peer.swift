import RelayCodecs
import RelaySystem
import RelayTransport
import RelayCore

/// The relay's record of one upgraded connection. It owns the connection and is its delegate
/// from the upgrade on (`RelayService.admit` hands it over), so every callback arrives here with
/// its record, typed, and goes to the service with it: no lookup, no cast.
package final class Peer: ConnectionDelegate, HandleOwner {
    package enum Role { case binary, phone }

    // Widest fields first, the small ones together at the end: one record per idle connection,
    // 104 bytes (docs/benchmarks.md, M1). What can be rebuilt when a log line needs it is not
    // stored: the conn id is the role, the server-id and `idSuffix`; the client's address and
    // what it says it is wait in `RelayService.unlogged` until the one line that names them is
    // written. The service is reached through the connection's context (`service(_:)`).
    package let handle: ConnHandle
    package let connection: Connection
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
    /// Which half of the client's key `clientWord` is (in the tail's spare byte).
    private let clientWordIsHigh: Bool
    /// The 8 hex digits of the conn id (docs/protocol.md §2–§3), once `hasConnID`.
    private var idSuffix: UInt32 = 0
    /// What the per-IP limits count this connection under, until it closes (`key`): one word and
    /// which half of the key it is (`ClientKey.word`).
    private let clientWord: UInt64

    /// `client`: the admitted client's key (an IP's: the peer, or the trusted X-Forwarded-For entry).
    package init(role: Role, handle: ConnHandle, connection: Connection, serverID: String, client: ClientKey) {
        self.role = role
        precondition(client != .unattributed, "a record is made for an admitted IP")
        clientWord = client.word
        clientWordIsHigh = client.wordIsHigh
        self.handle = handle
        self.connection = connection
        self.serverID = serverID
    }

    deinit { connIDBlock?.deallocate() }

    /// The escaped conn id a phone's messages are wrapped with (empty before registration).
    @inline(__always)
    package var connIDBytes: UnsafeRawBufferPointer {
        guard let b = connIDBlock else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: b + 4, count: Int(b.load(as: UInt32.self)))
    }

    /// The conn id, or "" before it has one.
    package var connID: String {
        hasConnID ? ConnectionID.make(role: role == .binary ? .binary : .phone, serverID: serverID, random: idSuffix) : ""
    }

    /// What the per-IP limits count this connection under (an IPv6 client's /64).
    package var key: ClientKey { ClientKey(word: clientWord, wordIsHigh: clientWordIsHigh) }

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

    /// The service, unretained: it outlives every record, so a callback costs no retain and release.
    @inline(__always)
    private func service(_ c: Connection) -> Unmanaged<RelayService> {
        Unmanaged.fromOpaque(c.context.application.unsafelyUnwrapped)
    }

    /// Requests end at the upgrade: a WebSocket reads frames only.
    package override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition { .drop }

    package override func connectionDidUpgrade(_ c: Connection) {
        service(c)._withUnsafeGuaranteedRef { $0.peerDidUpgrade(self) }
    }

    package override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
        service(c)._withUnsafeGuaranteedRef { service in
            switch role {
            case .phone: service.phoneMessage(self, payload, opcode)
            case .binary: service.binaryMessage(self, payload)
            }
        }
    }

    package override func connectionDidReceivePong(_ c: Connection) {
        service(c)._withUnsafeGuaranteedRef { $0.peerDidReceivePong(self) }
    }

    package override func connectionDidDrain(_ c: Connection) { service(c)._withUnsafeGuaranteedRef { $0.peerDidDrain(self) } }

    package override func connection(_ c: Connection, needsBufferRoom bytes: Int) {
        service(c)._withUnsafeGuaranteedRef { $0.shedLargestHolders(growing: self, by: bytes) }
    }

    package override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        // The service lets go of this record here; it must outlive the call.
        withExtendedLifetime(self) {
            service(c)._withUnsafeGuaranteedRef { $0.peerDidClose(self, peerCode: peerCode, localCode: localCode) }
        }
    }
}
