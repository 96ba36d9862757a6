/// The relay's record of one upgraded connection, attached as `Connection.userInfo`.
final class Peer {
    enum Role { case binary, phone }

    // Widest fields first, the one-byte ones together at the end: one record per idle
    // connection (docs/benchmarks.md, M1).
    let handle: ConnHandle
    let serverID: String
    /// The client IP (the peer, or the trusted X-Forwarded-For entry); its `ClientKey` is what
    /// the per-IP limits count, recomputed at close rather than kept.
    let ip: String
    let version: String      // X-Pyrycode-Version (binaries)
    let deviceName: String   // X-Pyrycode-Device-Name (phones), truncated for logs
    var connID = ""
    var connIDBytes: [UInt8] = []
    /// For a phone: its binary's connection while that binary holds the slot live (a cache of
    /// `Registry.route`, cleared when the binary leaves; saves two hash lookups per message).
    var binary: Connection?
    /// Where each message queued to this phone ends in its output stream (bytes written + queued
    /// at the time): the outbox charges 64 bytes per message not yet written (docs/protocol.md §7.5).
    private var pendingEnds: [Int] = []
    private var pendingHead = 0
    let role: Role
    var registered = false
    /// The binary's envelope asked for this phone's close: no close notice (docs/protocol.md §8).
    var closedByBinary = false
    /// A close notice code decided by the relay (1001 for non-JSON, docs/protocol.md §7.1).
    var noticeCode: UInt16?

    /// What the per-IP limits count this connection under (an IPv6 client's /64).
    var key: ClientKey { ClientKey(ip: ip) ?? .unattributed }

    /// Messages queued and not yet fully written, given the bytes written so far.
    func unwrittenMessages(written: Int) -> Int {
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

    func messageQueued(endingAt end: Int) { pendingEnds.append(end) }

    init(role: Role, handle: ConnHandle, serverID: String, ip: String, version: String, deviceName: String) {
        self.role = role
        self.handle = handle
        self.serverID = serverID
        self.ip = ip
        self.version = version
        self.deviceName = deviceName
    }
}
