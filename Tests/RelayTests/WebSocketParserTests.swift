import Testing
@testable import RelayCodecs

/// One protocol violation as exact bytes on the wire.
struct ViolationCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let code: UInt16
    /// The violation must be reported once this many bytes have arrived, and not before.
    let failsAfter: Int
    var maxMessageBytes = Limits.maxMessageBytes
    var testDescription: String { name }
}

private let k: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]  // mask key bytes of `testKey`

private let violationCases: [ViolationCase] = {
    var cases: [ViolationCase] = [
        // §5.1: a client frame without the MASK bit.
        .init(name: "unmasked empty text", bytes: [0x81, 0x00], code: 1002, failsAfter: 2),
        .init(name: "unmasked binary", bytes: [0x82, 0x01, 0x41], code: 1002, failsAfter: 2),
        .init(name: "unmasked ping", bytes: [0x89, 0x00], code: 1002, failsAfter: 2),
        // §5.2: RSV bits without a negotiated extension — decided on the first byte.
        .init(name: "RSV1", bytes: [0xC1, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "RSV2", bytes: [0xA1, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "RSV3", bytes: [0x92, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "RSV on ping", bytes: [0xF9, 0x80] + k, code: 1002, failsAfter: 1),
        // §5.5: control frames are never fragmented and carry ≤ 125 bytes.
        .init(name: "ping FIN=0", bytes: [0x09, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "close FIN=0", bytes: [0x08, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "pong FIN=0", bytes: [0x0A, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "ping 126 bytes (16-bit length)", bytes: [0x89, 0xFE, 0x00, 0x7E] + k, code: 1002, failsAfter: 2),
        .init(name: "ping 64-bit length", bytes: [0x89, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5] + k, code: 1002, failsAfter: 2),
        .init(name: "close 126 bytes", bytes: [0x88, 0xFE, 0x00, 0x7E] + k, code: 1002, failsAfter: 2),
        // §5.4: continuation with nothing to continue; new data frame inside a fragmented message.
        .init(name: "continuation without start", bytes: [0x80, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "non-final continuation without start", bytes: [0x00, 0x80] + k, code: 1002, failsAfter: 1),
        .init(name: "text inside fragmented text",
              bytes: masked(.text, [0x61], fin: false) + masked(.text, [0x62]), code: 1002, failsAfter: 8),
        .init(name: "binary inside fragmented binary",
              bytes: masked(.binary, [1], fin: false) + masked(.binary, [2]), code: 1002, failsAfter: 8),
        .init(name: "text inside fragmented binary after a ping",
              bytes: masked(.binary, [1], fin: false) + masked(.ping, []) + masked(.text, []), code: 1002, failsAfter: 14),
        // §8.1: invalid UTF-8 in a text message → 1007, as soon as the bad byte arrives.
        .init(name: "text 0xFF", bytes: masked(.text, [0xFF]), code: 1007, failsAfter: 7),
        .init(name: "text ends mid code point", bytes: masked(.text, [0xE2, 0x82]), code: 1007, failsAfter: 8),
        .init(name: "text surrogate U+D800", bytes: masked(.text, [0x61, 0xED, 0xA0, 0x80]), code: 1007, failsAfter: 9),
        .init(name: "text overlong NUL", bytes: masked(.text, [0xC0, 0x80]), code: 1007, failsAfter: 7),
        .init(name: "text above U+10FFFF", bytes: masked(.text, [0xF4, 0x90, 0x80, 0x80]), code: 1007, failsAfter: 8),
        .init(name: "invalid byte early in a large text frame",
              bytes: masked(.text, [UInt8](repeating: 0x61, count: 5) + [0xFF] + [UInt8](repeating: 0x61, count: 994)),
              code: 1007, failsAfter: 8 + 6),
        .init(name: "invalid UTF-8 in second fragment",
              bytes: masked(.text, [0xCE, 0xBA], fin: false) + masked(.continuation, [0xFF], fin: false)
                  + masked(.continuation, [0x61]),
              code: 1007, failsAfter: 8 + 7),
        .init(name: "fragmented text ends mid code point",
              bytes: masked(.text, [0x61], fin: false) + masked(.continuation, [0xCE]), code: 1007, failsAfter: 14),
        // §5.5.1 / §7.4: close body.
        .init(name: "close payload 1 byte", bytes: masked(.close, [0x03]), code: 1002, failsAfter: 2),
        .init(name: "close reason invalid UTF-8", bytes: masked(.close, closeBody(1000, [0xFF])), code: 1002, failsAfter: 9),
        .init(name: "close reason ends mid code point", bytes: masked(.close, closeBody(1000, [0x61, 0xCE])), code: 1002, failsAfter: 10),
        // §5.2: the 64-bit length's most significant bit MUST be 0 — decided with 10 bytes.
        .init(name: "64-bit length with high bit", bytes: [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0] + k, code: 1002, failsAfter: 10),
        .init(name: "64-bit length 2^64-1", bytes: [0x82, 0xFF] + [UInt8](repeating: 0xFF, count: 8) + k, code: 1002, failsAfter: 10),
        // docs/protocol.md §4 message limit: refused from the header, before the mask key or payload.
        .init(name: "64-bit length 2^63-1", bytes: [0x82, 0xFF, 0x7F] + [UInt8](repeating: 0xFF, count: 7) + k, code: 1009, failsAfter: 10),
        .init(name: "text 262145 bytes claimed", bytes: [0x81, 0xFF, 0, 0, 0, 0, 0, 0x04, 0x00, 0x01] + k, code: 1009, failsAfter: 10),
        .init(name: "over limit by 16-bit length", bytes: [0x82, 0xFE, 0x00, 0x0B] + k, code: 1009, failsAfter: 4, maxMessageBytes: 10),
        .init(name: "over limit by 7-bit length", bytes: [0x82, 0x8B] + k, code: 1009, failsAfter: 2, maxMessageBytes: 10),
        .init(name: "over limit when fragments add up",
              bytes: masked(.text, [UInt8](repeating: 0x61, count: 6), fin: false) + masked(.continuation, [UInt8](repeating: 0x61, count: 5)),
              code: 1009, failsAfter: 12 + 2, maxMessageBytes: 10),
    ]
    // §5.2: reserved opcodes 3–7 (data) and 11–15 (control).
    for op in [3, 4, 5, 6, 7, 11, 12, 13, 14, 15] as [UInt8] {
        cases.append(.init(name: "reserved opcode \(op)", bytes: [0x80 | op, 0x80] + k, code: 1002, failsAfter: 1))
    }
    // §7.4: codes that must not appear on the wire.
    for c in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] as [UInt16] {
        cases.append(.init(name: "close code \(c)", bytes: masked(.close, closeBody(c)), code: 1002, failsAfter: 8))
    }
    return cases
}()

@Suite struct WebSocketParserTests {
    @Test(arguments: violationCases)
    func violationGivesExactCloseCode(_ c: ViolationCase) {
        #expect(events(c.bytes, maxMessageBytes: c.maxMessageBytes).last == .violation(c.code))
        // Fails fast: exactly at `failsAfter` bytes, not earlier.
        #expect(events(Array(c.bytes.prefix(c.failsAfter)), maxMessageBytes: c.maxMessageBytes).last == .violation(c.code))
        #expect(!events(Array(c.bytes.prefix(c.failsAfter - 1)), maxMessageBytes: c.maxMessageBytes).contains(.violation(c.code)))
        // Byte at a time gives the same events.
        var p = WebSocketParser(maxMessageBytes: c.maxMessageBytes)
        #expect(drive(c.bytes, chunks: [1], parser: &p).events == events(c.bytes, maxMessageBytes: c.maxMessageBytes))
        // And the close frame the caller sends back (§5.5.1): 88 02 <code big-endian>.
        #expect(FrameEncoder.closeFrame(code: CloseCode(c.code)) == [0x88, 0x02, UInt8(c.code >> 8), UInt8(c.code & 0xFF)])
    }

    @Test func closeFramesForViolationCodes() {
        #expect(FrameEncoder.closeFrame(code: .protocolError) == [0x88, 0x02, 0x03, 0xEA])
        #expect(FrameEncoder.closeFrame(code: .invalidPayload) == [0x88, 0x02, 0x03, 0xEF])
        #expect(FrameEncoder.closeFrame(code: .messageTooBig) == [0x88, 0x02, 0x03, 0xF1])
        #expect(FrameEncoder.closeFrame(code: nil) == [0x88, 0x00])
        #expect(FrameEncoder.closeFrame(code: .normal, reason: Array("bye".utf8)) == [0x88, 0x05, 0x03, 0xE8, 0x62, 0x79, 0x65])
    }

    @Test func failedStateIsSticky() {
        var p = WebSocketParser()
        var bad: [UInt8] = [0xC1, 0x80] + k
        var good = masked(.text, Array("hi".utf8))
        bad.withUnsafeMutableBytes { raw in
            guard case .violation(let c) = p.next(raw) else { Issue.record("expected violation"); return }
            #expect(c == .protocolError)
        }
        good.withUnsafeMutableBytes { raw in
            guard case .violation(let c) = p.next(raw) else { Issue.record("expected sticky violation"); return }
            #expect(c == .protocolError)
        }
        #expect(good == masked(.text, Array("hi".utf8)))  // nothing unmasked after failing
    }

    // RFC 6455 §5.7 examples, byte for byte.
    @Test func rfcExamples() {
        let hello = Array("Hello".utf8)
        let maskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]
        #expect(masked(.text, hello) == maskedHello)
        #expect(events(maskedHello) == [.message(.text, hello)])
        #expect(events([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F], requireMasked: false) == [.message(.text, hello)])
        #expect(events([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F], requireMasked: false)
            == [.fragment, .message(.text, hello)])
        #expect(events([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F], requireMasked: false) == [.ping(hello)])
        #expect(events([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]) == [.pong(hello)])
        let b256 = (0..<256).map { UInt8(truncatingIfNeeded: $0) }
        #expect(events([0x82, 0x7E, 0x01, 0x00] + b256, requireMasked: false) == [.message(.binary, b256)])
        let b64k = (0..<65536).map { UInt8(truncatingIfNeeded: $0 * 7) }
        #expect(events([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0] + b64k, requireMasked: false) == [.message(.binary, b64k)])
    }

    @Test func unfragmentedPayloadIsZeroCopyAndConsumedExactly() {
        var p = WebSocketParser()
        var bytes = masked(.binary, [1, 2, 3]) + [0x82]  // plus the first byte of the next frame
        bytes.withUnsafeMutableBytes { raw in
            guard case .message(let op, let payload, let consumed) = p.next(raw) else { Issue.record("no message"); return }
            #expect(op == .binary)
            #expect(consumed == 9)
            #expect(payload.baseAddress == UnsafeRawPointer(raw.baseAddress! + 6))
            #expect(Array(payload) == [1, 2, 3])
        }
        #expect(bytes[6...8] == [1, 2, 3])  // unmasked in place
    }

    @Test func fragmentedTextWithUTF8SplitAcrossFragments() {
        let kosme: [UInt8] = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]  // "κόσμε"
        let stream = masked(.text, [0xCE], fin: false) + masked(.continuation, [0xBA, 0xE1], fin: false)
            + masked(.continuation, [0xBD], fin: false) + masked(.continuation, [], fin: false)
            + masked(.continuation, [0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE], fin: false)
            + masked(.continuation, [0xB5])
        let expected: [Recorded] = [.fragment, .fragment, .fragment, .fragment, .fragment, .message(.text, kosme)]
        #expect(events(stream) == expected)
        for chunk in [1, 2, 3, 5, 8] {
            var p = WebSocketParser()
            #expect(drive(stream, chunks: [chunk], parser: &p).events == expected)
        }
    }

    @Test func controlFramesInterleaveWithFragments() {
        let stream = masked(.text, Array("ab".utf8), fin: false) + masked(.ping, [9])
            + masked(.continuation, Array("c".utf8), fin: false) + masked(.pong, [])
            + masked(.continuation, Array("d".utf8)) + masked(.binary, [7])
        #expect(events(stream) == [
            .fragment, .ping([9]), .fragment, .pong([]), .message(.text, Array("abcd".utf8)), .message(.binary, [7]),
        ])
        // A close between fragments is reported; its reason is validated on its own.
        let withClose = masked(.text, [0xCE], fin: false) + masked(.close, closeBody(1001, Array("x".utf8)))
        #expect(events(withClose) == [.fragment, .close(1001, Array("x".utf8))])
    }

    @Test func emptyFragmentsAndEmptyMessages() {
        let stream = masked(.text, [], fin: false) + masked(.continuation, [], fin: false) + masked(.continuation, [])
            + masked(.binary, []) + masked(.text, [])
        #expect(events(stream) == [.fragment, .fragment, .message(.text, []), .message(.binary, []), .message(.text, [])])
    }

    @Test func closeFrames() {
        #expect(events(masked(.close, [])) == [.close(nil, [])])
        #expect(events(masked(.close, closeBody(1000))) == [.close(1000, [])])
        #expect(events(masked(.close, closeBody(1000, Array("bye".utf8)))) == [.close(1000, Array("bye".utf8))])
        for c in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999] as [UInt16] {
            #expect(events(masked(.close, closeBody(c))) == [.close(c, [])])
        }
        let reason123 = [UInt8](repeating: 0x7A, count: 123)  // 125-byte payload: the §5.5 maximum
        #expect(events(masked(.close, closeBody(1000, reason123))) == [.close(1000, reason123)])
    }

    @Test func feedingInAnyChunkSizeGivesIdenticalEvents() {
        let stream = masked(.text, Array("Hello".utf8)) + masked(.ping, Array("p".utf8))
            + masked(.binary, [UInt8](repeating: 0xAB, count: 300), key: 0x0102_0304)
            + masked(.text, [0xCE, 0xBA, 0xE1], fin: false) + masked(.ping, [])
            + masked(.continuation, [0xBD, 0xB9, 0xCF, 0x83]) + masked(.text, [])
            + masked(.text, Array(String(repeating: "ü€𝄞a", count: 40).utf8), key: 0xDEAD_BEEF)
            + masked(.binary, [UInt8](repeating: 1, count: 70_000), key: 0x8899_AABB)
            + masked(.close, closeBody(1000, Array("done".utf8)))
        let whole = events(stream)
        #expect(whole.count == 10)
        #expect(whole.last == .close(1000, Array("done".utf8)))
        for chunks in [[1], [2], [3], [7], [13, 1, 200], [4096, 1]] {
            var p = WebSocketParser()
            let r = drive(stream, chunks: chunks, parser: &p)
            #expect(r.events == whole, "chunks \(chunks)")
            #expect(r.consumed == stream.count)
        }
    }

    @Test func bytesNeededForCurrentFrame() {
        var p = WebSocketParser()
        var frame = masked(.binary, [UInt8](repeating: 5, count: 300))  // 2 + 2 + 4 + 300
        #expect(p.bytesNeededForCurrentFrame == nil)
        for (have, expected) in [(1, nil), (2, nil), (3, nil), (4, 308), (8, 308), (307, 308)] as [(Int, Int?)] {
            frame.withUnsafeMutableBytes { raw in
                guard case .needMore = p.next(UnsafeMutableRawBufferPointer(rebasing: raw[..<have])) else {
                    Issue.record("expected needMore at \(have)"); return
                }
            }
            #expect(p.bytesNeededForCurrentFrame == expected, "after \(have) bytes")
        }
        frame.withUnsafeMutableBytes { raw in
            guard case .message(_, _, let consumed) = p.next(raw) else { Issue.record("no message"); return }
            #expect(consumed == 308)
        }
        #expect(p.bytesNeededForCurrentFrame == nil)
        var small = masked(.text, Array("Hello".utf8))
        small.withUnsafeMutableBytes { raw in _ = p.next(UnsafeMutableRawBufferPointer(rebasing: raw[..<2])) }
        #expect(p.bytesNeededForCurrentFrame == 11)
    }

    @Test func assemblyStateAndBufferRelease() {
        var p = WebSocketParser()
        var stream = masked(.text, Array("ab".utf8), fin: false) + masked(.ping, []) + masked(.continuation, Array("c".utf8))
            + masked(.binary, [1])
        var log: [String] = []
        stream.withUnsafeMutableBytes { raw in
            var at = 0
            while true {
                let event = p.next(UnsafeMutableRawBufferPointer(rebasing: raw[at...]))
                log.append("\(p.isAssemblingMessage) \(p.assemblyBufferCapacity > 0)")
                switch event {
                case .fragment(let c), .ping(_, let c), .message(_, _, let c): at += c
                default: return
                }
            }
        }
        // fragment, ping, final fragment (buffer still valid for the payload), binary (buffer freed), needMore.
        #expect(log == ["true true", "true true", "false true", "false false", "false false"])
    }

    @Test func messageLimitBoundaries() {
        let exact = [UInt8](repeating: 0x62, count: Limits.maxMessageBytes)
        #expect(events(masked(.binary, exact)) == [.message(.binary, exact)])
        #expect(events(masked(.binary, exact + [1])) == [.violation(1009)])
        let ten = [UInt8](repeating: 0x61, count: 10)
        #expect(events(masked(.text, Array(ten[..<5]), fin: false) + masked(.continuation, Array(ten[5...])), maxMessageBytes: 10)
            == [.fragment, .message(.text, ten)])
        // Control frames do not count toward the message limit.
        #expect(events(masked(.ping, [1, 2, 3]), maxMessageBytes: 0) == [.ping([1, 2, 3])])
    }

    @Test func nonMinimalLengthEncodingsAreAccepted() {
        // §5.2's "minimal number of bytes" binds the sender; receivers need not reject.
        let five: [UInt8] = [1, 2, 3, 4, 5]
        #expect(events([0x82, 0x7E, 0x00, 0x05] + five, requireMasked: false) == [.message(.binary, five)])
        #expect(events([0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5] + five, requireMasked: false) == [.message(.binary, five)])
    }

    @Test func requireMaskedFalseAcceptsBoth() {
        #expect(events([0x82, 0x01, 0x41], requireMasked: false) == [.message(.binary, [0x41])])
        #expect(events(masked(.binary, [0x41]), requireMasked: false) == [.message(.binary, [0x41])])
    }

    @Test func encoderRoundTripsThroughParserAtLengthBoundaries() {
        for n in [0, 1, 125, 126, 127, 65535, 65536, 70_001] {
            let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            var p = WebSocketParser(maxMessageBytes: 1 << 20)
            let r = drive(masked(.binary, payload, key: UInt32(truncatingIfNeeded: n &* 2_654_435_761)), chunks: [977], parser: &p)
            #expect(r.events == [.message(.binary, payload)], "length \(n)")
        }
    }

    /// A whole masked text or binary frame with a 16-bit length goes the one-frame path (and the
    /// verdicts match the general path's, byte at a time): ASCII text skips the UTF-8 pass, other
    /// text is validated, the limit still holds, the frame is consumed exactly.
    @Test func sixteenBitFramesWholeAndByteAtATime() {
        let ascii = [UInt8](repeating: 0x61, count: 1000)
        let accented = [UInt8](repeating: 0x61, count: 998) + [0xC3, 0xA9]  // "…aé"
        let cases: [(name: String, frame: [UInt8], limit: Int, want: Recorded)] = [
            ("ASCII 126", masked(.text, [UInt8](repeating: 0x7E, count: 126)), 1 << 20,
             .message(.text, [UInt8](repeating: 0x7E, count: 126))),
            ("ASCII 1000", masked(.text, ascii), 1 << 20, .message(.text, ascii)),
            ("ASCII 65535", masked(.text, [UInt8](repeating: 0x20, count: 65535)), 1 << 20,
             .message(.text, [UInt8](repeating: 0x20, count: 65535))),
            ("UTF-8 text", masked(.text, accented), 1 << 20, .message(.text, accented)),
            ("binary with high bytes", masked(.binary, accented), 1 << 20, .message(.binary, accented)),
            ("invalid last byte", masked(.text, Array(ascii.dropLast()) + [0xFF]), 1 << 20, .violation(1007)),
            ("ends mid code point", masked(.text, Array(ascii.dropLast()) + [0xC3]), 1 << 20, .violation(1007)),
            ("one over the limit", masked(.text, ascii), 999, .violation(1009)),
            ("at the limit", masked(.text, ascii), 1000, .message(.text, ascii)),
        ]
        for c in cases {
            #expect(Array(c.frame[1...1]) == [0xFE], "\(c.name): a 16-bit length")
            var whole = WebSocketParser(maxMessageBytes: c.limit)
            let r = drive(c.frame + masked(.binary, [7]), parser: &whole)
            // After a message the next frame follows; a violation ends the stream.
            var want = [c.want]
            if case .message = c.want { want.append(.message(.binary, [7])) }
            #expect(r.events == want, "\(c.name) in one read")
            var bytewise = WebSocketParser(maxMessageBytes: c.limit)
            #expect(drive(c.frame, chunks: [1], parser: &bytewise).events == [c.want], "\(c.name) byte at a time")
        }
    }

    /// Every connection embeds a parser for its lifetime; its small fields stay packed at the
    /// end, so a `Connection` can fill the parser's tail padding (docs/benchmarks.md, M1).
    @Test func parserStaysCompact() {
        #expect(MemoryLayout<WebSocketParser>.size <= 58)
    }
}
