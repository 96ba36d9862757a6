import CEpoll
import RelaySystem
import RelayCodecs
import RelayTransport
import RelayCore

/// The environment contract of docs/operations.md (and the single-instance switches of docs/architecture.md), validated strictly at boot
/// (docs/operations.md § Boot order, step 2): a variable is either unset or holds exactly an accepted value.
/// Set-but-invalid, including empty, is an `EnvironmentError` → the caller exits 2.
public struct EnvironmentConfig: Equatable, Sendable {
    /// `PYRYCODE_RELAY_PRODUCTION=1`.
    public var production: Bool = false
    /// `PYRYCODE_RELAY_SINGLE_INSTANCE=1`: skip the single-instance self-check.
    public var bypassSingleInstance: Bool = false
    /// `PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE=true`: the deploy manifest asserts one replica.
    public var assertSingleInstance: Bool = false
    /// `PYRYCODE_RELAY_FCM_CREDENTIALS`: the service-account JSON key (push_wake, docs/protocol.md §9). Never log it.
    public var fcmCredentials: String? = nil
    /// `PYRYCODE_RELAY_FCM_BASE_URL=https://host[:port]`: where FCM sends go instead of
    /// https://fcm.googleapis.com. A test hook (a fake FCM server), never set in production.
    public var fcmBaseURL: String? = nil
    /// `PYRYCODE_RELAY_FLY_DNS_SERVER=host:port` (IP literal host): overrides Fly's resolver (tests).
    public var flyDNSServer: String? = nil
    /// `PYRYCODE_RELAY_SHARD=i/N`: sharded mode, as `--shard` (docs/architecture.md, "v2 = static shards").
    public var shard: ShardAssignment? = nil

    public init() {}

    public static let productionVar = "PYRYCODE_RELAY_PRODUCTION"
    public static let singleInstanceVar = "PYRYCODE_RELAY_SINGLE_INSTANCE"
    public static let assertSingleInstanceVar = "PYRYCODE_RELAY_ASSERT_SINGLE_INSTANCE"
    public static let fcmCredentialsVar = "PYRYCODE_RELAY_FCM_CREDENTIALS"
    public static let fcmBaseURLVar = "PYRYCODE_RELAY_FCM_BASE_URL"
    public static let flyDNSServerVar = "PYRYCODE_RELAY_FLY_DNS_SERVER"

    /// `flyDNSServer` as a socket address (validated by `parse`).
    public var flyDNSServerAddress: SocketAddress? {
        flyDNSServer.flatMap { try? SocketAddress(parsing: $0) }
    }

