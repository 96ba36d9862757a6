import RelayCore

/// How an operator names the shard (docs/operations.md § Sharding).
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
}
