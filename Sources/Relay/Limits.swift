/// Every limit and timeout of the relay, by name, with its default (docs/protocol.md §11 lists them
/// for clients; `pyrycode-relay --help` shows the flags).
/// Operator-tunable ones are copied into `RelayConfig` and overridden by flags there.
public enum Limits {
    // HTTP layer (docs/protocol.md §3)
    public static let maxHeaderBytes = 16 * 1024
    public static let headerTimeoutMs: Int64 = 5_000
    public static let keepAliveIdleMs: Int64 = 120_000

    // WebSocket (docs/protocol.md §4)
    public static let maxMessageBytes = 262_144
    public static let messageAssemblyTimeoutMs: Int64 = 30_000
    public static let heartbeatIntervalMs: Int64 = 30_000
    public static let heartbeatTimeoutMs: Int64 = 30_000
    public static let writeStallTimeoutMs: Int64 = 10_000
    public static let closeHandshakeTimeoutMs: Int64 = 5_000
    public static let maxControlPayload = 125

    // Registry (docs/protocol.md §5–§6)
    public static let claimProbeTimeoutMs: Int64 = 10_000
    public static let graceMs: Int64 = 30_000
    public static let phonesPerServerID = 16

    // Forwarding (docs/protocol.md §7)
    public static let phoneOutboxBudget = 4 * 1024 * 1024
    public static let outboxPerMessageOverhead = 64
    public static let binaryHighWater = 1024 * 1024
    public static let binaryLowWater = 256 * 1024
    public static let maxBufferedBytes = 512 * 1024 * 1024

    // Memory held by unfinished messages (docs/architecture.md, "Memory")
    /// A partial frame's input buffer grows to twice what arrived, by at least this step, never
    /// past the frame: it is charged for bytes the peer sent, not for the length it announced.
    public static let inputGrowthStep = 16 * 1024
    /// Freed buffer bytes after which free heap pages go back to the kernel (`malloc_trim`) once
    /// the loop has been quiet for a moment, rather than at the minute's housekeeping.
    public static let trimAfterReleasedBytes = 16 * 1024 * 1024

    // The loop (docs/architecture.md)
    /// An epoll batch of at most this many events flushes each connection's queued frames right
    /// after the event that queued them (as a plain forwarder would); a larger batch — a loaded
    /// loop — flushes once at the end of the iteration, so a destination fed by several sources
    /// gets one write. At partial load a message thus never waits behind the other reads of its
    /// batch (docs/benchmarks.md, L1).
    public static let flushPerEventMaxBatch = 8

    // Admission (docs/protocol.md §3.3, docs/operations.md § Admission limits)
    public static let rateBurst = 20
    public static let rateRefillMs: Int64 = 6_000
    public static let rateBucketIdleMs: Int64 = 120_000
    public static let maxConnections = 10_000
    public static let maxConnectionsPerIP = 256
    public static let maxHalfOpen = 1_024
    /// Half-open connections per client (an IPv4 address, an IPv6 /64), the oldest closed
    /// beyond. 64 is far above what one household or carrier NAT has in handshake at once (a
    /// handshake takes well under a second, and the rate limit lets an address upgrade 20 at a
    /// time), yet it takes 16 addresses (16 /64s) to fill the whole table of 1,024.
    public static let maxHalfOpenPerIP = 64
    public static let proxyHeaderTimeoutMs: Int64 = 5_000

    // Upgrade gate (docs/protocol.md)
    /// Longest accepted `X-Pyrycode-Server`, in bytes (ids are canonical UUIDv4s: 36).
    public static let maxServerIDBytes = 128
    /// Longest accepted PROXY v2 header, 16 fixed bytes + addresses + TLVs (the protocol allows
    /// 16 + 65,535). Covers the TLVs real load balancers add (AWS VPC endpoint ids, GCP's few
    /// hundred bytes); equal to one `BufferPool` block, so reading it never mallocs.
    public static let maxProxyHeaderBytes = 4_096

    // Operations (docs/operations.md)
    public static let drainDeadlineMs: Int64 = 10_000

    // Log volume (docs/operations.md, "Log volume")
    /// A value a peer chose (server-id, connection id, device name, version) is clipped to this
    /// many bytes in a log line.
    public static let logValueMaxBytes = 128
    /// Log lines waiting for a slow stderr reader (journald); lines beyond are dropped and
    /// counted (`--log-buffer-bytes`).
    public static let logBufferBytes = 1024 * 1024
    /// How long the last lines may take to reach stderr at exit before they are given up.
    public static let logExitFlushMs: Int64 = 2_000
    /// Repeatable events: lines per connection and per event in one interval, then one summary.
    public static let logBurstPerConnection = 5
    /// Repeatable events: lines per event over all connections in one interval, then one summary.
    public static let logBurstGlobal = 100
    public static let logSuppressionIntervalMs: Int64 = 10_000

