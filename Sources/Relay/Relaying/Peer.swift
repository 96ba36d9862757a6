import RelayTransport
import RelayCore

/// The relay's record of one upgraded connection, attached as `Connection.userInfo`.
package final class Peer {
    package enum Role { case binary, phone }

    package let role: Role
    package let handle: ConnHandle
    package let serverID: String
    package let ip: String
    /// What the per-IP limits count this connection under (an IPv6 client's /64).
    package let key: ClientKey
    package let version: String      // X-Pyrycode-Version (binaries)
    package let deviceName: String   // X-Pyrycode-Device-Name (phones), truncated for logs
    package var connID = ""
    /// The connection id as a JSON string body (`Envelope.jsonEscaped`), in its own block: the
    /// per-message wrap reads it without retaining an array.
    package private(set) var connIDBytes = UnsafeRawBufferPointer(start: nil, count: 0)
    package var registered = false
    /// For a phone: its binary's connection while that binary holds the slot live (a cache of
    /// `Registry.route`, cleared when the binary leaves; saves two hash lookups per message).
    /// Unretained: `RelayService.connections` owns the binary until `connectionDidClose`, which
    /// clears this cache (`uncacheBinary`), so the forward needs no retain/release.
    package var binary: Unmanaged<Connection>?
    /// The binary's envelope asked for this phone's close: no close notice (docs/protocol.md §8).
    package var closedByBinary = false
    /// A close notice code decided by the relay (1001 for non-JSON, docs/protocol.md §7.1).
    package var noticeCode: UInt16?
    /// Where each message queued to this phone ends in its output stream (bytes written + queued
    /// at the time): the outbox charges 64 bytes per message not yet written (docs/protocol.md §7.5).
    private var pendingEnds: [Int] = []
    private var pendingHead = 0

    /// Messages queued and not yet fully written, given the bytes written so far.
    package func unwrittenMessages(written: Int) -> Int {
        while pendingHead < pendingEnds.count && pendingEnds[pendingHead] <= written { pendingHead += 1 }
        if pendingHead == pendingEnds.count {
            pendingEnds.removeAll(keepingCapacity: pendingEnds.count <= 64)
            pendingHead = 0
        } else if pendingHead > 1024 && pendingHead * 2 > pendingEnds.count {
            pendingEnds.removeFirst(pendingHead)
            pendingHead = 0
        }
        return pendingEnds.count - pendingHead
    }

    package func messageQueued(endingAt end: Int) { pendingEnds.append(end) }

    package func setConnIDBytes(_ bytes: [UInt8]) {
        let block = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        bytes.withUnsafeBytes { block.copyMemory(from: $0) }
        connIDBytes.deallocate()
        connIDBytes = UnsafeRawBufferPointer(block)
    }

    deinit { connIDBytes.deallocate() }

    package init(role: Role, handle: ConnHandle, serverID: String, ip: String, key: ClientKey, version: String, deviceName: String) {
        self.role = role
        self.handle = handle
        self.serverID = serverID
        self.ip = ip
        self.key = key
        self.version = version
        self.deviceName = deviceName
    }
}
