import Testing
@testable import RelayCodecs
@testable import RelayTransport

/// PROXY protocol v2 (haproxy proxy-protocol.txt §2.2) with exact bytes.
@Suite struct ProxyProtocolTests {
    static let sig: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// PROXY TCP4 203.0.113.7:51234 → 192.0.2.1:443.
    static let tcp4: [UInt8] = sig + [0x21, 0x11, 0x00, 0x0C,
                                      203, 0, 113, 7, 192, 0, 2, 1, 0xC8, 0x22, 0x01, 0xBB]
    /// PROXY TCP6 2001:db8::1:4000 → 2001:db8::2:443.
    static let tcp6: [UInt8] = sig + [0x21, 0x21, 0x00, 0x24,
                                      0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
                                      0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
                                      0x0F, 0xA0, 0x01, 0xBB]

    func parse(_ b: [UInt8], maxLength: Int = Limits.maxProxyHeaderBytes) -> ProxyProtocolV2.Result {
        b.withUnsafeBytes { ProxyProtocolV2.parse($0, maxLength: maxLength) }
    }

    func source(_ r: ProxyProtocolV2.Result) -> (String, UInt16, Int)? {
        if case .proxied(let s, let n) = r { return (s.ipString, s.port, n) }
        return nil
    }

    @Test func tcp4SourceBecomesTheClient() {
        let s = source(parse(Self.tcp4))
        #expect(s?.0 == "203.0.113.7")
        #expect(s?.1 == 51234)
        #expect(s?.2 == 28)
    }

    @Test func tcp6SourceBecomesTheClient() {
        let s = source(parse(Self.tcp6))
        #expect(s?.0 == "2001:db8::1")
        #expect(s?.1 == 4000)
        #expect(s?.2 == 52)
    }

    @Test func bytesAfterTheHeaderAreNotPartOfIt() {
        // A ClientHello right behind the header: the parser reports only the header's length.
        let s = source(parse(Self.tcp4 + [0x16, 0x03, 0x01, 0x02, 0x00]))
        #expect(s?.2 == 28)
    }

    @Test func tlvsAfterTheAddressesAreSkipped() {
        // Length 12 + a PP2_TYPE_AUTHORITY TLV (type 0x02, length 9, "localhost").
        var b = Self.sig + [0x21, 0x11, 0x00, 0x18, 10, 0, 0, 1, 10, 0, 0, 2, 0x00, 0x50, 0x01, 0xBB]
        b += [0x02, 0x00, 0x09] + Array("localhost".utf8)
        let s = source(parse(b))
        #expect(s?.0 == "10.0.0.1")
        #expect(s?.1 == 80)
        #expect(s?.2 == 40)
    }

    @Test func everyPrefixAsksForTheExactTotal() {
        for n in 0..<16 {
            #expect(parse(Array(Self.tcp4[0..<n])) == .needMore(total: 16), "prefix \(n)")
        }
        for n in 16..<28 {
            #expect(parse(Array(Self.tcp4[0..<n])) == .needMore(total: 28), "prefix \(n)")
        }
        #expect(parse(Array(Self.tcp6[0..<20])) == .needMore(total: 52))
    }

    @Test func v1TextHeaderIsRefusedAtTheFirstByte() {
        #expect(parse(Array("PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n".utf8)) == .refused(.badSignature))
        #expect(parse([0x50]) == .refused(.badSignature))
    }

    @Test func clientHelloWithoutHeaderIsRefused() {
        #expect(parse([0x16, 0x03, 0x01, 0x00, 0xC4, 0x01]) == .refused(.badSignature))
    }

    @Test func garbageAndNearSignaturesAreRefused() {
        #expect(parse(Array("GET / HTTP/1.1\r\n".utf8)) == .refused(.badSignature))
        #expect(parse([0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B]) == .refused(.badSignature))
    }

    @Test func localCommandIsRefused() {
        // A health check from the proxy itself carries no client: docs/protocol.md §3.3 closes it.
        #expect(parse(Self.sig + [0x20, 0x00, 0x00, 0x00]) == .refused(.local))
    }

