import Testing
@testable import RelayCodecs
@testable import RelayTransport
@testable import RelayPush
@testable import RelayOperations

/// The pure pieces of push_wake (docs/protocol.md §9): the service-account key, the JWT-bearer
/// assertion (RFC 7523), the FCM request and the reading of both answers, and the admission and
/// token cache of `PushService` driven through a fake `HTTPSSending`. The relay against real
/// TLS servers is checked by tests/interop/test_push.py.
@Suite struct PushTests {
    /// A throwaway 2048-bit test key (never used anywhere else).
    static let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCRn+YfY0wZYXd4\ngGu2Av1qfmH0gYuX8rn9v2N2mlQghPkm2nsZR62fM93FYj3Aksck5GRwIIYndtq8\n7Egio7d8Umx/vgHT/9CLb3/iHdELCokEXYSZBsQ/6d7BvKq77UCjZw2b2MdOrSmr\n5PIDm1+VEw4ls+a6DYd/p1ffMQkWGojdnh2ZIDvD7bbFCQ7GgTEm0kvkIOSCIdVP\n4ddxjV8vHRLlF9KKeHbFVpxA+EgdqJNufubWiRN2g7n63y26Xz5BRPq6ulrkyu25\nE3Wmo9cDCzRviSf5oqBuWpmnRpaw1D8VLChl2beF+5j00HEhpJz9VWROheKZYHid\nLQJoCKX3AgMBAAECggEARwV3a6Z3dkdpR21GWtHxeu8hYeiORrB8Eiu13CGfVu7T\nPqY+dBFXtXXLupjTqihLlIwJCgBqvTODsbEA61fyRGFEhjaKWLUCJgbelU5aZeqg\n8W6UnTdGHi+20sDredTXefnoErJyXcYpNSrm92hfAOr2st+e7u1rQJBCVFlrZ4oT\n323iHVJLE09ZYlS5YyfJAM/I73dQY63qSM31+KX/6x+uk3vM0o5HXANXc2Ka4UJO\nk2cW3SdFDXzmeTDuNEfrppAhY+few6BPHvm1iJk94HWE5/wm/dF9VDJQFXoKWj5p\nqJGrcKDftHEHAefvVBeJ9oNRKGMGY0oKNn8C1t5njQKBgQDKGHih3d/xeGJQYFZ2\njPQoNBxRI1Kkz6wRfKmtMTcko7OPeC2Sg5xPbmMLXXck7hu1Ey3pgAvG5RN3L0NT\nbHjIt9NU10h3FyMta2EtrFAdu69LMw0dpjlWr9XNx6j6a5+caZ7QhK1IlFrXQtXJ\n0vpolq/K3LoRpAJFRAksVqPnIwKBgQC4d3cgbD1BZ2LBOfJY+9Ezme65WboUDdQi\nxUTiwCq3mBklRhctIkFZU/E6Ps6XEAgmft1dLRyk6Np0I/P+LTiPVMzMl/E71aPa\nRpHFX9PqBrlfqbtqL7e077QHjJLHc16dCBsgF4G5AAfuEFJ3cWcS1lPXm5Rkog0I\nj9BzqV2dHQKBgQCta55o2GqJXZKQAntvs7j4nu8FuVf70bGIN/+qfSciq88z+B6z\nMXj6uHEJmaTZ7fGcyt6FFroEbSLtDYOqnNRw+T3B+hNXDmXDXffAJ7OAMERWNXK1\n1KQzfSPtN74LVjtbD0+XA6NnOtdRDStDy2XSRiyH2i1ZYfII2j886wQvHQKBgBTP\nHTgiHbLgF8rWX5lcJthcWAq+rXgPq0uU11WA+hCl7sg+pOSphZevGXpJlYKDA3hc\nPVqCeUW9Is+RMrgMn+HDXisCROtMCWTZKx6J1d0DjyvUeNjcsyuNEtD7MZ+gSx8J\nyA2RuUeGUl6vpq3ktAzy8phS66WChlfd6VTy2SWdAoGBAKAPZ3cL8daAUhvghRqD\n+93zOjoj3cj/d/vPVa1cSfqNfP8k8Sn9wrlUtv6q0QYcJirY7/ohxRqlIuvqvA1u\nP/c1n5cdCP4++tIXRbYvhD9HdTksLOZPef476eZnvAS6bY+WP+EM8G6re4JJjPXx\nbGnFUImWiQKPIYCHS7GHJ+Kd\n-----END PRIVATE KEY-----\n"
    static let ecPEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+1K0mDH+k7wx592L\nyL3Ty7Mn0N72ov8sYiQ5OQOsPdqhRANCAASLFavEJtGkGEr1Bkqtq8wtO6eObYDT\n2FKSN3Sqe7+DefqZ9ZY2Fs9oWn2CbX2Uy3k+hZCfSl1/WHb+ZZuIpPi/\n-----END PRIVATE KEY-----\n"
    /// `openssl dgst -sha256 -sign` of "abc" with `pem` (RSASSA-PKCS1-v1_5 is deterministic).
    static let abcSignatureHex = "78c45503ba1c2639bd35cbd85608fae81b9f9e504f8e3beb10c3e63c5a33b31dae6416161b25817aaaf2fa088044febdd0e3616d032b80e4de865b6133c2de6c23726f0428abbaaddaff78eb4b6e495f8bc55ad54ed818982d72a46a823a6f0536958f02365d595694fb74fc979418311c4b4368a0f874c9b936bb25be858d937a3a87ec55ac29325c53e93d2b0a5e388038d3abdae18423ca275a4571e62f82794a6dfe62ef3a112a13bbc097a290e614176b4043a9ef05cefbdd7454efc6e64ae1e75399853241c3ab5ec1fad03d9b10559b9afe82bba7a41620db62dd036471172f87ecd542f0ae648e24a11e2ad5ea9d2222ecbf6c04605abf7760991f54"

