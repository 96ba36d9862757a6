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
    public static let maxControlPayload = 125
}
