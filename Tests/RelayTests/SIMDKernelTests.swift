import CRelaySIMD
import Testing
@testable import RelayCodecs

/// The CRelaySIMD kernels at every level this CPU has (scalar C, SSE2, AVX2), on the cases where
/// a vector implementation goes wrong: a byte at every offset modulo the 16/32/64-byte step,
/// sequences across block edges, tails shorter than a vector. Expected verdicts are written out
/// here; the Swift reference code must agree with them too.
@Suite struct SIMDKernelTests {
    let levels = SIMDDifferential.levels

    @Test func everyLevelTheCPUHasIsTested() {
        #expect(levels.count >= 1 && String(cString: levels[0].name) == "scalar")
        #if arch(x86_64)
        #expect(levels.map { String(cString: $0.name) }.starts(with: ["scalar", "sse2"]))
        #endif
        #expect(levels.contains { String(cString: $0.name) == SIMDDifferential.activeLevelName })
    }

    private func utf8Valid(_ k: pyry_simd_kernels, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { k.utf8_valid($0.baseAddress, $0.count) }
    }

    private func referenceValid(_ bytes: [UInt8]) -> Bool {
        var v = UTF8Validator()
        return bytes.withUnsafeBytes { v.feedReference($0) } && v.isComplete
    }

    /// Every error class of RFC 3629 §4 (and the valid extremes) placed at every offset 0..<64,
    /// followed by 0–40 ASCII bytes: inside a block, across a 16/32-byte edge, at the very end.
    @Test func utf8ErrorClassesAtEveryOffset() {
        let valid: [[UInt8]] = [
            [0xC2, 0x80], [0xDF, 0xBF], [0xE0, 0xA0, 0x80], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80],
            [0xEF, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF3, 0xBF, 0xBF, 0xBF],
        ]
        let invalid: [(String, [UInt8])] = [
            ("stray continuation", [0x80]), ("stray continuation", [0xBF]),
            ("two continuations after a 2-byte sequence", [0xC2, 0x80, 0x80]),
            ("overlong 2-byte", [0xC0, 0x80]), ("overlong 2-byte", [0xC1, 0xBF]),
            ("overlong 3-byte", [0xE0, 0x80, 0x80]), ("overlong 3-byte", [0xE0, 0x9F, 0xBF]),
            ("overlong 4-byte", [0xF0, 0x80, 0x80, 0x80]), ("overlong 4-byte", [0xF0, 0x8F, 0xBF, 0xBF]),
            ("surrogate", [0xED, 0xA0, 0x80]), ("surrogate", [0xED, 0xBF, 0xBF]),
            ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80]), ("above U+10FFFF", [0xF5, 0x80, 0x80, 0x80]),
            ("above U+10FFFF", [0xF7, 0xBF, 0xBF, 0xBF]), ("invalid byte", [0xF8, 0x88, 0x80, 0x80, 0x80]),
            ("invalid byte", [0xFE]), ("invalid byte", [0xFF]),
            ("lead without continuation", [0xC2, 0x41]), ("lead without continuation", [0xE2, 0x82, 0x41]),
            ("lead without continuation", [0xF0, 0x9F, 0x98, 0x41]), ("lead after lead", [0xE2, 0xC2, 0x80]),
            // Cut short: at the end of the input (0 bytes after) or followed by ASCII.
            ("truncated", [0xC2]), ("truncated", [0xE2, 0x82]), ("truncated", [0xF0, 0x9F, 0x98]),
        ]
        let cases = valid.map { ("valid", $0, true) } + invalid.map { ($0.0, $0.1, false) }
        for (name, sequence, expected) in cases {
            for offset in 0..<64 {
                for after in [0, 1, 2, 3, 13, 14, 15, 16, 29, 30, 31, 32, 40] {
                    let input = Array(repeating: UInt8(ascii: "a"), count: offset) + sequence
                        + Array(repeating: UInt8(ascii: "b"), count: after)
                    #expect(referenceValid(input) == expected, "reference: \(name) at \(offset)+\(after)")
                    for k in levels {
                        #expect(utf8Valid(k, input) == expected,
                                "\(String(cString: k.name)): \(name) \(sequence) at offset \(offset), \(after) bytes after")
                    }
                }
            }
        }
    }

    /// Valid multi-byte text whose sequences fall across every block edge, with one byte broken
    /// at each position in turn.
    @Test func multiByteTextAcrossBlockEdges() {
        let text = Array("ab€𝄞ü日本語κόσμε 𝄞€".utf8)
        for shift in 0..<33 {
            let input = Array(repeating: UInt8(ascii: " "), count: shift) + text + text + text
            for k in levels { #expect(utf8Valid(k, input), "\(String(cString: k.name)) shift \(shift)") }
            for broken in stride(from: shift, to: input.count, by: 7) {
                var bad = input
                bad[broken] ^= 0x40  // 10xxxxxx ↔ 11xxxxxx, 0xxxxxxx ↔ 0xxxxxxx (ASCII stays valid)
                let want = referenceValid(bad)
                for k in levels { #expect(utf8Valid(k, bad) == want, "\(String(cString: k.name)) broken at \(broken)") }
            }
        }
    }

    /// The incremental validator (WebSocket fragments and partial reads) with the kernel of each
    /// level: a 4-byte, 3-byte and 2-byte sequence split at every point into three fragments.
    @Test func incrementalValidationAcrossFragments() {
        let text = Array(String(repeating: "x", count: 29).utf8) + [0xF0, 0x9D, 0x84, 0x9E, 0xE2, 0x82, 0xAC, 0xC3, 0xBC]
            + Array("yz".utf8)
        for k in levels {
            for cut1 in 0...text.count {
                for cut2 in cut1...text.count {
                    var v = UTF8Validator()
                    let ok = text.withUnsafeBytes { raw in
                        v.feed(UnsafeRawBufferPointer(rebasing: raw[..<cut1]), validate: k.utf8_valid)
                            && v.feed(UnsafeRawBufferPointer(rebasing: raw[cut1..<cut2]), validate: k.utf8_valid)
                            && v.feed(UnsafeRawBufferPointer(rebasing: raw[cut2...]), validate: k.utf8_valid)
                    }
                    #expect(ok && v.isComplete, "\(String(cString: k.name)) cuts \(cut1) \(cut2)")
                }
            }
            // A fragment ending mid-sequence is incomplete, not invalid; a bad continuation in the
            // next fragment is invalid, at once.
            var v = UTF8Validator()
            #expect(([0x61, 0xF0, 0x9D] as [UInt8]).withUnsafeBytes { v.feed($0, validate: k.utf8_valid) } && !v.isComplete)
            #expect(!([0x41] as [UInt8]).withUnsafeBytes { v.feed($0, validate: k.utf8_valid) })
            var w = UTF8Validator()
            #expect(([0x61, 0xED] as [UInt8]).withUnsafeBytes { w.feed($0, validate: k.utf8_valid) })
            #expect(!([0xA0, 0x80] as [UInt8]).withUnsafeBytes { w.feed($0, validate: k.utf8_valid) })  // surrogate across the cut
            var x = UTF8Validator()
            #expect(!([0x61, 0xE0, 0x80] as [UInt8]).withUnsafeBytes { x.feed($0, validate: k.utf8_valid) })  // overlong, seen early
        }
    }

    /// Each special byte of a JSON string run at every position of buffers up to 100 bytes.
    @Test func jsonPlainSpanFindsSpecialBytesAtEveryPosition() {
        for special: UInt8 in [UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x00, 0x0A, 0x1F, 0x80, 0xC3, 0xFF] {
            for length in 1...100 {
                for position in 0..<length {
                    var bytes = [UInt8](repeating: UInt8(ascii: "Q"), count: length)
                    bytes[position] = special
                    for k in levels {
                        let got = bytes.withUnsafeBufferPointer { k.json_plain_span($0.baseAddress, $0.count) }
                        let ascii = bytes.withUnsafeBufferPointer { k.ascii_span($0.baseAddress, $0.count) }
                        #expect(got == position, "\(String(cString: k.name)) \(special) at \(position)/\(length)")
                        #expect(ascii == (special >= 0x80 ? position : length))
                    }
                }
            }
        }
        for k in levels {  // nothing special: the whole buffer, including an empty one
            let plain = [UInt8](repeating: 0x7E, count: 77)
            #expect(plain.withUnsafeBufferPointer { k.json_plain_span($0.baseAddress, $0.count) } == 77)
            #expect(k.json_plain_span(nil, 0) == 0 && k.ascii_span(nil, 0) == 0 && k.utf8_valid(nil, 0))
        }
    }

    /// Runs long enough for the 128-byte steps: each special byte at every position (both halves
    /// of a step, the 64- and 32-byte steps after it, the tail), and the bytes that share a low
    /// nibble with '"' or '\\' or sit next to a class edge, which are plain everywhere.
    @Test func jsonPlainSpanInLongRunsAndNearMisses() {
        let nearMisses: [UInt8] = [0x20, 0x21, 0x23, 0x2C, 0x32, 0x42, 0x4C, 0x52, 0x5B, 0x5D, 0x62, 0x6C, 0x72, 0x7C, 0x7F]
        for length in [159, 160, 161, 192, 200, 287, 288, 289, 300, 420] {
            for k in levels {
                for plain in nearMisses {
                    let bytes = [UInt8](repeating: plain, count: length)
                    let got = bytes.withUnsafeBufferPointer { k.json_plain_span($0.baseAddress, $0.count) }
                    #expect(got == length, "\(String(cString: k.name)) run of \(plain) × \(length)")
                }
                for special: UInt8 in [UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x00, 0x1F, 0x80, 0xFF] {
                    for position in 0..<length {
                        var bytes = (0..<length).map { nearMisses[$0 % nearMisses.count] }
                        bytes[position] = special
                        let got = bytes.withUnsafeBufferPointer { k.json_plain_span($0.baseAddress, $0.count) }
                        #expect(got == position, "\(String(cString: k.name)) \(special) at \(position)/\(length)")
                    }
                }
            }
        }
    }

    /// Escapes and raw control characters inside a string at every offset around the block edges,
    /// through the whole JSON validator.
    @Test func jsonStringsWithEscapesAndControlsAtBlockEdges() {
        for k in 0..<70 {
            let run = String(repeating: "a", count: k)
            #expect(JSON.isValid(Array("\"\(run)\\n\(run)\"".utf8)), "escape after \(k)")
            #expect(JSON.isValid(Array("\"\(run)\\u00e9\\\"\"".utf8)), "\\u escape after \(k)")
            #expect(JSON.isValid(Array("[\"\(run)é\(run)\"]".utf8)), "UTF-8 after \(k)")
            #expect(!JSON.isValid(Array("\"\(run)\n\"".utf8)), "raw LF after \(k)")
            #expect(!JSON.isValid(Array("\"\(run)\u{1F}x\"".utf8)), "raw 0x1F after \(k)")
            #expect(!JSON.isValid(Array("\"\(run)\\x\"".utf8)), "bad escape after \(k)")
            #expect(!JSON.isValid(Array("\"\(run)".utf8)), "unterminated after \(k)")
            #expect(!JSON.isValid(Array("\"\(run)".utf8) + [0xED, 0xA0, 0x80] + Array("\"".utf8)), "surrogate after \(k)")
        }
    }

    @Test func unmaskMatchesReferenceAtEveryLengthAndOffset() {
        let data = (0..<700).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }
        let key: UInt32 = 0x9A3C_5E71
        for k in levels {
            // Every length up to 300 (each tail of 1 to 15 bytes after each step, unmasked by a
            // vector that ends at the last byte from 16 bytes on), then around the 128- and
            // 256-byte steps and their sums (256 + 128 + 32 + 16 + tail).
            for length in Array(0...300) + [383, 384, 385, 431, 433, 511, 512, 513, 639, 640, 641, 699] {
                for offset in 0..<4 {
                    var got = [UInt8](data[..<length]) + [0xEE]
                    var want = [UInt8](data[..<length])
                    got.withUnsafeMutableBufferPointer { k.unmask($0.baseAddress, length, Masking.rotated(key, offset: offset)) }
                    want.withUnsafeMutableBytes { Masking.unmaskReference($0, key: key, offset: offset) }
                    #expect(Array(got[..<length]) == want && got[length] == 0xEE,
                            "\(String(cString: k.name)) length \(length) offset \(offset)")
                }
            }
        }
    }

    /// The ASCII verdict the unmask kernels return (it lets a text payload skip the UTF-8 pass):
    /// true for all-ASCII output, false with one byte >= 0x80 at any position — inside a vector
    /// step, at its edges, in the tail.
    @Test func unmaskReportsWhetherTheOutputIsASCII() {
        let key: UInt32 = 0x9A3C_5E71
        for k in levels {
            for length in [0, 1, 3, 7, 8, 9, 15, 16, 17, 20, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129, 160, 200, 255, 256,
                           300, 384, 511, 512, 513] {
                for offset in 0..<4 {
                    let plain = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) & 0x7F }
                    // Every position of the 256-byte step's two halves, the first and last 40 elsewhere.
                    var positions = [Int](0..<min(length, 40))
                    if length >= 384 { positions = [Int](0..<length) }
                    positions += [Int](stride(from: max(positions.count, length - 40), to: length, by: 1))
                    for hit in [-1] + positions {
                        for high: UInt8 in hit < 0 ? [0] : [0x80, 0xFF] {
                            var want = plain
                            if hit >= 0 { want[hit] = high }
                            var wire = want
                            wire.withUnsafeMutableBytes { Masking.unmaskReference($0, key: key, offset: offset) }
                            let ascii = wire.withUnsafeMutableBufferPointer {
                                k.unmask($0.baseAddress, length, Masking.rotated(key, offset: offset))
                            }
                            #expect(wire == want && ascii == (hit < 0),
                                    "\(String(cString: k.name)) length \(length) offset \(offset) byte \(high) at \(hit)")
                        }
                    }
                }
            }
        }
    }

    @Test func copyMovesExactlyTheBytes() {
        #expect(PYRY_COPY_VECTOR_MIN == 256)  // the lengths below straddle it and the 128- and 256-byte steps
        let source = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }
        for k in levels {
            for length in [256, 257, 383, 384, 385, 511, 512, 513, 639, 640, 641, 767, 1000, 65_536, 69_999] {
                var dst = [UInt8](repeating: 0xAA, count: length + 2)
                source.withUnsafeBytes { s in
                    dst.withUnsafeMutableBytes { d in k.copy_large(d.baseAddress! + 1, s.baseAddress!, length) }
                }
                #expect(dst.first == 0xAA && dst.last == 0xAA && Array(dst[1...length]) == Array(source[..<length]),
                        "\(String(cString: k.name)) length \(length)")
            }
        }
    }

    /// The fuzzers' differential check on inputs that reach every branch: ASCII, multi-byte text,
    /// every single byte value, JSON with escapes.
    @Test func differentialCheckAgreesOnSampleInputs() {
        var inputs: [[UInt8]] = [[], Array("{\"a\":\"b\\n\"}".utf8), Array(String(repeating: "κόσμε𝄞", count: 20).utf8)]
        inputs += (0...255).map { b in Array(repeating: UInt8(ascii: "z"), count: Int(b) % 70) + [UInt8(b)] + [0xBF, 0x80] }
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        for _ in 0..<200 {
            inputs.append((0..<Int(seed % 300)).map { _ in
                seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
                return seed % 4 == 0 ? UInt8(truncatingIfNeeded: seed >> 8) : UInt8(ascii: "a") + UInt8(seed >> 20 & 15)
            })
        }
        for input in inputs { input.withUnsafeBytes { SIMDDifferential.check($0) } }
    }
}
