/// ACME's figures for /metrics (docs/operations.md "ACME"): the served certificate's notAfter
/// (Unix seconds; 0: none yet) and orders by outcome. Plain stored integers: one thread.
public final class ACMECounters {
    public var tlsCertNotAfter: Int64 = 0
    public var ordersIssued = 0
    public var ordersFailed = 0

    public init() {}
}
