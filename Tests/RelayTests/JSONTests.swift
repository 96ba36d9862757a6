import Testing
@testable import RelayCodecs

/// RFC 8259 validity, JSONTestSuite-style (y_ = must accept, n_ = must reject), plus the
/// choices docs/protocol.md §7.1 / Go compatibility force on the i_ (implementation-defined) cases.
@Suite struct JSONTests {
    static let valid: [String] = [
        "0", "-0", "1", "-1", "123", "1.5", "-1.5e10", "1E+2", "1e-2", "0.0", "0e0", "1E2",
        "\"\"", "\"a\"", "true", "false", "null",
        "[]", "{}", "[1,2,3]", "{\"a\":1}", "{\"a\":{\"b\":[true,false,null]}}",
        " \t\r\n[ 1 , { \"k\" : \"v\" } ] \n",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"",  // every short escape
        "\"\\u0041\\u00e9\\uD83D\\uDE00\"",  // BMP + surrogate pair
        "\"\\ud800\"",  // lone high surrogate escape: Go accepts
        "\"\\udc00x\"",  // lone low surrogate escape
        "\"é\"", "\"€\"", "\"😀\"", "\"\u{10FFFF}\"",
        "\"\u{7F}\"",  // DEL is not a control character for JSON
        "{\"a\":1,\"a\":2}",  // duplicate names are legal JSON
        "[\"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/=\"]",
        "1.0e+308", "-123456789012345678901234567890",
    ]

    static let invalid: [String] = [
        "", " ", "01", "-01", "00", "+1", ".5", "1.", "1.e2", "1e", "1e+", "-", "--1", "0x1",
        "NaN", "Infinity", "-Infinity", "tru", "nul", "nulll", "True", "NULL",
        "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{\"a\":}", "{a:1}", "{1:1}",
        "{'a':1}", "'a'", "\"a", "\"\\\"", "[", "]", "{", "}", "[1", "{\"a\":1", "[}", "{]",
        "1 2", "[] []", "{}x", "\"\\x41\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"\\'\"",
        "\"\t\"", "\"\n\"", "\"a\u{0}b\"", "\"\u{1F}\"",
        "[1,,2]", "/* c */ 1", "1 // c", "\u{FEFF}1",  // no BOM (RFC 8259 §8.1: MUST NOT add)
    ]

    @Test func acceptsValidDocuments() {
        for text in Self.valid {
            #expect(JSON.isValid(Array(text.utf8)), "should accept: \(text)")
        }
    }

    @Test func rejectsInvalidDocuments() {
        for text in Self.invalid {
            #expect(!JSON.isValid(Array(text.utf8)), "should reject: \(text)")
        }
    }

