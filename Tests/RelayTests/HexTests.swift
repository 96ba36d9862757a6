import Testing
@testable import RelayCodecs

@Suite struct HexTests {
    @Test func writesLowercaseZeroPaddedMostSignificantFirst() {
        #expect(Hex.string(0, digits: 8) == "00000000")
        #expect(Hex.string(0xDEAD_BEEF, digits: 8) == "deadbeef")
        #expect(Hex.string(0x2028, digits: 4) == "2028")
        #expect(Hex.string(0x1F, digits: 4) == "001f")
        #expect(Hex.string(0xABCDE, digits: 4) == "bcde")  // only the low digits
        var out: [UInt8] = [0x5C]
        Hex.append(0x3C, digits: 4, to: &out)
        #expect(out == Array("\\003c".utf8))
    }

    @Test func readsEitherCaseUnlessLowercaseIsRequired() {
        for (i, c) in "0123456789abcdef".utf8.enumerated() {
            #expect(Hex.value(c) == UInt8(i))
            #expect(Hex.lowercaseValue(c) == UInt8(i))
        }
        for (i, c) in "ABCDEF".utf8.enumerated() {
            #expect(Hex.value(c) == UInt8(10 + i))
            #expect(Hex.lowercaseValue(c) == nil)
        }
        for c in "/:@G`g \u{7F}".utf8 { #expect(Hex.value(c) == nil) }
        for b in UInt8(0x80)...UInt8(0xFF) { #expect(Hex.value(b) == nil) }
    }

    @Test func everyValueRoundTrips() {
        for v: UInt32 in [0, 1, 0xF, 0x10, 0x7FFF_FFFF, 0xFFFF_FFFF] {
            let digits = Array(Hex.string(v, digits: 8).utf8)
            #expect(digits.reduce(UInt32(0)) { $0 << 4 | UInt32(Hex.value($1)!) } == v)
        }
    }
}