    static func keyJSON(type: String = "service_account", email: String = "relay@pyry.iam.gserviceaccount.com",
                        tokenURI: String = "https://oauth2.example.test/token", pem: String = pem) -> String {
        func q(_ s: String) -> String { "\"" + String(decoding: JSONString.escaped(s), as: UTF8.self) + "\"" }
        return "{\"type\":\(q(type)),\"project_id\":\"p\",\"private_key_id\":\"0123\",\"private_key\":\(q(pem)),"
            + "\"client_email\":\(q(email)),\"token_uri\":\(q(tokenURI))}"
    }

    static func key() throws -> ServiceAccountKey { try ServiceAccountKey.parse(keyJSON()).get() }

    static func hex(_ b: [UInt8]) -> String { b.map { Hex.string(UInt32($0), digits: 2) }.joined() }

    static func base64urlDecode(_ s: Substring) -> [UInt8]? {
        var t = String(s.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 })
        while t.count % 4 != 0 { t += "=" }
        return Base64.decode(t)
    }

    // MARK: key

    @Test func serviceAccountKeyFieldsAreReadAndCheckedWithoutEchoingTheKey() throws {
        let k = try Self.key()
        #expect(k.clientEmail == "relay@pyry.iam.gserviceaccount.com")
        #expect(k.tokenURI == "https://oauth2.example.test/token")
        #expect(k.tokenURL == HTTPSURL("https://oauth2.example.test/token"))
        let cases: [(String, String)] = [
            ("[1]", "not a JSON object"),
            ("{\"type\":\"service_account\"", "not a JSON object"),
            (Self.keyJSON(type: "authorized_user"), "field \"type\" is not \"service_account\""),
            (Self.keyJSON(email: ""), "field \"client_email\" missing or empty"),
            (Self.keyJSON(tokenURI: "http://oauth2.example.test/token"), "field \"token_uri\" missing or not an https URL"),
            (Self.keyJSON(pem: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"),
             "field \"private_key\" is not a PEM RSA private key"),
            (Self.keyJSON(pem: Self.ecPEM), "field \"private_key\" is not a PEM RSA private key"),
        ]
        for (json, reason) in cases {
            guard case .failure(let e) = ServiceAccountKey.parse(json) else { Issue.record("accepted: \(reason)"); continue }
            #expect(e.reason == reason)
            #expect(!e.reason.contains("c2VjcmV0") && !e.reason.contains("BEGIN"))
        }
    }

    @Test func rs256SignatureMatchesOpenSSLKnownAnswer() throws {
        let sig = try #require(try Self.key().signRS256(Array("abc".utf8)))
        #expect(Self.hex(sig) == Self.abcSignatureHex)
    }

    // MARK: JWT and token request

    @Test func assertionCarriesExactlyTheRFC7523ClaimsAndItsOwnSignature() throws {
        let k = try Self.key()
        let jwt = try #require(PushMessages.assertion(key: k, issuedAt: 1_700_000_000))
        let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
        try #require(parts.count == 3)
        #expect(!jwt.contains("=") && !jwt.contains("+") && !jwt.contains("/"))
        #expect(String(decoding: try #require(Self.base64urlDecode(parts[0])), as: UTF8.self) == "{\"alg\":\"RS256\",\"typ\":\"JWT\"}")
        #expect(String(decoding: try #require(Self.base64urlDecode(parts[1])), as: UTF8.self)
            == "{\"iss\":\"relay@pyry.iam.gserviceaccount.com\",\"scope\":\"https://www.googleapis.com/auth/firebase.messaging\","
            + "\"aud\":\"https://oauth2.example.test/token\",\"iat\":1700000000,\"exp\":1700003600}")
        let signed = try #require(k.signRS256(Array((parts[0] + "." + parts[1]).utf8)))
        #expect(try #require(Self.base64urlDecode(parts[2])) == signed)
        #expect(signed.count == 256)
    }

    @Test func tokenRequestIsAFormPostToTheKeysTokenURI() throws {
        let k = try Self.key()
        let r = try #require(PushMessages.tokenRequest(key: k, issuedAt: 1_700_000_000))
        #expect(r.method == "POST")
        #expect(r.url == HTTPSURL("https://oauth2.example.test/token"))
        #expect(r.headers.map { "\($0.name): \($0.value)" } == ["Content-Type: application/x-www-form-urlencoded"])
        let jwt = try #require(PushMessages.assertion(key: k, issuedAt: 1_700_000_000))
        #expect(String(decoding: r.body, as: UTF8.self)
            == "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + jwt)
    }

    @Test func base64urlHasNoPaddingAndTheURLAlphabet() {
        #expect(Base64.urlEncode([0xFB, 0xFF]) == "-_8")
        #expect(Base64.urlEncode(Array("a".utf8)) == "YQ")
        #expect(Base64.urlEncode([UInt8]()) == "")
    }

    // MARK: token answer

    static func ok(_ status: Int, _ body: String) -> Result<HTTPSResponse, HTTPSFailure> {
        .success(HTTPSResponse(status: status, headers: [], body: Array(body.utf8)))
    }

    @Test func accessTokenNeedsA200WithAHeaderSafeTokenAndPositiveLifetime() {
        #expect(PushMessages.accessToken(Self.ok(200, "{\"access_token\":\"ya29.a-b_c\",\"expires_in\":3599,\"token_type\":\"Bearer\"}"))
            == .success(.init(value: "ya29.a-b_c", expiresInSeconds: 3599)))
        // A lifetime beyond an hour is not believed.
        #expect(PushMessages.accessToken(Self.ok(200, "{\"access_token\":\"t\",\"expires_in\":999999}"))
            == .success(.init(value: "t", expiresInSeconds: 3600)))
        let failures: [(Result<HTTPSResponse, HTTPSFailure>, String)] = [
            (Self.ok(500, "{\"error\":\"internal\"}"), "status 500"),
            (Self.ok(400, "{\"error\":\"invalid_grant\",\"error_description\":\"secret detail\"}"), "status 400"),
            (Self.ok(200, "<html>garbage"), "malformed token response"),
            (Self.ok(200, "{\"access_token\":\"t\"}"), "malformed token response"),
            (Self.ok(200, "{\"access_token\":\"t\",\"expires_in\":0}"), "malformed token response"),
            (Self.ok(200, "{\"access_token\":\"t\",\"expires_in\":\"3600\"}"), "malformed token response"),
            (Self.ok(200, "{\"access_token\":\"\",\"expires_in\":3600}"), "malformed token response"),
            (Self.ok(200, "{\"access_token\":\"a\\r\\nX-Evil: 1\",\"expires_in\":3600}"), "malformed token response"),
            (.failure(.timeout), "timeout"),
            (.failure(.tls("certificate verify failed")), "tls: certificate verify failed"),
            (.failure(.responseTooLarge), "response too large"),
            (.failure(.connect), "connect failed"),
        ]
        for (r, text) in failures {
            guard case .failure(let f) = PushMessages.accessToken(r) else { Issue.record("accepted: \(text)"); continue }
            #expect(f.text == text)
        }
    }

    // MARK: FCM send

    @Test func sendRequestBodyIsExactAndTheTokenEscaped() throws {
        let url = try #require(HTTPSURL("https://fcm.example.test:8443/v1/projects/pyrycode-mobile/messages:send"))
        let r = PushMessages.sendRequest(url: url, accessToken: "ya29.x", token: "ab\"c\\<d")
        #expect(r.method == "POST" && r.url == url)
        #expect(r.headers.map { "\($0.name): \($0.value)" } == ["Authorization: Bearer ya29.x", "Content-Type: application/json"])
        #expect(String(decoding: r.body, as: UTF8.self)
            == "{\"message\":{\"token\":\"ab\\\"c\\\\\\u003cd\",\"android\":{\"priority\":\"HIGH\"}}}")
        #expect(JSONValue.parse(r.body)?["message"]?["token"]?.stringValue == "ab\"c\\<d")
    }

    @Test func sendOutcomeClassifiesAndKeepsOnlyStatusAndErrorCodes() {
        #expect(PushMessages.sendOutcome(Self.ok(200, "{\"name\":\"projects/pyrycode-mobile/messages/0:15004%31bd1c\"}"))
            == .sent(messageID: "0:15004%31bd1c"))
        #expect(PushMessages.sendOutcome(Self.ok(200, "{\"name\":\"projects/p/messages/a b\"}")) == .sent(messageID: nil))
        #expect(PushMessages.sendOutcome(Self.ok(200, "")) == .sent(messageID: nil))
        let unregistered = "{\"error\":{\"code\":404,\"message\":\"Requested entity was not found.\",\"status\":\"NOT_FOUND\","
            + "\"details\":[{\"@type\":\"type.googleapis.com/google.firebase.fcm.v1.FcmError\",\"errorCode\":\"UNREGISTERED\"}]}}"
        #expect(PushMessages.sendOutcome(Self.ok(404, unregistered)) == .unregistered(PushFailure("status 404 NOT_FOUND UNREGISTERED")))
        // UNREGISTERED counts only on a 404; a 404 without it is an ordinary failure.
        #expect(PushMessages.sendOutcome(Self.ok(400, unregistered))
            == .failed(PushFailure("status 400 NOT_FOUND UNREGISTERED"), unauthenticated: false))
        #expect(PushMessages.sendOutcome(Self.ok(404, "{\"error\":{\"status\":\"NOT_FOUND\"}}"))
            == .failed(PushFailure("status 404 NOT_FOUND"), unauthenticated: false))
        #expect(PushMessages.sendOutcome(Self.ok(401, "{\"error\":{\"status\":\"UNAUTHENTICATED\"}}"))
            == .failed(PushFailure("status 401 UNAUTHENTICATED"), unauthenticated: true))
        // Anything that is not a code — lowercase, spaces, injected text, too long — is left out.
        let long = String(repeating: "A", count: 65)
        let noisy = "{\"error\":{\"status\":\"token abc123 is bad\",\"message\":\"ya29.secret\",\"details\":[{\"errorCode\":\"lower\"},"
            + "{\"errorCode\":\"\(long)\"},{\"errorCode\":\"QUOTA_EXCEEDED\"},{\"errorCode\":7}]}}"
        #expect(PushMessages.sendOutcome(Self.ok(429, noisy)) == .failed(PushFailure("status 429 QUOTA_EXCEEDED"), unauthenticated: false))
        #expect(PushMessages.sendOutcome(Self.ok(502, "<html>bad gateway</html>")) == .failed(PushFailure("status 502"), unauthenticated: false))
        #expect(PushMessages.sendOutcome(.failure(.timeout)) == .failed(PushFailure("timeout"), unauthenticated: false))
    }

    // MARK: wake request

    @Test func wakeNeedsPlatformExactlyFcmAndANonEmptyToken() {
        func token(_ s: String) -> String? { Array(s.utf8).withUnsafeBytes { PushMessages.wakeToken($0) } }
        #expect(token("{\"platform\":\"fcm\",\"token\":\"t1\"}") == "t1")
        #expect(token("{\"Platform\":\"fcm\",\"TOKEN\":\"t1\",\"extra\":[1]}") == "t1")  // Go matches names case-insensitively
        #expect(token("{\"platform\":\"fcm\",\"token\":\"t1\",\"token\":\"t2\"}") == "t2")  // last wins, as Go
        for bad in ["{\"token\":\"t\"}", "{\"platform\":\"FCM\",\"token\":\"t\"}", "{\"platform\":\"apns\",\"token\":\"t\"}",
                    "{\"platform\":\"fcm\",\"token\":\"\"}", "{\"platform\":\"fcm\",\"token\":7}", "{\"platform\":\"fcm\"}",
                    "\"x\"", "[]", "{}"] {
            #expect(token(bad) == nil, "\(bad)")
        }
    }

    @Test func tokenFingerprintIsTheFirstEightHexOfSHA256() {
        #expect(PushService.fingerprint("abc") == "ba7816bf")
        #expect(PushService.fingerprint("") == "e3b0c442")
    }

    @Test func jsonValueDecodesEscapesAndRefusesDeepOrTrailingInput() {
        #expect(JSONValue.parse(Array("{\"a\":\"x\\ny\\u00e9\",\"n\":[1,-2,true,null]}".utf8))
            == .object([("a", .string("x\ny\u{e9}")), ("n", .array([.unsigned(1), .number("-2"), .bool(true), .null]))]))
        #expect(JSONValue.parse(Array((String(repeating: "[", count: 17) + String(repeating: "]", count: 17)).utf8)) == nil)
        #expect(JSONValue.parse(Array((String(repeating: "[", count: 16) + String(repeating: "]", count: 16)).utf8)) != nil)
        #expect(JSONValue.parse(Array("{} x".utf8)) == nil)
        #expect(JSONValue.parse(Array("{\"a\":1,}".utf8)) == nil)
    }

    @Test func fcmBaseURLIsAnHTTPSTestHookValidatedAtBoot() throws {
        let v = EnvironmentConfig.fcmBaseURLVar
        #expect(try EnvironmentConfig.parse([v: "https://127.0.0.1:8443"]).get().fcmBaseURL == "https://127.0.0.1:8443")
        #expect(try EnvironmentConfig.parse([:]).get().fcmBaseURL == nil)
        for bad in ["", "http://127.0.0.1:8443", "127.0.0.1:8443", "https://h/?q=1"] {
            guard case .failure(let e) = EnvironmentConfig.parse([v: bad]) else { Issue.record("accepted \(bad)"); continue }
            #expect(e.variable == v)
        }
    }
}
