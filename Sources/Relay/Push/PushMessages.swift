import RelayCodecs
import RelayTransport
import RelayCore

/// The two HTTPS exchanges of a wake (docs/protocol.md §9), as pure functions: building the
/// OAuth2 JWT-bearer request (RFC 7523 §2.1) and the FCM v1 send, and reading their answers.
/// No I/O here, so every rule is unit-tested without a network.
public enum PushMessages {
    /// RFC 7523 §2.1 grant type, form-encoded (the colons percent-encoded, as
    /// application/x-www-form-urlencoded serializes them).
    package static let grantType = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    /// The only scope the relay asks for: sending FCM messages.
    public static let scope = "https://www.googleapis.com/auth/firebase.messaging"
    /// The FCM v1 send path of the Pyrycode app's Firebase project.
    public static let sendPath = "/v1/projects/pyrycode-mobile/messages:send"
    public static let defaultBaseURL = "https://fcm.googleapis.com"

    // MARK: OAuth2 token request

    /// The signed JWT (RFC 7519, JWS compact form RFC 7515 §7.1): header `{"alg":"RS256","typ":"JWT"}`,
    /// claims iss/scope/aud/iat/exp with exp = iat + `Limits.pushAssertionLifetimeSeconds` (Google
    /// refuses more than an hour). nil only if OpenSSL cannot sign.
    public static func assertion(key: ServiceAccountKey, issuedAt: Int) -> String? {
        let header = Base64.urlEncode(Array("{\"alg\":\"RS256\",\"typ\":\"JWT\"}".utf8))
        var claims: [UInt8] = Array("{\"iss\":\"".utf8)
        claims += JSONString.escaped(key.clientEmail)
        claims += Array("\",\"scope\":\"\(scope)\",\"aud\":\"".utf8)
        claims += JSONString.escaped(key.tokenURI)
        claims += Array("\",\"iat\":\(issuedAt),\"exp\":\(issuedAt + Limits.pushAssertionLifetimeSeconds)}".utf8)
        let signingInput = header + "." + Base64.urlEncode(claims)
        guard let signature = key.signRS256(Array(signingInput.utf8)) else { return nil }
        return signingInput + "." + Base64.urlEncode(signature)
    }

    /// POST token_uri with `grant_type=…&assertion=…` (RFC 7523 §2.1, RFC 6749 §4.1.3 form encoding;
    /// a JWT is base64url and dots, which need no escaping).
    public static func tokenRequest(key: ServiceAccountKey, issuedAt: Int) -> HTTPSRequest? {
        guard let jwt = assertion(key: key, issuedAt: issuedAt) else { return nil }
        return HTTPSRequest(method: "POST", url: key.tokenURL,
                            headers: [("Content-Type", "application/x-www-form-urlencoded")],
                            body: Array("grant_type=\(grantType)&assertion=\(jwt)".utf8))
    }

    public struct AccessToken: Equatable, Sendable {
        public var value: String
        public var expiresInSeconds: Int
    }

    /// A 200 with `access_token` (header-safe visible ASCII, RFC 6750 §2.1 b64token) and a positive
    /// integer `expires_in` (RFC 6749 §5.1); anything else is a failure whose text is fixed or
    /// `status N` — an OAuth error body is not echoed.
    public static func accessToken(_ result: Result<HTTPSResponse, HTTPSFailure>) -> Result<AccessToken, PushFailure> {
        let response: HTTPSResponse
        switch result {
        case .failure(let f): return .failure(PushFailure(f))
        case .success(let r): response = r
        }
        guard response.status == 200 else { return .failure(PushFailure("status \(response.status)")) }
        guard let doc = JSONValue.parse(response.body),
              let token = doc["access_token"]?.stringValue, !token.isEmpty,
              token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              case .unsigned(let expires)? = doc["expires_in"], expires > 0
        else { return .failure(PushFailure("malformed token response")) }
        return .success(AccessToken(value: token, expiresInSeconds: Int(min(expires, UInt64(Limits.pushAssertionLifetimeSeconds)))))
    }

    // MARK: FCM v1 send

    /// `{"message":{"token":"<token>","android":{"priority":"HIGH"}}}`, the token JSON-escaped.
    public static func sendRequest(url: HTTPSURL, accessToken: String, token: String) -> HTTPSRequest {
        var body: [UInt8] = Array("{\"message\":{\"token\":\"".utf8)
        body += JSONString.escaped(token)
        body += Array("\",\"android\":{\"priority\":\"HIGH\"}}}".utf8)
        return HTTPSRequest(method: "POST", url: url,
                            headers: [("Authorization", "Bearer \(accessToken)"), ("Content-Type", "application/json")],
                            body: body)
    }

