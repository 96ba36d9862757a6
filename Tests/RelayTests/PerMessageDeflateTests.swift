import Testing
@testable import RelayCodecs

/// RFC 7692 §7.1 negotiation: which offers are accepted, and the answer.
@Suite struct PerMessageDeflateNegotiationTests {
    private let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

    @Test func plainOfferIsAcceptedWithNoContextTakeoverBothWays() {
        let a = PerMessageDeflate.negotiate(["permessage-deflate"])
        #expect(a?.responseValue == base)
        #expect(a?.serverMaxWindowBits == 15)
    }

    @Test func browserAndPythonOffersAreAccepted() {
        // Chrome/OkHttp and Python websockets' default offers.
        #expect(PerMessageDeflate.negotiate(["permessage-deflate; client_max_window_bits"])?.responseValue == base)
        #expect(PerMessageDeflate.negotiate(["permessage-deflate; client_max_window_bits=12"])?.responseValue == base)
        #expect(PerMessageDeflate.negotiate(["Permessage-Deflate ;Client_No_Context_Takeover"])?.responseValue == base)
    }

    @Test func noOfferOrOtherExtensionsOnlyIsDeclined() {
        #expect(PerMessageDeflate.negotiate([]) == nil)
        #expect(PerMessageDeflate.negotiate(["x-webkit-deflate-frame", "foo; bar=1"]) == nil)
        #expect(PerMessageDeflate.negotiate([""]) == nil)
    }

    @Test func serverWindowBitsIsAnsweredWithTheOfferedValue() {
        let a = PerMessageDeflate.negotiate(["permessage-deflate; server_max_window_bits=10"])
        #expect(a?.serverMaxWindowBits == 10)
        #expect(a?.deflateWindowBits == 10)
        #expect(a?.responseValue == base + "; server_max_window_bits=10")
        // A quoted value parses as the token (RFC 7692 §7.1).
        #expect(PerMessageDeflate.negotiate(["permessage-deflate; server_max_window_bits=\"12\""])?.serverMaxWindowBits == 12)
    }

    @Test func windowBitsEightRunsAsNineAndIsAnsweredEight() {
        let a = PerMessageDeflate.negotiate(["permessage-deflate; server_max_window_bits=8"])
        #expect(a?.responseValue == base + "; server_max_window_bits=8")
        #expect(a?.deflateWindowBits == 9)
    }

    @Test(arguments: [
        "permessage-deflate; server_max_window_bits",          // value required (§7.1.2.1)
        "permessage-deflate; server_max_window_bits=7",        // out of 8...15
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",      // leading zero
        "permessage-deflate; server_max_window_bits=1a",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=",
        "permessage-deflate; server_no_context_takeover=1",    // takes no value (§7.1.1.1)
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  // duplicate (§7.1)
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; mystery",                          // unknown parameter
        "permessage-deflate; server_max_window_bits=\"10",      // unterminated quote
    ])
    func malformedOrDuplicateParameterDeclinesTheOffer(_ offer: String) {
        #expect(PerMessageDeflate.negotiate([offer]) == nil)
    }

    @Test func firstAcceptableOfferWinsAcrossElementsAndHeaderLines() {
        // The first offer is declined (duplicate), the second accepted with its window.
        let a = PerMessageDeflate.negotiate([
            "foo, permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=11, permessage-deflate",
        ])
        #expect(a?.serverMaxWindowBits == 11)
        // Autobahn 13.7's list: the first acceptable one is taken.
        let b = PerMessageDeflate.negotiate([
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; server_no_context_takeover, permessage-deflate",
        ])
        #expect(b?.responseValue == base + "; server_max_window_bits=9")
    }
}

/// The loop's deflate/inflate streams (RFC 7692 §7.2), and the bound on inflated output.
@Suite struct DeflateCodecTests {
    private func inflateAll(_ codec: DeflateCodec, _ bytes: [UInt8], limit: Int, granted: inout Int) -> DeflateCodec.InflateResult {
        bytes.withUnsafeBytes { raw in
            codec.inflate(raw, limit: limit) { extra in granted += extra; return true }
        }
    }

    private func roundTrip(_ message: [UInt8], windowBits: Int32 = 15) -> [UInt8]? {
        let codec = DeflateCodec()
        guard let (out, n) = message.withUnsafeBytes({ codec.deflate($0, windowBits: windowBits) }) else { return nil }
        let compressed = Array(UnsafeRawBufferPointer(start: out, count: n))
        out.deallocate()
        var granted = 0
        guard case .message(let p, let count, _) = inflateAll(codec, compressed, limit: 1 << 20, granted: &granted) else { return nil }
        defer { p?.deallocate() }
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }

    @Test func compressibleMessagesRoundTripSmaller() {
        let json = Array(#"{"type":"output","data":"\#(String(repeating: "hello world ", count: 500))"}"#.utf8)
        #expect(roundTrip(json) == json)
        #expect(roundTrip(json, windowBits: 9) == json)
    }

    @Test func incompressibleMessageIsNotDeflated() {
        var rng = SystemRandomNumberGenerator()
        let noise = (0..<2048).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let codec = DeflateCodec()
        #expect(noise.withUnsafeBytes { codec.deflate($0, windowBits: 15) } == nil)
        #expect([UInt8]().withUnsafeBytes { codec.deflate($0, windowBits: 15) } == nil)
    }

    @Test func rfc7692ExampleInflates() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, tail stripped.
        var granted = 0
        let r = inflateAll(DeflateCodec(), [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], limit: 100, granted: &granted)
        guard case .message(let p, let n, _) = r else { Issue.record("not inflated"); return }
        #expect(Array(UnsafeRawBufferPointer(start: p, count: n)) == Array("Hello".utf8))
        p?.deallocate()
    }