    @Test func validatesUTF8InsideStrings() {
        let q = UInt8(ascii: "\"")
        let good: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF],
        ]
        let bad: [[UInt8]] = [
            [0x80],  // stray continuation
            [0xC0, 0x80], [0xC1, 0xBF],  // overlong 2-byte
            [0xE0, 0x80, 0x80],  // overlong 3-byte
            [0xED, 0xA0, 0x80],  // UTF-8 encoded surrogate U+D800
            [0xF0, 0x80, 0x80, 0x80],  // overlong 4-byte
            [0xF4, 0x90, 0x80, 0x80],  // U+110000
            [0xF5, 0x80, 0x80, 0x80], [0xFF],
            [0xC2],  // truncated at the closing quote
            [0xE2, 0x82],  // truncated
            [0xC2, 0x41],  // bad continuation
        ]
        for seq in good { #expect(JSON.isValid([q] + seq + [q]), "should accept \(seq)") }
        for seq in bad { #expect(!JSON.isValid([q] + seq + [q]), "should reject \(seq)") }
        // Non-ASCII outside a string is never a token.
        #expect(!JSON.isValid([0xC2, 0xA0, UInt8(ascii: "1")]))
    }

    @Test func swarFastPathFindsSpecialBytesAtEveryOffset() {
        // A long ASCII string with one special byte at each position of an 8-byte word.
        for offset in 0..<24 {
            var body = [UInt8](repeating: UInt8(ascii: "A"), count: 24)
            body[offset] = 0x01  // control character
            #expect(!JSON.isValid([0x22] + body + [0x22]), "control at \(offset)")
            body[offset] = UInt8(ascii: "\"")  // closes early: trailing garbage
            #expect(!JSON.isValid([0x22] + body + [0x22]), "quote at \(offset)")
            body[offset] = 0xFF
            #expect(!JSON.isValid([0x22] + body + [0x22]), "0xFF at \(offset)")
            body[offset] = UInt8(ascii: "\\")  // `\A` is not an escape
            #expect(!JSON.isValid([0x22] + body + [0x22]), "backslash at \(offset)")
            body[offset] = 0x7F
            #expect(JSON.isValid([0x22] + body + [0x22]), "DEL at \(offset)")
            body[offset] = 0x20
            #expect(JSON.isValid([0x22] + body + [0x22]), "space at \(offset)")
        }
    }

    @Test func nestingLimitMatchesGo() {
        // Go's encoding/json accepts 10,000 levels and refuses 10,001.
        let ok = [UInt8](repeating: UInt8(ascii: "["), count: 10_000)
            + [UInt8](repeating: UInt8(ascii: "]"), count: 10_000)
        #expect(JSON.isValid(ok))
        let tooDeep = [UInt8](repeating: UInt8(ascii: "["), count: 10_001)
            + [UInt8](repeating: UInt8(ascii: "]"), count: 10_001)
        #expect(!JSON.isValid(tooDeep))
        #expect(JSON.isValid(Array("[{\"a\":[{}]}]".utf8), maxDepth: 4))
        #expect(!JSON.isValid(Array("[{\"a\":[{}]}]".utf8), maxDepth: 3))
        #expect(JSON.isValid(Array("1".utf8), maxDepth: 0))
        #expect(!JSON.isValid(Array("[]".utf8), maxDepth: 0))
    }

    /// Documents longer than 8 KiB use the fixed depth stack (no heap temporary): it holds
    /// exactly Go's limit, at every depth up to it.
    @Test func fixedDepthStackHoldsGosLimit() {
        #expect(JSONScanner.maxDepthStackWords == (JSON.defaultMaxDepth + 63) / 64)
        #expect(JSONScanner.maxDepthStackWords > JSONScanner.promotedStackWords)
        let pad = [UInt8](repeating: 0x20, count: 9_000)  // whitespace after the value: a long document
        for depth in [1, 63, 64, 65, 8_191, 8_192, 8_193, 10_000] {
            let doc = [UInt8](repeating: UInt8(ascii: "["), count: depth) + [UInt8](repeating: UInt8(ascii: "]"), count: depth) + pad
            #expect(JSON.isValid(doc), "depth \(depth)")
        }
        let tooDeep = [UInt8](repeating: UInt8(ascii: "["), count: 10_001) + [UInt8](repeating: UInt8(ascii: "]"), count: 10_001)
        #expect(!JSON.isValid(tooDeep))
        let mixed = Array(String(repeating: "{\"a\":[", count: 4_000).utf8) + [0x31]
            + Array(String(repeating: "]}", count: 4_000).utf8) + pad
        #expect(JSON.isValid(mixed))
    }

    @Test func hundredThousandOpenBracketsIsInvalidWithoutCrashing() {
        #expect(!JSON.isValid([UInt8](repeating: UInt8(ascii: "["), count: 100_000)))
        #expect(!JSON.isValid([UInt8](repeating: UInt8(ascii: "{"), count: 100_000)))
        let mixed = (0..<50_000).flatMap { _ in Array("{\"a\":[".utf8) }
        #expect(!JSON.isValid(mixed))
    }

    @Test func emptyBufferIsInvalid() {
        #expect(!JSON.isValid(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    @Test func largeDocument() {
        // A 256 KiB message shaped like a real v2 frame.
        let payload = String(repeating: "QUJDRA==", count: 32 * 1024)
        let doc = "{\"v\":2,\"t\":\"data\",\"p\":\"\(payload)\"}"
        #expect(JSON.isValid(Array(doc.utf8)))
        #expect(!JSON.isValid(Array((doc + ",").utf8)))
    }
}

@Suite struct JSONPreValidatedUTF8Tests {
    /// With `utf8Validated` the grammar is unchanged: every verdict on valid UTF-8 input agrees.
    @Test func sameVerdictsOnValidUTF8() {
        let cases = ["{\"a\":\"héllo wörld ✓\"}", "\"" + String(repeating: "é", count: 40) + "\"", "[1,2,\"x\\u00e9\"]",
                     "{\"a\":\"ctrl\u{1}\"}", "{\"k\":\"unterminated", "\"abcdefgh\\q\"", "\"abcdefghijklmnop\"",
                     "{\"conn_id\":\"client-x-0000abcd\",\"frame\":{\"p\":\"QUJDREVGR0g=\"}}"]
        for c in cases {
            let b = Array(c.utf8)
            #expect(b.withUnsafeBytes { JSON.isValid($0, utf8Validated: true) } == JSON.isValid(b), "\(c)")
        }
    }
}
