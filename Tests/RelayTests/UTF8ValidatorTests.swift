import Testing
@testable import RelayCodecs

@Suite struct UTF8ValidatorTests {
    private func validate(_ bytes: [UInt8]) -> (ok: Bool, complete: Bool) {
        var v = UTF8Validator()
        let ok = bytes.withUnsafeBytes { v.feed($0) }
        return (ok, v.isComplete)
    }

    /// Valid = feed succeeds and ends on a boundary.
    private func isValid(_ bytes: [UInt8]) -> Bool {
        let r = validate(bytes)
        return r.ok && r.complete
    }

    @Test func acceptsWellFormed() {
        #expect(isValid([]))
        #expect(isValid(Array("Hello, world! 0123456789abcdef".utf8)))
        #expect(isValid([0xC2, 0x80]))                    // U+0080
        #expect(isValid([0xDF, 0xBF]))                    // U+07FF
        #expect(isValid([0xE0, 0xA0, 0x80]))              // U+0800
        #expect(isValid([0xED, 0x9F, 0xBF]))              // U+D7FF
        #expect(isValid([0xEE, 0x80, 0x80]))              // U+E000
        #expect(isValid([0xEF, 0xBF, 0xBF]))              // U+FFFF
        #expect(isValid([0xF0, 0x90, 0x80, 0x80]))        // U+10000
        #expect(isValid([0xF4, 0x8F, 0xBF, 0xBF]))        // U+10FFFF
        #expect(isValid(Array("κόσμε ü€𝄞 Привет 日本語".utf8)))
    }

    @Test func rejectsMalformed() {
        #expect(!validate([0x80]).ok)                     // stray continuation
        #expect(!validate([0xBF]).ok)
        #expect(!validate([0xC0, 0x80]).ok)               // overlong
        #expect(!validate([0xC1, 0xBF]).ok)
        #expect(!validate([0xE0, 0x9F, 0xBF]).ok)         // overlong 3-byte
        #expect(!validate([0xED, 0xA0, 0x80]).ok)         // surrogate U+D800
        #expect(!validate([0xED, 0xBF, 0xBF]).ok)         // surrogate U+DFFF
        #expect(!validate([0xF0, 0x8F, 0xBF, 0xBF]).ok)   // overlong 4-byte
        #expect(!validate([0xF4, 0x90, 0x80, 0x80]).ok)   // U+110000
        #expect(!validate([0xF5, 0x80, 0x80, 0x80]).ok)
        #expect(!validate([0xFE]).ok && !validate([0xFF]).ok)
        #expect(!validate([0xC2, 0x41]).ok)               // lead without continuation
        #expect(!validate(Array("aaaaaaaaaaaaaaaa".utf8) + [0xFF] + Array("aaaaaaaa".utf8)).ok)
        // Truncated sequences are not invalid yet, just incomplete.
        for t in [[0xC2], [0xE2, 0x82], [0xF0, 0x9D, 0x84]] as [[UInt8]] {
            #expect(validate(t) == (true, false))
        }
    }

    @Test func rejectionIsStickyUntilReset() {
        var v = UTF8Validator()
        #expect(![0xFF].withUnsafeBytes { v.feed($0) })
        #expect(!Array("ok".utf8).withUnsafeBytes { v.feed($0) })
        v.reset()
        #expect(Array("ok".utf8).withUnsafeBytes { v.feed($0) } && v.isComplete)
    }

    /// Differential check against the standard library's validator, whole and split at every point.
    @Test func agreesWithStandardLibrary() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func rand() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        // Pieces biased toward near-valid UTF-8 so both outcomes are common.
        let pieces: [[UInt8]] = [
            [0x61], [0x7F], [0xC2], [0xDF], [0xE0], [0xED], [0xEF], [0xF0], [0xF4], [0xF5], [0xC0],
            [0x80], [0x8F], [0x90], [0x9F], [0xA0], [0xBF], [0xCE, 0xBA], [0xE2, 0x82, 0xAC], Array("abcdefghij".utf8),
        ]
        var invalid = 0
        for _ in 0..<3000 {
            var bytes: [UInt8] = []
            for _ in 0..<Int(rand() % 10) { bytes += pieces[Int(rand() % UInt64(pieces.count))] }
            let expected = String(validating: bytes, as: UTF8.self) != nil
            if !expected { invalid += 1 }
            #expect(isValid(bytes) == expected, "\(bytes)")
            for cut in 0...bytes.count {
                var v = UTF8Validator()
                let ok = bytes[..<cut].withUnsafeBytes { v.feed($0) } && bytes[cut...].withUnsafeBytes { v.feed($0) }
                #expect((ok && v.isComplete) == expected, "\(bytes) cut at \(cut)")
            }
        }
        #expect(invalid > 300 && invalid < 2700)  // the generator exercises both outcomes
    }
}
