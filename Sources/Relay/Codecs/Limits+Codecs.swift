/// Every limit and timeout of the relay, by name, with its default (docs/protocol.md §11 lists them
/// for clients; `pyrycode-relay --help` shows the flags). Each layer adds its own in a
/// `Limits+<Layer>.swift` beside its code; operator-tunable ones are copied into `RelayConfig`
/// and overridden by flags there.
public enum Limits {}

extension Limits {
    // HTTP layer (docs/protocol.md §3)
    public static let maxHeaderBytes = 16 * 1024

    // WebSocket (docs/protocol.md §4)
    public static let maxMessageBytes = 262_144
    /// The largest message limit a `WebSocketParser` honours (a larger one is lowered to it):
    /// its counters are 32-bit, as every connection embeds a parser for its lifetime.
    public static let maxMessageBytesCeiling = 1 << 30
    public static let maxControlPayload = 125
}