    @Test func unknownCommandAndVersionAreRefused() {
        #expect(parse(Self.sig + [0x22, 0x11, 0x00, 0x0C]) == .refused(.badCommand))
        #expect(parse(Self.sig + [0x11, 0x11, 0x00, 0x0C]) == .refused(.badVersion))
        #expect(parse(Self.sig + [0x31]) == .refused(.badVersion))
    }

    @Test func onlyTCPOverIPv4OrIPv6IsAccepted() {
        #expect(parse(Self.sig + [0x21, 0x00, 0x00, 0x00]) == .refused(.unsupportedFamily))  // UNSPEC
        #expect(parse(Self.sig + [0x21, 0x12, 0x00, 0x0C]) == .refused(.unsupportedFamily))  // UDP4
        #expect(parse(Self.sig + [0x21, 0x22, 0x00, 0x24]) == .refused(.unsupportedFamily))  // UDP6
        #expect(parse(Self.sig + [0x21, 0x31, 0x00, 0xD8]) == .refused(.unsupportedFamily))  // UNIX stream
        #expect(parse(Self.sig + [0x21, 0x10, 0x00, 0x0C]) == .refused(.unsupportedFamily))  // INET, UNSPEC transport
    }

    @Test func lengthShorterThanTheAddressBlockIsRefused() {
        #expect(parse(Self.sig + [0x21, 0x11, 0x00, 0x0B]) == .refused(.shortAddress))
        #expect(parse(Self.sig + [0x21, 0x21, 0x00, 0x0C]) == .refused(.shortAddress))
    }

    /// A TCP4 header of exactly `total` bytes: the addresses of `tcp4`, then TLVs (§2.2.7) as a
    /// load balancer sends them — PP2_TYPE_AUTHORITY, an AWS VPC endpoint id (type 0xEA,
    /// subtype 0x01) — and a PP2_TYPE_NOOP filling the rest.
    static func tcp4WithTLVs(total: Int) -> [UInt8] {
        func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
            [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
        }
        var tlvs = tlv(0x02, Array("relay.example.com".utf8)) + tlv(0xEA, [0x01] + Array("vpce-0123456789abcdef0".utf8))
        tlvs += tlv(0x04, [UInt8](repeating: 0, count: total - 28 - tlvs.count - 3))
        let length = 12 + tlvs.count
        return Self.sig + [0x21, 0x11, UInt8(length >> 8), UInt8(length & 0xFF)] + Array(Self.tcp4[16..<28]) + tlvs
    }

    @Test func headerWithTLVsUpToTheBoundIsAccepted() {
        let atBound = Self.tcp4WithTLVs(total: Limits.maxProxyHeaderBytes)
        #expect(atBound.count == 4_096)
        let s = source(parse(atBound))
        #expect(s?.0 == "203.0.113.7")
        #expect(s?.1 == 51234)
        #expect(s?.2 == 4_096)
        // Only the fixed part is needed to learn the total: the caller reads exactly that much.
        #expect(parse(Array(atBound[0..<16])) == .needMore(total: 4_096))
        #expect(parse(Array(atBound[0..<4_095])) == .needMore(total: 4_096))
    }

    @Test func headerOneByteOverTheBoundIsRefusedFromItsFixedPart() {
        let over = Self.tcp4WithTLVs(total: Limits.maxProxyHeaderBytes + 1)
        #expect(over.count == 4_097)
        #expect(parse(over) == .refused(.tooLong))
        #expect(parse(Array(over[0..<16])) == .refused(.tooLong))
    }

    @Test func overlongHeaderIsRefusedBeforeBuffering() {
        #expect(parse(Self.sig + [0x21, 0x11, 0xFF, 0xFF]) == .refused(.tooLong))
        #expect(parse(Self.tcp4, maxLength: 27) == .refused(.tooLong))
        #expect(source(parse(Self.tcp4, maxLength: 28))?.2 == 28)
    }
}
