import Testing
@testable import RelayCodecs

@Suite struct FrameEncoderTests {
    private func header(_ op: Opcode, fin: Bool = true, _ length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0xEE, count: 10)
        let n = out.withUnsafeMutableBytes { FrameEncoder.writeHeader(opcode: op, fin: fin, payloadLength: length, into: $0.baseAddress!) }
        #expect(n == FrameEncoder.headerLength(payloadLength: length))
        return Array(out[..<n])
    }

    @Test func headerLengthsAtBoundaries() {
        #expect(FrameEncoder.headerLength(payloadLength: 0) == 2)
        #expect(FrameEncoder.headerLength(payloadLength: 125) == 2)
        #expect(FrameEncoder.headerLength(payloadLength: 126) == 4)
        #expect(FrameEncoder.headerLength(payloadLength: 65535) == 4)
        #expect(FrameEncoder.headerLength(payloadLength: 65536) == 10)
    }

    @Test func headerBytesAtBoundaries() {
        #expect(header(.binary, 0) == [0x82, 0x00])
        #expect(header(.binary, 125) == [0x82, 0x7D])
        #expect(header(.binary, 126) == [0x82, 0x7E, 0x00, 0x7E])
        #expect(header(.binary, 65535) == [0x82, 0x7E, 0xFF, 0xFF])
        #expect(header(.binary, 65536) == [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00])
        #expect(header(.text, 1 << 40) == [0x81, 0x7F, 0, 0, 0x01, 0, 0, 0, 0, 0])
        #expect(header(.text, fin: false, 3) == [0x01, 0x03])
        #expect(header(.continuation, 3) == [0x80, 0x03])
        #expect(header(.pong, 0) == [0x8A, 0x00])
    }

    @Test func frameLengthReadsBackEveryHeaderForm() {
        for n in [0, 125, 126, 65535, 65536, 300_000] {
            let h = header(.text, n)
            #expect(h.withUnsafeBytes { FrameEncoder.frameLength($0) } == h.count + n)
            // Not yet known from a cut header.
            #expect(Array(h.dropLast()).withUnsafeBytes { FrameEncoder.frameLength($0) } == nil)
        }
    }

    @Test func wholeFrames() {
        #expect(FrameEncoder.frame(opcode: .text, payload: Array("Hello".utf8)) == [0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
        #expect(FrameEncoder.frame(opcode: .ping, payload: []) == [0x89, 0x00])
        let f = FrameEncoder.frame(opcode: .binary, payload: [UInt8](repeating: 9, count: 200))
        #expect(f.count == 204 && Array(f[..<4]) == [0x82, 0x7E, 0x00, 0xC8])
        #expect(FrameEncoder.maskedFrame(opcode: .text, payload: Array("Hello".utf8), maskKey: 0x3D21_FA37)
            == [0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
        #expect(FrameEncoder.maskedFrame(opcode: .binary, fin: false, payload: [], maskKey: 0x0403_0201)
            == [0x02, 0x80, 0x01, 0x02, 0x03, 0x04])
    }
}
