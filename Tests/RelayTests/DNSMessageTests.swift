import Testing
@testable import RelayTransport
@testable import RelayOperations

/// RFC 1035 §4.1 query building and answer parsing, with byte literals.
@Suite struct DNSMessageTests {
    static let fdaa1: [UInt8] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]
    static let fdaa2: [UInt8] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]
    static let fdaa7: [UInt8] = [0xfd, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07]

    /// The question `myapp.internal IN AAAA`, 20 octets at offset 12.
    static let question: [UInt8] = [
        0x05, 0x6d, 0x79, 0x61, 0x70, 0x70,                          // "myapp"
        0x08, 0x69, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0x00,  // "internal", root
        0x00, 0x1c, 0x00, 0x01,                                      // AAAA IN
    ]

    @Test func buildsAAAAQuery() throws {
        let q = try DNSMessage.aaaaQuery(id: 0xBEEF, name: "myapp.internal")
        #expect(q == [0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] + Self.question)
        #expect(try DNSMessage.aaaaQuery(id: 1, name: "myapp.internal.") == [0x00, 0x01] + q.dropFirst(2))
    }

    @Test func rejectsBadNames() {
        for n in ["", ".", "a..b", "my app.internal", String(repeating: "a", count: 64) + ".internal",
                  "é.internal", Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")] {
            #expect(throws: DNSMessage.QueryError.badName, Comment(rawValue: n)) { try DNSMessage.aaaaQuery(id: 1, name: n) }
        }
        #expect(throws: Never.self) { try DNSMessage.aaaaQuery(id: 1, name: String(repeating: "a", count: 63) + ".internal") }
    }

    @Test func parsesTwoAAAAWithCompressedOwnerNames() throws {
        let m: [UInt8] = [0xbe, 0xef, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00] + Self.question
            + [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10] + Self.fdaa1
            + [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10] + Self.fdaa2
        let r = try DNSMessage.parseAAAAResponse(m)
        #expect(r == DNSMessage.AAAAResponse(id: 0xBEEF, rcode: 0, truncated: false, questionName: "myapp.internal",
                                             addresses: [Self.fdaa1, Self.fdaa2]))
    }

    @Test func followsCNAMEAndNestedPointers() throws {
        // Answer 1 at 32: myapp.internal CNAME top.<ptr 12>; its rdata starts at 44.
        // Answer 2 at 50: owner <ptr 44> = "top" + <ptr 12>, AAAA fdaa::7.
        let m: [UInt8] = [0x00, 0x07, 0x85, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00] + Self.question
            + [0xc0, 0x0c, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x06, 0x03, 0x74, 0x6f, 0x70, 0xc0, 0x0c]
            + [0xc0, 0x2c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10] + Self.fdaa7
        #expect(try DNSMessage.readName(m, at: 50) == ("top.myapp.internal", 52))
        #expect(try DNSMessage.parseAAAAResponse(m).addresses == [Self.fdaa7])
    }

    @Test func uppercaseQuestionIsLowercased() throws {
        var q = Self.question
        q[1] = 0x4d  // "Myapp"
        let m: [UInt8] = [0x00, 0x01, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] + q
        #expect(try DNSMessage.parseAAAAResponse(m).questionName == "myapp.internal")
    }

    @Test func nxdomainHasNoAddresses() throws {
        let m: [UInt8] = [0x12, 0x34, 0x81, 0x83, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] + Self.question
        let r = try DNSMessage.parseAAAAResponse(m)
        #expect(r.rcode == 3 && r.addresses.isEmpty)
    }

    @Test func truncatedAnswerKeepsCompleteRecords() throws {
        let m: [UInt8] = [0x12, 0x34, 0x83, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00] + Self.question
            + [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10] + Self.fdaa1
            + [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00]  // cut mid-record
        let r = try DNSMessage.parseAAAAResponse(m)
        #expect(r.truncated && r.addresses == [Self.fdaa1])
        // The same cut without TC is malformed.
        var noTC = m
        noTC[2] = 0x81
        #expect(throws: DNSMessage.ParseError.short) { try DNSMessage.parseAAAAResponse(noTC) }
    }

    @Test func skipsNonAAAAAndWrongLengthRecords() throws {
        let m: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00] + Self.question
            + [0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x04, 10, 0, 0, 1]  // A record
            + [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x04, 1, 2, 3, 4]  // AAAA of 4 octets
        #expect(try DNSMessage.parseAAAAResponse(m).addresses == [])
    }

    @Test func rejectsMalformedMessages() {
        let header: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]
        #expect(throws: DNSMessage.ParseError.short) { try DNSMessage.parseAAAAResponse(Array(header.prefix(11))) }
        #expect(throws: DNSMessage.ParseError.notAResponse) {
            try DNSMessage.parseAAAAResponse([0x12, 0x34, 0x01, 0x00] + header.dropFirst(4) + Self.question)
        }
        #expect(throws: DNSMessage.ParseError.short) { try DNSMessage.parseAAAAResponse(header + Self.question.prefix(10)) }
        // Owner name pointing at itself (offset 32 = 0x20): a loop.
        #expect(throws: DNSMessage.ParseError.badName) {
            try DNSMessage.parseAAAAResponse(header + Self.question + [0xc0, 0x20, 0x00, 0x1c])
        }
        // A label then a pointer back to that label: a loop through data.
        #expect(throws: DNSMessage.ParseError.badName) {
            try DNSMessage.parseAAAAResponse(header + Self.question + [0x01, 0x61, 0xc0, 0x20])
        }
        // A forward pointer.
        #expect(throws: DNSMessage.ParseError.badName) {
            try DNSMessage.parseAAAAResponse(header + Self.question + [0xc0, 0x30] + [UInt8](repeating: 0, count: 40))
        }
        // Label type 0x40 (extended), reserved.
        #expect(throws: DNSMessage.ParseError.badName) {
            try DNSMessage.parseAAAAResponse(header + Self.question + [0x41, 0x00])
        }
        // A pointer missing its second octet.
        #expect(throws: DNSMessage.ParseError.short) { try DNSMessage.parseAAAAResponse(header + Self.question + [0xc0]) }
    }

    /// fuzz-dns input fuzz/corpus/fuzz-dns/regress-01-non-utf8-label: octets that are not UTF-8 read
    /// as one U+FFFD each, so the name keeps one scalar per octet (and never equals an ASCII name).
    @Test func nonUTF8LabelOctetsReadAsReplacementCharacters() throws {
        let m: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
            + [63] + [UInt8](repeating: 0xff, count: 63) + [5, 0x6d, 0x79, 0x61, 0x70, 0x70, 0, 0, 28, 0, 1]
        let name = try #require(try DNSMessage.parseAAAAResponse(m).questionName)
        #expect(name.unicodeScalars.count == 69)
        #expect(name == String(repeating: "\u{FFFD}", count: 63) + ".myapp")
    }

    @Test func nameLongerThan255IsRejected() {
        var m: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
        for _ in 0..<5 { m += [63] + [UInt8](repeating: 0x61, count: 63) }
        m += [0, 0, 28, 0, 1]
        #expect(throws: DNSMessage.ParseError.badName) { try DNSMessage.parseAAAAResponse(m) }
    }

    // docs/architecture.md (v1 = single-instance)'s rule over parsed answers.
    static func resp(_ a: [[UInt8]], rcode: UInt8 = 0, tc: Bool = false) -> DNSMessage.AAAAResponse {
        DNSMessage.AAAAResponse(id: 1, rcode: rcode, truncated: tc, questionName: "myapp.internal", addresses: a)
    }

    @Test func classify() {
        let ours = Self.fdaa1, other = Self.fdaa2
        func word(_ r: DNSMessage.AAAAResponse, own: [UInt8]?) -> String { FlyDNSSignal.classify(r, own: own).word }
        #expect(word(Self.resp([ours]), own: ours) == "single")
        #expect(word(Self.resp([ours, ours]), own: ours) == "single")
        #expect(word(Self.resp([ours, other]), own: ours) == "multiple")
        #expect(word(Self.resp([other]), own: ours) == "multiple")
        #expect(word(Self.resp([ours, other], tc: true), own: ours) == "multiple")
        #expect(word(Self.resp([ours], tc: true), own: ours) == "unknown")
        #expect(word(Self.resp([]), own: ours) == "unknown")
        #expect(word(Self.resp([], rcode: 3), own: ours) == "unknown")
        #expect(word(Self.resp([ours], rcode: 2), own: ours) == "unknown")
        #expect(word(Self.resp([ours, other]), own: nil) == "multiple")
        #expect(word(Self.resp([ours]), own: nil) == "unknown")
        #expect(FlyDNSSignal.classify(Self.resp([ours, other, Self.fdaa7]), own: ours)
            == .multiple(evidence: "the app's .internal name has 2 machine address(es) other than FLY_PRIVATE_IP"))
    }
}