    public enum SendOutcome: Equatable, Sendable {
        /// 200; the message id (the last segment of `name`) when it is plain enough to log.
        case sent(messageID: String?)
        /// 404 with FCM error code UNREGISTERED: the token is dead (the app was uninstalled or the token rotated).
        case unregistered(PushFailure)
        /// Anything else; `unauthenticated` (401) means the cached access token must go.
        case failed(PushFailure, unauthenticated: Bool)
    }

    public static func sendOutcome(_ result: Result<HTTPSResponse, HTTPSFailure>) -> SendOutcome {
        let response: HTTPSResponse
        switch result {
        case .failure(let f): return .failed(PushFailure(f), unauthenticated: false)
        case .success(let r): response = r
        }
        let doc = JSONValue.parse(response.body)
        if response.status == 200 {
            return .sent(messageID: doc?["name"]?.stringValue.flatMap(messageID))
        }
        // FCM v1 errors (google.rpc.Status): {"error":{"status":"NOT_FOUND","details":[{"errorCode":"UNREGISTERED",…}]}}.
        let error = doc?["error"]
        var codes: [String] = []
        if let s = error?["status"]?.stringValue, isErrorCode(s) { codes.append(s) }
        for d in error?["details"]?.arrayValue ?? [] {
            if let c = d["errorCode"]?.stringValue, isErrorCode(c), !codes.contains(c), codes.count < 4 { codes.append(c) }
        }
        let failure = PushFailure((["status \(response.status)"] + codes).joined(separator: " "))
        let errorCodes = (error?["details"]?.arrayValue ?? []).compactMap { $0["errorCode"]?.stringValue }
        if response.status == 404 && errorCodes.contains("UNREGISTERED") { return .unregistered(failure) }
        return .failed(failure, unauthenticated: response.status == 401)
    }

    /// An FCM/gRPC code is kept in a log line only when it looks like one: `[A-Z0-9_]{1,64}`.
    package static func isErrorCode(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 64
            && s.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// `projects/…/messages/<id>` → `<id>` when it is `[A-Za-z0-9:_.-]{1,128}` (FCM ids look
    /// like `0:1500415314455276%31bd1c9631bd1c96`, so `%` too); anything else is not logged.
    package static func messageID(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        let id = bytes[((bytes.lastIndex(of: UInt8(ascii: "/")) ?? -1) + 1)...]
        guard !id.isEmpty, id.count <= 128, id.allSatisfy({ b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x3A || b == 0x5F || b == 0x2E || b == 0x2D || b == 0x25
        }) else { return nil }
        return String(decoding: id, as: UTF8.self)
    }

    // MARK: the wake request

    /// A binary's `push_wake` value (docs/protocol.md §9): platform exactly `fcm` and a non-empty
    /// token string; member names match ASCII case-insensitively, the last occurrence winning,
    /// as the Go relay's `encoding/json` reads them. nil: dropped as `invalid wake`.
    public static func wakeToken(_ value: UnsafeRawBufferPointer) -> String? {
        guard case .object(let members)? = JSONValue.parse(value) else { return nil }
        func member(_ name: String) -> JSONValue? {
            members.last(where: { HTTPGrammar.equalsIgnoringASCIICase($0.0.utf8, name.utf8) })?.1
        }
        guard member("platform")?.stringValue == "fcm", let token = member("token")?.stringValue, !token.isEmpty else {
            return nil
        }
        return token
    }
}

/// Why a wake failed, as the text of its log line's `err`: a fixed phrase, `status N`, or FCM
/// error codes — never a response body, a token or an access token.
public struct PushFailure: Error, Equatable, Sendable {
    public let text: String
    package init(_ text: String) { self.text = text }

    package init(_ f: HTTPSFailure) {
        switch f {
        case .resolve: text = "resolve failed"
        case .connect: text = "connect failed"
        case .tls(let reason): text = "tls: \(reason)"
        case .timeout: text = "timeout"
        case .responseTooLarge: text = "response too large"
        case .malformedResponse: text = "malformed response"
        case .closed: text = "connection closed"
        case .invalidRequest: text = "invalid request"
        }
    }
}
