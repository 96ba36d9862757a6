import Testing
@testable import RelayCodecs

@Suite struct MaskingTests {
    /// RFC 6455 §5.3 literally: byte i XOR key[(offset + i) mod 4].
    private func reference(_ bytes: [UInt8], key: UInt32, offset: Int) -> [UInt8] {
        bytes.enumerated().map { i, b in b ^ UInt8(truncatingIfNeeded: key >> (8 * UInt32((offset + i) % 4))) }
    }

    @Test func wordPathMatchesBytePathForAllOffsetsAndLengths() {
        let key: UInt32 = 0xA1B2_C3D4
        for length in 0...40 {
            for offset in 0...40 {
                for misalign in 0..<8 {  // start address not 8-byte aligned
                    let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ offset) }
                    var buf = [UInt8](repeating: 0x55, count: misalign) + data + [0x66]
                    buf.withUnsafeMutableBytes { raw in
                        Masking.unmask(UnsafeMutableRawBufferPointer(rebasing: raw[misalign..<(misalign + length)]), key: key, offset: offset)
                    }
                    #expect(Array(buf[misalign..<(misalign + length)]) == reference(data, key: key, offset: offset),
                            "length \(length) offset \(offset) misalign \(misalign)")
                    #expect(buf.prefix(misalign).allSatisfy { $0 == 0x55 } && buf.last == 0x66)  // no stray writes
                }
            }
        }
    }

    @Test func unmaskingInPiecesEqualsUnmaskingAtOnce() {
        let data = (0..<100).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let key: UInt32 = 0x0F1E_2D3C
        for cut in 0...100 {
            var a = data
            a.withUnsafeMutableBytes { raw in
                Masking.unmask(UnsafeMutableRawBufferPointer(rebasing: raw[..<cut]), key: key, offset: 0)
                Masking.unmask(UnsafeMutableRawBufferPointer(rebasing: raw[cut...]), key: key, offset: cut)
            }
            #expect(a == reference(data, key: key, offset: 0))
        }
    }

    @Test func emptyBufferIsFine() {
        Masking.unmask(UnsafeMutableRawBufferPointer(start: nil, count: 0), key: 1)
    }
}