    @Test func bombStopsAtTheLimitWithoutAllocatingPastIt() {
        // ~150 KB of deflate (the codec's fast level) that inflates to 32 MiB of zeros.
        let zeros = [UInt8](repeating: 0, count: 32 << 20)
        let codec = DeflateCodec()
        let (out, n) = zeros.withUnsafeBytes { codec.deflate($0, windowBits: 15)! }
        let bomb = Array(UnsafeRawBufferPointer(start: out, count: n))
        out.deallocate()
        #expect(bomb.count < 200_000)
        let limit = Limits.maxMessageBytes
        var granted = 0
        let r = inflateAll(codec, bomb, limit: limit, granted: &granted)
        guard case .tooBig = r else { Issue.record("bomb not refused: \(r)"); return }
        #expect(granted <= limit)
        // The stream is reset for the next message.
        var g2 = 0
        guard case .message(let p, let c, _) = inflateAll(codec, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], limit: 100, granted: &g2)
        else { Issue.record("codec unusable after a bomb"); return }
        #expect(c == 5)
        p?.deallocate()
    }

    @Test func exactlyTheLimitIsAccepted() {
        let message = [UInt8](repeating: 0x61, count: 4096)
        let codec = DeflateCodec()
        let (out, n) = message.withUnsafeBytes { codec.deflate($0, windowBits: 15)! }
        let compressed = Array(UnsafeRawBufferPointer(start: out, count: n))
        out.deallocate()
        var granted = 0
        guard case .message(let p, let c, _) = inflateAll(codec, compressed, limit: 4096, granted: &granted) else {
            Issue.record("refused at exactly the limit"); return
        }
        #expect(c == 4096)
        p?.deallocate()
        guard case .tooBig = inflateAll(codec, compressed, limit: 4095, granted: &granted) else {
            Issue.record("one byte over the limit accepted"); return
        }
    }

    @Test func garbageIsCorruptAndRefusalStops() {
        var granted = 0
        guard case .corrupt = inflateAll(DeflateCodec(), [0xFF, 0xFF, 0xFF, 0xFF, 0x00], limit: 1000, granted: &granted) else {
            Issue.record("garbage inflated"); return
        }
        let codec = DeflateCodec()
        let r = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00].withUnsafeBytes { codec.inflate($0, limit: 100) { _ in false } }
        guard case .refused = r else { Issue.record("budget refusal ignored"); return }
    }
}

/// RFC 7692 §6 in the frame parser.
@Suite struct CompressedFrameParserTests {
    private func negotiated(_ stream: [UInt8]) -> ([Recorded], Bool) {
        var p = WebSocketParser()
        p.compressionNegotiated = true
        let r = drive(stream, parser: &p)
        return (r.events, p.lastMessageCompressed)
    }

    private func rsv1(_ frame: [UInt8]) -> [UInt8] { [frame[0] | 0x40] + frame.dropFirst() }

    @Test func rsv1MarksACompressedMessageAndSkipsUTF8OnTheWire() {
        // Deflated bytes are not UTF-8; the caller validates the inflated text.
        let (ev, compressed) = negotiated(rsv1(masked(.text, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])))
        #expect(ev == [.message(.text, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])])
        #expect(compressed)
        let (plain, c2) = negotiated(masked(.text, Array("hi".utf8)))
        #expect(plain == [.message(.text, Array("hi".utf8))])
        #expect(!c2)
    }

    @Test func fragmentedCompressedMessageCarriesRSV1OnTheFirstFrameOnly() {
        let stream = rsv1(masked(.text, [0xf2, 0x48, 0xcd], fin: false)) + masked(.continuation, [0xc9, 0xc9, 0x07, 0x00])
        let (ev, compressed) = negotiated(stream)
        #expect(ev == [.fragment, .message(.text, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])])
        #expect(compressed)
        // RSV1 on a continuation (§6.1) → 1002.
        let bad = masked(.text, [0x61], fin: false) + rsv1(masked(.continuation, [0x62]))
        #expect(negotiated(bad).0.last == .violation(1002))
    }

    @Test func compressedControlFrameIs1002() {
        #expect(negotiated(rsv1(masked(.ping, []))).0 == [.violation(1002)])
        #expect(negotiated(rsv1(masked(.close, closeBody(1000)))).0 == [.violation(1002)])
    }

    @Test func rsv2AndRsv3StayErrorsWithTheExtension() {
        #expect(negotiated([0xA1, 0x80, 0x37, 0xFA, 0x21, 0x3D]).0 == [.violation(1002)])
        #expect(negotiated([0xD1, 0x80, 0x37, 0xFA, 0x21, 0x3D]).0 == [.violation(1002)])
    }

    @Test func rsv1WithoutTheExtensionIs1002() {
        #expect(events(rsv1(masked(.text, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]))) == [.violation(1002)])
    }
}
