/// Which upgrade endpoint a request came to (docs/protocol.md §2): `/v1/server` for binaries,
/// `/v1/client` for phones.
public enum Endpoint: Int, CaseIterable, Sendable { case server, client }
