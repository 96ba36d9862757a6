import RelayCodecs

internal import CTLS

/// This relay's place in a sharded deployment (docs/architecture.md, "v2 = static shards"):
/// shard `index` of `count`. A server-id belongs to shard `crc32(id) mod count`, CRC-32/IEEE as
/// zlib's `crc32()` computes it — the same function as HAProxy's `crc32` converter without its
/// avalanche argument, so `req.fhdr(x-pyrycode-server),crc32,mod(N)` in front of the relays and
/// `owns(_:)` behind it agree on every id. The map is static: an id never moves while `count`
/// stays the same, so a binary and its phones always meet on one shard.
public struct ShardAssignment: Equatable, Sendable, CustomStringConvertible {
    public let index: Int
    public let count: Int

    public init?(index: Int, count: Int) {
        guard count >= 1, count <= Limits.maxShards, index >= 0, index < count else { return nil }
        self.index = index
        self.count = count
    }

    /// `i/N`: two plain decimal numbers (no sign, no spaces, no leading zeros), 1 ≤ N ≤
    /// `Limits.maxShards`, 0 ≤ i < N. Strict, so `01/3` and ` 1/3` cannot name a shard that a
    /// reader of the unit file would take for another.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Self.plainDecimal(parts[0]), let n = Self.plainDecimal(parts[1]) else {
            return nil
        }
        self.init(index: i, count: n)
    }

    private static func plainDecimal(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.count <= 5, s.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              s == "0" || s.first != "0" else { return nil }
        return Int(s)
    }

    /// The words a refusal uses for a malformed value (the value itself is not repeated).
    public static let expected = "expected i/N with 1 <= N <= \(Limits.maxShards) and 0 <= i < N, e.g. 0/4"

    public var description: String { "\(index)/\(count)" }

    /// The shard that serves `serverID` in a deployment of `count` shards.
    public static func shard(of serverID: String, count: Int) -> Int {
        Int(crc32(serverID) % UInt32(count))
    }

    /// Whether this shard serves `serverID`. Called once per upgrade, never per message.
    public func owns(_ serverID: String) -> Bool {
        Self.shard(of: serverID, count: count) == index
    }

    /// CRC-32/IEEE (zlib) of the id's bytes.
    public static func crc32(_ serverID: String) -> UInt32 {
        var id = serverID
        return id.withUTF8 { p in UInt32(CTLS.crc32(0, p.baseAddress, UInt32(p.count))) }
    }
}
