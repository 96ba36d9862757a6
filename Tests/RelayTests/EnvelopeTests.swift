import Testing
@testable import RelayCodecs
@testable import RelayCore

@Suite struct EnvelopeWrapTests {
    @Test func wrapWritesExactBytes() {
        let out = Envelope.wrap(connID: "client-abc-0000002a", frame: Array("{\"k\": [1, 2]}".utf8))
        #expect(String(decoding: out, as: UTF8.self) == "{\"conn_id\":\"client-abc-0000002a\",\"frame\":{\"k\": [1, 2]}}")
        #expect(out.count == Envelope.wrappedLength(connIDLength: 19, frameLength: 13))
        #expect(JSON.isValid(out))
    }

    @Test func wrapIsVerbatimForAnyValue() {
        for frame in ["1", "\"s\"", "null", " [ ] ", "{\"a\":\"\\u003c\"}"] {
            let out = Envelope.wrap(connID: "client-x-00000001", frame: Array(frame.utf8))
            #expect(out == Array("{\"conn_id\":\"client-x-00000001\",\"frame\":\(frame)}".utf8))
        }
    }

    @Test func wrapIntoRawBufferReturnsLength() {
        let id = Array("client-s-deadbeef".utf8)
        let frame = Array("[true]".utf8)
        let n = Envelope.wrappedLength(connIDLength: id.count, frameLength: frame.count)
        var dst = [UInt8](repeating: 0xEE, count: n + 4)
        let written = dst.withUnsafeMutableBytes { d in
            id.withUnsafeBytes { i in frame.withUnsafeBytes { f in Envelope.wrap(connID: i, frame: f, into: d.baseAddress!) } }
        }
        #expect(written == n)
        #expect(Array(dst[..<n]) == Array("{\"conn_id\":\"client-s-deadbeef\",\"frame\":[true]}".utf8))
        #expect(Array(dst[n...]) == [0xEE, 0xEE, 0xEE, 0xEE])  // nothing past the end
    }

    @Test func connIDIsEscapedLikeGo() {
        #expect(JSONString.escaped("client-a\"b\\c-00000000") == Array("client-a\\\"b\\\\c-00000000".utf8))
        #expect(JSONString.escaped("<&>") == Array("\\u003c\\u0026\\u003e".utf8))
        #expect(JSONString.escaped("\u{1}\n\t\u{2028}é") == Array("\\u0001\\n\\t\\u2028é".utf8))
        let wrapped = Envelope.wrap(connID: "client-\"-00000000", frame: Array("1".utf8))
        #expect(JSON.isValid(wrapped))
    }

    @Test func closeNoticeExactBytes() {
        #expect(Envelope.closeNotice(connID: "client-abc-0000002a", code: 1001)
            == Array("{\"conn_id\":\"client-abc-0000002a\",\"close_code\":1001}".utf8))
        #expect(Envelope.closeNotice(connID: "client-a-00000000", code: 4000)
            == Array("{\"conn_id\":\"client-a-00000000\",\"close_code\":4000}".utf8))
    }

    @Test func connectionIDs() {
        #expect(ConnectionID.make(role: .binary, serverID: "srv", random: 0x2A) == "server-srv-0000002a")
        #expect(ConnectionID.make(role: .phone, serverID: "srv", random: 0xDEADBEEF) == "client-srv-deadbeef")
        #expect(ConnectionID.make(role: .phone, serverID: "a-b", random: 0) == "client-a-b-00000000")
        #expect(Hex.string(0xFFFF_FFFF, digits: 8) == "ffffffff")
        func suffix(_ s: String, _ serverID: String = "srv") -> UInt32? {
            Array(s.utf8).withUnsafeBytes { ConnectionID.phoneSuffix(of: $0, serverID: serverID) }
        }
        #expect(suffix("client-srv-deadbeef") == 0xDEADBEEF)
        #expect(suffix("client-srv-DEADBEEF") == nil)
        #expect(suffix("client-srv-deadbee") == nil)
        #expect(suffix("client-srx-deadbeef") == nil)
        #expect(suffix("server-srv-deadbeef") == nil)
        #expect(suffix("client-srv+deadbeef") == nil)
        #expect(suffix("client-srv-deadbeef", "sr") == nil)
        #expect(suffix("client-a-b-00000001", "a-b") == 1)
        // A server-id longer than a small string (heap storage) and one with non-ASCII bytes.
        let long = "a-server-id-longer-than-fifteen-bytes"
        #expect(suffix("client-\(long)-0000ffff", long) == 0xFFFF)
        #expect(suffix("client-\(long)-0000ffff", long + "x") == nil)
        #expect(suffix("client-é-00000002", "é") == 2)
        #expect(suffix("client-e-00000002", "é") == nil)
    }
}

@Suite struct EnvelopeParseTests {
    /// Parses `text`; returns the envelope with ranges turned into strings for easy asserts.
    struct Parsed: Equatable {
        var connID: String?
        var frame: String?
        var closeCode: UInt16?
        var pushWake: String?
    }

