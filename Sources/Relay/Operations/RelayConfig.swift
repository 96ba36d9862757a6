import RelaySystem
import RelayCodecs
import RelayReactor
import RelayTransport
import RelayCore

/// Everything the relay is configured with, validated (docs/operations.md). Built from flags by
/// `RelayConfig.parse`; a refusal is a message that names the flag (exit 2 by the caller).
public struct RelayConfig {
    public var insecureListen: SocketAddress?
    public var domain: String?
    public var tlsCert: String?
    public var tlsKey: String?
    public var httpsListen: SocketAddress?
    public var httpListen: SocketAddress?
    public var certCache: String?
    /// ACME mode (`--domain` without `--tls-cert`): the CA's directory and the renewal timing.
    public var acmeDirectory: HTTPSURL?
    public var acmeRenewBeforeMs = Limits.acmeRenewBeforeMs
    public var acmeRetryMinMs = Limits.acmeRetryMinMs
    public var httpsProxyProtocol = false
    public var metricsListen: SocketAddress?
    public var trustXForwardedFor = false
    public var maxConnections = Limits.maxConnections
    public var maxConnectionsPerIP = Limits.maxConnectionsPerIP
    public var maxHalfOpen = Limits.maxHalfOpen
    public var maxHalfOpenPerIP = Limits.maxHalfOpenPerIP
    public var runtimeDir: String?
    public var graceMs = Limits.graceMs
    public var probeTimeoutMs = Limits.claimProbeTimeoutMs
    public var phonesPerServer = Limits.phonesPerServerID
    public var outboxBudget = Limits.phoneOutboxBudget
    public var maxBufferedBytes = Limits.maxBufferedBytes
    public var drainDeadlineMs = Limits.drainDeadlineMs
    public var logBufferBytes = Limits.logBufferBytes
    public var connection = ConnectionSettings()
    /// `--shard i/N` (or `PYRYCODE_RELAY_SHARD`, merged by `RelayApp`): sharded mode; nil = the whole map.
    public var shard: ShardAssignment?
    /// `--permessage-deflate`: negotiate RFC 7692 compression with clients that offer it.
    public var permessageDeflate = false

    public init() {}

    public static let version = "0.1.0"

