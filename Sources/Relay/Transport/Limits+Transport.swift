import RelayCodecs

/// The Transport layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
    // HTTP layer (docs/protocol.md §3)
    public static let headerTimeoutMs: Int64 = 5_000
    public static let keepAliveIdleMs: Int64 = 120_000

    // WebSocket (docs/protocol.md §4)
    public static let messageAssemblyTimeoutMs: Int64 = 30_000
    public static let heartbeatIntervalMs: Int64 = 30_000
    public static let heartbeatTimeoutMs: Int64 = 30_000
    public static let writeStallTimeoutMs: Int64 = 10_000
    public static let closeHandshakeTimeoutMs: Int64 = 5_000

    // Memory held by unfinished messages (docs/architecture.md, "Memory")
    /// A partial frame's input buffer grows to twice what arrived, by at least this step, never
    /// past the frame: it is charged for bytes the peer sent, not for the length it announced.
    public static let inputGrowthStep = 16 * 1024
    /// Freed buffer bytes after which free heap pages go back to the kernel (`malloc_trim`) once
    /// the loop has been quiet for a moment, rather than at the minute's housekeeping.
    public static let trimAfterReleasedBytes = 16 * 1024 * 1024

    // Admission (docs/protocol.md §3.3, docs/operations.md § Admission limits)
    public static let proxyHeaderTimeoutMs: Int64 = 5_000

    // Upgrade gate (docs/protocol.md)
    /// Longest accepted PROXY v2 header, 16 fixed bytes + addresses + TLVs (the protocol allows
    /// 16 + 65,535). Covers the TLVs real load balancers add (AWS VPC endpoint ids, GCP's few
    /// hundred bytes); equal to one `BufferPool` block, so reading it never mallocs.
    public static let maxProxyHeaderBytes = 4_096

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
}
