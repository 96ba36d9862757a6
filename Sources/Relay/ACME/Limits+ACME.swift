import RelayCodecs

/// The ACME layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
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