    public enum Outcome {
        case run(RelayConfig)
        case help(String)
        case version(String)
    }

    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
    }

    package static func flagSet() -> FlagSet {
        var f = FlagSet()
        f.string("insecure-listen", default: "", "plain HTTP/WebSocket listener address (behind a TLS proxy, or for development)")
        f.string("domain", default: "", "public host name; enables the Host check (421) on the TLS listener; without --tls-cert, the certificate comes from ACME (Let's Encrypt)")
        f.string("tls-cert", default: "", "PEM certificate chain (leaf first) for the TLS listener; SIGHUP reloads")
        f.string("tls-key", default: "", "PEM private key for --tls-cert")
        f.string("https-listen", default: ":443", "TLS listener address")
        f.string("http-listen", default: ":80", "ACME mode: plain listener for http-01 challenges and /healthz (everything else 404); \"\" disables")
        f.string("cert-cache", default: "$HOME/.pyrycode-relay/certs", "ACME mode: account key and certificates (directory, mode 0700)")
        f.string("acme-directory", default: defaultACMEDirectory, "ACME mode: the CA's directory URL (https); Let's Encrypt staging: https://acme-staging-v02.api.letsencrypt.org/directory")
        f.string("acme-renew-before", default: "720h", "ACME mode: renew this long before the certificate expires")
        f.string("acme-retry-min", default: "1m", "ACME mode: first retry after a failed order; doubled per failure up to 1h")
        f.bool("https-proxy-protocol", "require a PROXY protocol v2 header on every TLS-listener connection")
        f.string("metrics-listen", default: "127.0.0.1:9090", "Prometheus /metrics listener; a loopback IP literal; \"\" disables")
        f.bool("trust-x-forwarded-for", "use the first X-Forwarded-For entry as the client IP for rate limiting")
        f.string("max-connections", default: String(Limits.maxConnections), "global cap on live WebSocket connections (503 beyond)")
        f.string("max-connections-per-ip", default: String(Limits.maxConnectionsPerIP), "live WebSocket connections per client IP (429 beyond)")
        f.string("max-half-open", default: String(Limits.maxHalfOpen), "connections not yet upgraded; the oldest is closed beyond")
        f.string("max-half-open-per-ip", default: String(Limits.maxHalfOpenPerIP), "connections not yet upgraded per client IP (IPv6: per /64); its oldest is closed beyond")
        f.string("runtime-dir", default: "", "directory for instance.lock, the same-host single-instance lock; created (0700) when missing (default $RUNTIME_DIRECTORY, else /run/pyrycode-relay)")
        f.string("grace", default: "30s", "how long a binary's server-id stays reserved after it disconnects")
        f.string("heartbeat-interval", default: "30s", "interval between pings to each connection (at most 24.8 days)")
        f.string("heartbeat-timeout", default: "30s", "pong deadline after a ping; then close 1011 (at most 24.8 days)")
        f.string("probe-timeout", default: "10s", "liveness probe of an incumbent binary before a takeover")
        f.string("phones-per-server", default: String(Limits.phonesPerServerID), "phones per server-id (4429 beyond)")
        f.string("max-message-bytes", default: String(Limits.maxMessageBytes), "largest WebSocket message accepted (1009 beyond; at most 1 GiB)")
        f.string("outbox-budget", default: String(Limits.phoneOutboxBudget), "bytes queued per phone before it is closed 1011")
        f.string("max-buffered-bytes", default: String(Limits.maxBufferedBytes), "bytes queued plus bytes of unfinished messages, all connections together; over it the largest holder is closed 1011")
        f.string("drain-deadline", default: "10s", "how long shutdown waits for connections to close")
        f.string("header-timeout", default: "5s", "time allowed from accept to a complete request head (TLS included)")
        f.string("log-buffer-bytes", default: String(Limits.logBufferBytes), "log bytes held for a slow stderr reader; lines beyond are dropped and counted")
        f.string("shard", default: "", "sharded mode: serve shard i of N, the server-ids with crc32(id) mod N = i, behind a proxy that routes on X-Pyrycode-Server (also PYRYCODE_RELAY_SHARD)")
        f.bool("permessage-deflate", "negotiate permessage-deflate (RFC 7692) with clients that offer it, each leg on its own; no compression state is kept between messages")
        f.bool("version", "print the version and exit")
        return f
    }

    /// The `--help` text: invocations, flags, environment, endpoints, exit codes (HelpText.swift).
    public static var usageText: String { HelpText.render(flags: flagSet().flagList()) }

    public static func parse(_ args: [String]) -> Result<Outcome, Refusal> {
        var flags = flagSet()
        do { try flags.parse(args) } catch {
            return .failure(Refusal(description: error.description))
        }
        if flags.bool("help") { return .success(.help(usageText)) }
        // The bare version, as the Go relay prints it and /healthz reports it.
        if flags.bool("version") { return .success(.version(version)) }
        do {
            return .success(.run(try build(flags)))
        } catch {
            return .failure(error)
        }
    }

    package static func address(_ flags: FlagSet, _ name: String) throws(Refusal) -> SocketAddress {
        let text = flags.string(name)
        do { return try SocketAddress(parsing: text) } catch {
            throw Refusal(description: "invalid value \"\(text)\" for --\(name): want host:port, :port or [v6]:port with port 1-65535 and an IP host")
        }
    }

    /// `atMost`: a ceiling the value is refused above (`why` says whose), rather than lowered to it
    /// unseen where it is used.
    private static func positive(_ flags: FlagSet, _ name: String, atMost limit: Int = .max, _ why: String = "") throws(Refusal) -> Int {
        let text = flags.string(name)
        guard let v = Int(text), v > 0 else {
            throw Refusal(description: "invalid value \"\(text)\" for --\(name): want a positive integer")
        }
        guard v <= limit else {
            throw Refusal(description: "invalid value \"\(text)\" for --\(name): at most \(limit) (\(why))")
        }
        return v
    }

    package static func duration(_ flags: FlagSet, _ name: String, atMostMs limit: Int64 = .max, _ why: String = "") throws(Refusal) -> Int64 {
        let text = flags.string(name)
        guard let v = parseGoDuration(text), v > 0 else {
            throw Refusal(description: "invalid value \"\(text)\" for --\(name): want a duration such as 30s or 500ms")
        }
        guard v <= limit else {
            throw Refusal(description: "invalid value \"\(text)\" for --\(name): at most \(limit)ms (\(why))")
        }
        return v
    }

    /// Why a connection's heartbeat has a ceiling: its deadlines are 32-bit milliseconds (`ShortDeadline`).
    private static let connectionDeadlineCeiling = "a connection's deadlines reach 24.8 days ahead at most"

    private static func shard(_ flags: FlagSet) throws(Refusal) -> ShardAssignment? {
        let text = flags.string(ShardAssignment.flagName)
        guard flags.isSet(ShardAssignment.flagName) else { return nil }
        guard let s = ShardAssignment(parsing: text) else {
            throw Refusal(description: "invalid value \"\(text)\" for --\(ShardAssignment.flagName): \(ShardAssignment.expected)")
        }
        return s
    }

    package static func build(_ flags: FlagSet) throws(Refusal) -> RelayConfig {
        var c = RelayConfig()
        let insecure = flags.isSet("insecure-listen") && !flags.string("insecure-listen").isEmpty
        let domain = flags.string("domain")
        let cert = flags.string("tls-cert"), key = flags.string("tls-key")
        if cert.isEmpty != key.isEmpty {
            throw Refusal(description: "--tls-cert and --tls-key must be given together")
        }
        let tlsMode = !domain.isEmpty || !cert.isEmpty
        if insecure == tlsMode {
            throw Refusal(description: "exactly one of --insecure-listen or --domain/--tls-cert is required")
        }
        if insecure {
            for f in ["http-listen", "https-listen", "https-proxy-protocol"] where flags.isSet(f) {
                throw Refusal(description: "--\(f) cannot be combined with --insecure-listen")
            }
            c.insecureListen = try address(flags, "insecure-listen")
        } else {
            c.domain = domain.isEmpty ? nil : domain
            if cert.isEmpty {
                try buildACME(flags, &c, domain: domain)
            } else {
                c.tlsCert = cert
                c.tlsKey = key
            }
            c.httpsListen = try address(flags, "https-listen")
            c.httpsProxyProtocol = flags.bool("https-proxy-protocol")
        }
        let metrics = flags.string("metrics-listen")
        if !metrics.isEmpty {
            let a = try address(flags, "metrics-listen")
            // An IP literal, not a name: a name could resolve elsewhere between check and bind
            // (the Go relay refuses names for the same reason), so `localhost:9090` is refused too.
            guard a.isLoopback, !metrics.lowercased().hasPrefix("localhost") else {
                throw Refusal(description: "--metrics-listen must be a loopback IP literal (127.0.0.0/8 or [::1]), got \"\(metrics)\"")
            }
            c.metricsListen = a
        }
        c.trustXForwardedFor = flags.bool("trust-x-forwarded-for")
        c.permessageDeflate = flags.bool("permessage-deflate")
        c.maxConnections = try positive(flags, "max-connections")
        c.maxConnectionsPerIP = try positive(flags, "max-connections-per-ip")
        c.maxHalfOpen = try positive(flags, "max-half-open")
        c.maxHalfOpenPerIP = try positive(flags, "max-half-open-per-ip")
        let rd = flags.string("runtime-dir")
        c.runtimeDir = rd.isEmpty ? nil : rd
        c.graceMs = try duration(flags, "grace")
        c.connection.heartbeatIntervalMs = try duration(flags, "heartbeat-interval", atMostMs: ShortDeadline.maxSpanMs,
                                                        connectionDeadlineCeiling)
        c.connection.heartbeatTimeoutMs = try duration(flags, "heartbeat-timeout", atMostMs: ShortDeadline.maxSpanMs,
                                                       connectionDeadlineCeiling)
        c.probeTimeoutMs = try duration(flags, "probe-timeout")
        c.phonesPerServer = try positive(flags, "phones-per-server")
        c.connection.maxMessageBytes = try positive(flags, "max-message-bytes", atMost: Limits.maxMessageBytesCeiling,
                                                    "1 GiB: a message's length and offsets are 32-bit")
        c.outboxBudget = try positive(flags, "outbox-budget")
        c.maxBufferedBytes = try positive(flags, "max-buffered-bytes")
        c.drainDeadlineMs = try duration(flags, "drain-deadline")
        c.connection.headerTimeoutMs = try duration(flags, "header-timeout")
        c.logBufferBytes = try positive(flags, "log-buffer-bytes")
        c.shard = try shard(flags)
        return c
    }
}

