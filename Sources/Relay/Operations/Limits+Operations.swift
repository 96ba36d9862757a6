import RelayCodecs

/// The Operations layer's limits (the `Limits` namespace is declared in Codecs/Limits+Codecs.swift).
extension Limits {
    // Operations (docs/operations.md)
    public static let drainDeadlineMs: Int64 = 10_000

}