    // Sharding (docs/architecture.md, "v2 = static shards")
    /// Most shards one deployment may declare (`--shard i/N`): far above the cores of the
    /// largest VM times a handful of VMs, and it keeps the per-shard lock names short.
    public static let maxShards = 1024

    // Push wakes (docs/protocol.md §9)
    /// Wakes one server-id may request at once, then one per `pushRefillMs`.
    public static let pushBurst = 6
    public static let pushRefillMs: Int64 = 10_000
    /// A server-id's bucket refills completely in burst × refill = 60 s; idle longer, it is forgotten.
    public static let pushBucketIdleMs: Int64 = 60_000
    /// Wakes in progress (waiting for the access token or for FCM) across all binaries.
    public static let pushMaxInFlight = 32
    /// The OAuth2 assertion's `exp` − `iat`; Google accepts at most one hour. Also the longest an
    /// access token is cached, whatever `expires_in` says.
    public static let pushAssertionLifetimeSeconds = 3_600
    /// An access token is replaced this long before its `expires_in` runs out, so no wake carries
    /// one that expires on the way.
    public static let pushTokenRefreshMarginMs: Int64 = 60_000

    // Outbound HTTPS client (Transport/HTTPSClient.swift: push wakes, later ACME)
    /// One call — resolve, connect, TLS, request, response — ends by then.
    public static let httpsClientDeadlineMs: Int64 = 10_000
    /// Response head plus body as received; beyond it the call fails (`responseTooLarge`).
    public static let httpsClientMaxResponseBytes = 4_096
    /// A kept-alive connection unused this long is closed (servers close theirs after 60–650 s).
    public static let httpsClientIdleMs: Int64 = 60_000
    /// Kept-alive connections over all hosts; a connection finishing beyond it is closed instead.
    /// Above `pushMaxInFlight` + 1, so a full batch of wakes and the token endpoint all stay warm.
    public static let httpsClientMaxIdleConnections = 64
    /// Addresses of one name tried in turn (AAAA and A interleaved, RFC 8305 §4).
    public static let httpsClientMaxAddresses = 8
    /// The shortest slice of the remaining time one connect attempt gets when several addresses
    /// share it (Go's net.Dialer: the time is split evenly, but not below 2 s).
    public static let httpsClientMinConnectAttemptMs: Int64 = 2_000
    /// A DNS lookup gives up after this (the call fails with `resolve`, leaving time for the rest).
    public static let dnsResolveTimeoutMs: Int64 = 5_000
    /// Silence after which the questions go to the next nameserver of /etc/resolv.conf.
    public static let dnsRetryMs: Int64 = 1_000

    // ACME (Sources/Relay/ACME, docs/operations.md "ACME")
    /// Renew this long before notAfter (`--acme-renew-before`; Go's autocert: 30 days).
    public static let acmeRenewBeforeMs: Int64 = 720 * 3_600_000
    /// How often the certificate's expiry is checked (besides at boot).
    public static let acmeCheckIntervalMs: Int64 = 12 * 3_600_000
    /// First retry after a failed order (`--acme-retry-min`); doubled per failure up to the max.
    public static let acmeRetryMinMs: Int64 = 60_000
    public static let acmeRetryMaxMs: Int64 = 3_600_000
    /// Polling an authorization or order: Retry-After is honoured within these bounds (a server
    /// cannot make us spin, nor stall an order for hours).
    public static let acmePollMinMs: Int64 = 1_000
    public static let acmePollMaxMs: Int64 = 60_000
    /// Polls of one authorization or order before the order is given up (and retried later).
    public static let acmeMaxPolls = 60
    /// A `badNonce` answer is retried this many times in a row (RFC 8555 §6.5).
    public static let acmeBadNonceRetries = 5
    /// ACME responses, and cache files, are read up to this size: a certificate chain is a few KiB.
    public static let acmeMaxCertificateBytes = 64 * 1024
    /// The problem `type` and `detail` in a log line are clipped to this.
    public static let acmeProblemMaxBytes = 200
    /// Concurrent connections on --http-listen (http-01 answers); beyond, new ones are closed.
    public static let acmeHTTPMaxConnections = 256
}
