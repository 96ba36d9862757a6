import RelayCodecs
import RelayTransport
import RelayCore

/// The relay's record of one upgraded connection. It owns the connection and is its delegate
/// from the upgrade on (`RelayService.admit` hands it over), so every callback arrives here with
/// its record, typed, and goes to the service with it: no lookup, no cast.
package final class Peer: ConnectionDelegate {
    package enum Role { case binary, phone }

    // Widest fields first, the one-byte ones together at the end: one record per idle
    // connection (docs/benchmarks.md, M1).
    package let handle: ConnHandle
    package let connection: Connection
    /// The service outlives every record; unmanaged so that a callback costs no retain and release.
    private let service: Unmanaged<RelayService>
    package let serverID: String
    /// The client IP (the peer, or the trusted X-Forwarded-For entry), for logs.
    package let ip: String
    /// What the per-IP limits count this connection under (an IPv6 client's /64).
    package let key: ClientKey
    /// What the client says it is, for logs: X-Pyrycode-Version (binaries), X-Pyrycode-Device-Name
    /// (phones, truncated).
    package let label: String
    package var connID = ""
    /// The conn id as escaped JSON string content, for wrapping the phone's messages: a raw block
    /// this record owns (set once, freed in `deinit`), so wrapping a message retains no array.
    package private(set) var connIDBytes = UnsafeRawBufferPointer(start: nil, count: 0)
    /// For a phone: its binary while the registry lists the phone under that binary (a cache of
    /// `Registry.route`; saves two hash lookups per message). Unretained and borrowed per message
    /// (`_withUnsafeGuaranteedRef`; an `unowned(unsafe)` load would still be retained), so a
    /// message costs no retain and release: the service clears it whenever the phone leaves the
    /// registry (`phoneLeavesNow`, eviction, `peerDidClose`) and on every phone of a binary that
    /// closes, before the binary's record can go.
    package var binary: Unmanaged<Peer>?
    /// What the forwarding rules remember of this connection (`ForwardingCore`).
    package var flow = ForwardingState()
    package let role: Role

    package init(role: Role, handle: ConnHandle, connection: Connection, service: RelayService, serverID: String,
                 ip: String, key: ClientKey, label: String) {
        self.role = role
        self.handle = handle
        self.connection = connection
        self.service = Unmanaged.passUnretained(service)
        self.serverID = serverID
        self.ip = ip
        self.key = key
        self.label = label
    }

    deinit { connIDBytes.deallocate() }

    /// Stores the escaped conn id (once, at registration).
    package func setConnIDBytes(_ bytes: [UInt8]) {
        connIDBytes.deallocate()
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        block.copyMemory(from: UnsafeRawBufferPointer(start: bytes, count: bytes.count))
        connIDBytes = UnsafeRawBufferPointer(block)
    }

    /// A phone is registered once it has its conn id.
    package var isRegisteredPhone: Bool { role == .phone && !connID.isEmpty }

    // MARK: ConnectionDelegate (from the upgrade on)

    /// Requests end at the upgrade: a WebSocket reads frames only.
    package func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition { .drop }

    package func connectionDidUpgrade(_ c: Connection) {
        service._withUnsafeGuaranteedRef { $0.peerDidUpgrade(self) }
    }

    package func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {
        service._withUnsafeGuaranteedRef { service in
            switch role {
            case .phone: service.phoneMessage(self, payload, opcode)
            case .binary: service.binaryMessage(self, payload)
            }
        }
    }

    package func connectionDidReceivePong(_ c: Connection) {
        service._withUnsafeGuaranteedRef { $0.peerDidReceivePong(self) }
    }

    package func connectionDidDrain(_ c: Connection) { service._withUnsafeGuaranteedRef { $0.peerDidDrain(self) } }

    package func connection(_ c: Connection, needsBufferRoom bytes: Int) {
        service._withUnsafeGuaranteedRef { $0.shedLargestHolders(growing: self, by: bytes) }
    }

    package func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        // The service lets go of this record here; it must outlive the call.
        withExtendedLifetime(self) {
            service._withUnsafeGuaranteedRef { $0.peerDidClose(self, peerCode: peerCode, localCode: localCode) }
        }
    }
}