    /// Validates every variable of the contract; the first failure in table order wins, so the
    /// operator sees the same variable on every run. Unrelated variables are ignored.
    public static func parse(_ env: [String: String]) -> Result<EnvironmentConfig, EnvironmentError> {
        var c = EnvironmentConfig()
        do throws(EnvironmentError) {
            c.production = try exactFlag(env, productionVar, accepted: "1")
            c.bypassSingleInstance = try exactFlag(env, singleInstanceVar, accepted: "1")
            c.assertSingleInstance = try exactFlag(env, assertSingleInstanceVar, accepted: "true")
            if let v = env[fcmCredentialsVar] {
                // The key is a secret: the reason never quotes or describes its content.
                guard !v.isEmpty else {
                    throw EnvironmentError(variable: fcmCredentialsVar,
                                           reason: "empty value; expected a service-account JSON key or unset")
                }
                // docs/operations.md: a service-account JSON key, so at least a JSON object. The field-level
                // checks (type, client_email, RSA private_key) belong with the sender (docs/protocol.md §9).
                let bytes = Array(v.utf8)
                guard bytes.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) == UInt8(ascii: "{"),
                      JSON.isValid(bytes) else {
                    throw EnvironmentError(variable: fcmCredentialsVar,
                                           reason: "not a service-account JSON key (value withheld)")
                }
                c.fcmCredentials = v
            }
            if let v = env[fcmBaseURLVar] {
                guard !v.isEmpty else {
                    throw EnvironmentError(variable: fcmBaseURLVar, reason: "empty value; expected an https:// URL or unset")
                }
                // The send path is appended, so the base carries no query.
                guard HTTPSURL(v) != nil, !v.contains("?") else {
                    throw EnvironmentError(variable: fcmBaseURLVar, reason: "malformed value; expected https://host[:port] or unset")
                }
                c.fcmBaseURL = v
            }
            if let v = env[flyDNSServerVar] {
                guard !v.isEmpty else {
                    throw EnvironmentError(variable: flyDNSServerVar, reason: "empty value; expected host:port or unset")
                }
                // An explicit IP literal: ":53" (SocketAddress's "any" host) cannot name a resolver.
                guard !v.hasPrefix(":"), (try? SocketAddress(parsing: v)) != nil else {
                    throw EnvironmentError(
                        variable: flyDNSServerVar,
                        reason: "malformed value; expected host:port with an IPv4 or [IPv6] literal host and port 1-65535")
                }
                c.flyDNSServer = v
            }
            if let v = env[ShardAssignment.environmentVariable] {
                guard let shard = ShardAssignment(parsing: v) else {
                    throw EnvironmentError(variable: ShardAssignment.environmentVariable,
                                           reason: (v.isEmpty ? "empty value; " : "malformed value; ")
                                               + ShardAssignment.expected + " or unset")
                }
                c.shard = shard
            }
        } catch {
            return .failure(error)
        }
        return .success(c)
    }

    /// Exactly `accepted` → true, unset → false, anything else → error. The value is not
    /// echoed (docs/operations.md: no env values in logs); a hint names the likely typo instead.
    private static func exactFlag(_ env: [String: String], _ name: String, accepted: String) throws(EnvironmentError) -> Bool {
        guard let v = env[name] else { return false }
        if v == accepted { return true }
        let expected = "expected \"\(accepted)\" or unset"
        let reason: String
        if v.isEmpty {
            reason = "empty value; \(expected)"
        } else if trimmedASCIIWhitespace(v) == accepted {
            reason = "malformed value (surrounding whitespace); \(expected)"
        } else if v.lowercased() == accepted {
            reason = "malformed value (wrong case); \(expected)"
        } else {
            reason = "malformed value; \(expected)"
        }
        throw EnvironmentError(variable: name, reason: reason)
    }

    private static func trimmedASCIIWhitespace(_ s: String) -> Substring {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = s.firstIndex(where: { !ws($0) }), let last = s.lastIndex(where: { !ws($0) }) else { return "" }
        return s[first...last]
    }
}

extension EnvironmentConfig: CustomStringConvertible, CustomReflectable {
    /// Redacts the FCM key so an accidental `print(config)` or `dump(config)` cannot leak it.
    public var description: String {
        "EnvironmentConfig(production: \(production), bypassSingleInstance: \(bypassSingleInstance), "
            + "assertSingleInstance: \(assertSingleInstance), fcmCredentials: \(fcmCredentials == nil ? "nil" : "<redacted>"), "
            + "fcmBaseURL: \(fcmBaseURL ?? "nil"), flyDNSServer: \(flyDNSServer ?? "nil"), shard: \(shard.map(String.init(describing:)) ?? "nil"))"
    }

    public var customMirror: Mirror {
        Mirror(self, children: [
            "production": production, "bypassSingleInstance": bypassSingleInstance,
            "assertSingleInstance": assertSingleInstance,
            "fcmCredentials": fcmCredentials == nil ? "nil" : "<redacted>", "fcmBaseURL": fcmBaseURL as Any,
            "flyDNSServer": flyDNSServer as Any, "shard": shard as Any,
        ])
    }
}

/// A set-but-invalid variable. `message` is the exact stderr line (docs/operations.md); the caller exits 2.
public struct EnvironmentError: Error, Equatable, Sendable, CustomStringConvertible {
    public let variable: String
    public let reason: String

    public init(variable: String, reason: String) {
        self.variable = variable
        self.reason = reason
    }

    public var message: String { "relay: invalid env-var config: \(variable): \(reason)" }
    public var description: String { message }
}

/// The process environment as a dictionary, read from `environ` (no Foundation).
/// Entries without `=` are skipped; for a duplicated name the first entry wins, as in getenv(3).
public func currentEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    guard var p = pyry_environ() else { return env }
    // `environ` (declared by CEpoll's shim: Swift 6 cannot import the mutable C global).
    while let entry = p.pointee {
        p += 1
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            let key = String(s[..<eq])
            if env[key] == nil { env[key] = String(s[s.index(after: eq)...]) }
        }
    }
    return env
}
