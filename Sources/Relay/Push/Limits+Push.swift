import RelayCodecs

/// The Push layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
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
}