// MARK: ACME mode (docs/operations.md "ACME")
extension RelayConfig {
    public static let defaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"

    package static func buildACME(_ flags: FlagSet, _ c: inout RelayConfig, domain: String) throws(Refusal) {
        // A DNS name (RFC 1123 §2.1): it names the cache files and goes into the CSR; CAs issue
        // no certificate for an IP literal through http-01.
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard domain.utf8.count <= 253, labels.count >= 2, labels.allSatisfy({ l in
            !l.isEmpty && l.utf8.count <= 63 && l.first != "-" && l.last != "-"
                && l.utf8.allSatisfy { b in (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || b == UInt8(ascii: "-") }
        }), !labels.last!.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw Refusal(description: "invalid value \"\(domain)\" for --domain: ACME needs a DNS name such as relay.example.com")
        }
        let dir = flags.string("acme-directory")
        guard let url = HTTPSURL(dir) else {
            throw Refusal(description: "invalid value \"\(dir)\" for --acme-directory: want an https:// URL")
        }
        c.acmeDirectory = url
        let http = flags.string("http-listen")
        c.httpListen = http.isEmpty ? nil : try address(flags, "http-listen")
        let cache = flags.string("cert-cache")
        guard !cache.isEmpty else { throw Refusal(description: "--cert-cache must name a directory") }
        c.certCache = cache
        c.acmeRenewBeforeMs = try duration(flags, "acme-renew-before")
        c.acmeRetryMinMs = try duration(flags, "acme-retry-min")
    }
}