    func parse(_ text: String) -> Parsed? {
        let bytes = Array(text.utf8)
        guard let env = Envelope.parseBinaryEnvelope(bytes) else { return nil }
        func str(_ r: Range<Int>?) -> String? { r.map { String(decoding: bytes[$0], as: UTF8.self) } }
        let id: String? = bytes.withUnsafeBytes { buf in
            if case .none = env.connID { return nil }
            return env.withConnIDBytes(in: buf) { String(decoding: $0, as: UTF8.self) }
        }
        return Parsed(connID: id, frame: str(env.frame), closeCode: env.closeCode, pushWake: str(env.pushWake))
    }

    @Test func plainEnvelope() {
        #expect(parse("{\"conn_id\":\"client-a-00000001\",\"frame\":{\"x\":[1, 2 ]}}")
            == Parsed(connID: "client-a-00000001", frame: "{\"x\":[1, 2 ]}"))
        #expect(parse(" {\"frame\" : \"hi\" , \"conn_id\" : \"c\" } \n") == Parsed(connID: "c", frame: "\"hi\""))
    }

    @Test func rawConnIDIsARangeNotACopy() {
        let bytes = Array("{\"conn_id\":\"client-a-00000001\",\"frame\":1}".utf8)
        #expect(Envelope.parseBinaryEnvelope(bytes)?.connID == .raw(12..<29))
        #expect(Envelope.parseBinaryEnvelope(bytes)?.frame == 39..<40)
    }

    @Test func escapedConnIDIsDecoded() {
        #expect(parse("{\"conn_id\":\"client-\\u0061-0000000\\u0031\",\"frame\":1}")?.connID == "client-a-00000001")
        #expect(parse("{\"conn_id\":\"a\\\"b\\/c\\\\\",\"frame\":1}")?.connID == "a\"b/c\\")
        #expect(parse("{\"conn_id\":\"\\ud83d\\ude00\\ud800x\",\"frame\":1}")?.connID == "😀\u{FFFD}x")
        let bytes = Array("{\"conn_id\":\"\\u0041\",\"frame\":1}".utf8)
        #expect(Envelope.parseBinaryEnvelope(bytes)?.connID == .decoded([0x41]))
    }

    @Test func frameKeepsExactBytesOfAnyType() {
        for frame in ["0", "-1.5e3", "\"s\"", "true", "false", "[]", "{}", "[ {\"a\" : null} ]"] {
            #expect(parse("{\"conn_id\":\"c\",\"frame\":\(frame)}")?.frame == frame, "frame \(frame)")
        }
    }

    @Test func frameNullOrMissingNeedsCloseCode() {
        #expect(parse("{\"conn_id\":\"c\"}") == nil)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":null}") == nil)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":null,\"close_code\":0}") == nil)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":null,\"close_code\":4401}")
            == Parsed(connID: "c", frame: nil, closeCode: 4401))
        #expect(parse("{\"conn_id\":\"c\",\"close_code\":1000}") == Parsed(connID: "c", closeCode: 1000))
        #expect(parse("{\"conn_id\":\"c\",\"frame\":{\"e\":1},\"close_code\":4400}")
            == Parsed(connID: "c", frame: "{\"e\":1}", closeCode: 4400))
    }

    @Test func closeCodeFollowsGoUint16Decoding() {
        func code(_ v: String) -> Parsed? { parse("{\"conn_id\":\"c\",\"frame\":1,\"close_code\":\(v)}") }
        #expect(code("1")?.closeCode == 1)
        #expect(code("65535")?.closeCode == 65535)
        #expect(code("0") == Parsed(connID: "c", frame: "1"))  // 0 = no directive
        #expect(code("null") == Parsed(connID: "c", frame: "1"))
        for bad in ["65536", "-1", "-0", "1.5", "1.0", "1e3", "\"1000\"", "true", "[]", "{}", "99999999999999999999999"] {
            #expect(code(bad) == nil, "close_code \(bad)")
        }
    }

    @Test func wrongTypesAreInvalid() {
        #expect(parse("{\"conn_id\":5,\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":true,\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":[\"c\"],\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":{},\"frame\":1}") == nil)
    }

    @Test func notAnObjectOrNotJSONIsInvalid() {
        for text in ["", "null", "[]", "[{\"conn_id\":\"c\",\"frame\":1}]", "\"x\"", "1", "{",
                     "{\"conn_id\":\"c\",\"frame\":1", "{\"conn_id\":\"c\",\"frame\":1,}",
                     "{\"conn_id\":\"c\",\"frame\":1}}", "{\"conn_id\":\"c\",\"frame\":1} x",
                     "{\"conn_id\":\"c\" \"frame\":1}", "{\"conn_id\":\"c\",\"frame\":01}",
                     "{\"conn_id\":\"c\",\"frame\":[1,]}", "{conn_id:\"c\",\"frame\":1}"] {
            #expect(parse(text) == nil, "should reject: \(text)")
        }
    }

    @Test func missingOrEmptyConnIDWithoutPushWakeIsInvalid() {
        #expect(parse("{}") == nil)
        #expect(parse("{\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":\"\",\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":null,\"frame\":1}") == nil)
        #expect(parse("{\"conn_id\":\"\",\"push_wake\":null}") == nil)
    }

    @Test func pushWake() {
        let wake = "{\"platform\":\"fcm\",\"token\":\"t\"}"
        #expect(parse("{\"push_wake\":\(wake)}") == Parsed(pushWake: wake))
        #expect(parse("{\"conn_id\":\"\",\"push_wake\":\(wake),\"frame\":7}") == Parsed(frame: "7", pushWake: wake))
        // Like Go's json.RawMessage field, any non-null type passes here; the push layer refuses it.
        #expect(parse("{\"push_wake\":\"x\"}") == Parsed(pushWake: "\"x\""))
        // With a conn_id it is an ordinary envelope; push_wake is carried but irrelevant.
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"push_wake\":{}}") == Parsed(connID: "c", frame: "1", pushWake: "{}"))
    }

    @Test func duplicateKeysLastWinsAndNullSemantics() {
        #expect(parse("{\"conn_id\":\"a\",\"frame\":1,\"conn_id\":\"b\"}")?.connID == "b")
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"frame\":[2]}")?.frame == "[2]")
        // null resets a raw field…
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"frame\":null}") == nil)
        // …but leaves a string or integer field as it was (Go: null into a non-pointer is a no-op).
        #expect(parse("{\"conn_id\":\"c\",\"conn_id\":null,\"frame\":1}")?.connID == "c")
        #expect(parse("{\"conn_id\":\"c\",\"close_code\":4000,\"close_code\":null}")?.closeCode == 4000)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"close_code\":4000,\"close_code\":0}")?.closeCode == nil)
        #expect(parse("{\"conn_id\":\"c\",\"conn_id\":\"\",\"frame\":1}") == nil)
    }

    @Test func keysMatchCaseInsensitivelyLikeGo() {
        #expect(parse("{\"CONN_ID\":\"c\",\"Frame\":1}") == Parsed(connID: "c", frame: "1"))
        #expect(parse("{\"conn_id\":\"c\",\"FRAME\":null,\"Close_Code\":4000}") == Parsed(connID: "c", closeCode: 4000))
        #expect(parse("{\"Push_Wake\":{}}") == Parsed(pushWake: "{}"))
        // Names written with escapes are unquoted before matching.
        #expect(parse("{\"conn\\u005fid\":\"c\",\"\\u0066rame\":1}") == Parsed(connID: "c", frame: "1"))
        // Unicode simple folding: U+017F (long s) ≡ s, U+212A (Kelvin) ≡ k.
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"clo\u{17F}e_code\":4000}")?.closeCode == 4000)
        #expect(parse("{\"push_wa\\u212Ae\":{}}") == Parsed(pushWake: "{}"))
        // Near misses are unknown keys.
        #expect(parse("{\"conn_id \":\"c\",\"frame\":1}") == nil)
        #expect(parse("{\"connid\":\"c\",\"frame\":1}") == nil)
        #expect(parse("{\"conn_i\u{131}d\":\"c\",\"frame\":1}") == nil)  // dotless i is not i
        #expect(parse("{\"conn_id\":\"c\",\"frames\":1}") == nil)
    }

    @Test func unknownKeysAreIgnoredButMustBeValid() {
        #expect(parse("{\"v\":2,\"conn_id\":\"c\",\"x\":{\"y\":[null,\"\\u00e9\"]},\"frame\":1}")
            == Parsed(connID: "c", frame: "1"))
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"x\":[1,]}") == nil)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":1,\"x\":\"\u{1}\"}") == nil)
    }

    @Test func keyOrderDoesNotMatter() {
        let members = ["\"conn_id\":\"c\"", "\"frame\":[1]", "\"close_code\":4001", "\"other\":{}"]
        // All 24 orders.
        func permutations(_ a: [String]) -> [[String]] {
            a.count <= 1 ? [a] : a.indices.flatMap { i in
                permutations(Array(a[..<i] + a[(i + 1)...])).map { [a[i]] + $0 }
            }
        }
        for order in permutations(members) {
            let text = "{" + order.joined(separator: ",") + "}"
            #expect(parse(text) == Parsed(connID: "c", frame: "[1]", closeCode: 4001), "\(text)")
        }
    }

    @Test func nestingInsideFrameIsBoundedByTheEnvelopeDepth() {
        let deep = String(repeating: "[", count: 9_999) + String(repeating: "]", count: 9_999)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":\(deep)}")?.frame?.count == 19_998)
        let tooDeep = "[" + deep + "]"
        #expect(parse("{\"conn_id\":\"c\",\"frame\":\(tooDeep)}") == nil)
        #expect(parse("{\"conn_id\":\"c\",\"frame\":" + String(repeating: "[", count: 100_000)) == nil)
    }

    @Test func roundTripOfWrap() {
        // What we send a binary parses as an envelope addressed to the same phone.
        let wrapped = Envelope.wrap(connID: "client-x-0000abcd", frame: Array("{\"n\":1}".utf8))
        #expect(parse(String(decoding: wrapped, as: UTF8.self)) == Parsed(connID: "client-x-0000abcd", frame: "{\"n\":1}"))
    }
}
