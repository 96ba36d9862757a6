import RelayCore

/// How an operator names the shard (docs/operations.md § Sharded deployment).
extension ShardAssignment {
    /// `--shard` / `PYRYCODE_RELAY_SHARD`.
    public static let flagName = "shard"
    public static let environmentVariable = "PYRYCODE_RELAY_SHARD"

    /// The flag and the variable name the same shard or only one of them is given; two different
    /// answers are a configuration error (exit 2): the process would lock one shard and serve another.
    public static func resolve(flag: ShardAssignment?, environment: ShardAssignment?)
        -> Result<ShardAssignment?, RelayConfig.Refusal>
    {
        if let flag, let environment, flag != environment {
            return .failure(RelayConfig.Refusal(
                description: "--\(flagName) \(flag) and \(environmentVariable) name different shards; give one of them"))
        }
        return .success(flag ?? environment)
    }

    /// A shard cannot run ACME (docs/operations.md § Sharded deployment): every shard would order the same
    /// certificate, each order counting against the CA's rate limits, and the CA's challenge
    /// request carries no server-id, so the proxy may send it to a shard that does not hold the
    /// token. Sharded relays sit behind a proxy that terminates TLS; a shard may still be given
    /// a certificate (`--tls-cert`) for a proxy that re-encrypts.
    public static func refusal(_ shard: ShardAssignment?, acme: Bool) -> RelayConfig.Refusal? {
        guard let shard, acme else { return nil }
        return RelayConfig.Refusal(description: "shard \(shard) cannot run ACME (--domain without --tls-cert): every shard "
            + "would order the certificate and the CA's challenge reaches whichever shard the proxy picks; "
            + "terminate TLS at the proxy (docs/operations.md, Sharded deployment)")
    }
}
