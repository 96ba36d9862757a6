import CRelaySIMD

/// The CRelaySIMD kernels (unmask, UTF-8, JSON string scan, copy; the small-message JSON
/// validator through `JSONDifferential`) checked against the Swift reference code on arbitrary
/// bytes, at every level this CPU offers (scalar C, SSE2, AVX2), not only the one chosen at load time. Traps on the first disagreement: fuzz-frame and
/// fuzz-envelope run it on every input, the unit tests on the hard cases.
public enum SIMDDifferential {
    /// The kernel tables of every level this CPU (and build) has, lowest first.
    package static var levels: [pyry_simd_kernels] {
        (Int32(PYRY_SIMD_SCALAR)...Int32(PYRY_SIMD_AVX2)).compactMap { pyry_simd_kernels_for($0)?.pointee }
    }

    /// The name of the level chosen at load time ("scalar", "sse2" or "avx2").
    public static var activeLevelName: String {
        String(cString: pyry_simd_kernels_for(pyry_simd_level())!.pointee.name)
    }

    /// Reference for `pyry_ascii_span`: the length of the prefix of bytes < 0x80.
    package static func asciiSpanReference(_ b: UnsafeRawBufferPointer) -> Int {
        b.firstIndex(where: { $0 >= 0x80 }) ?? b.count
    }

    /// Reference for `pyry_json_plain_span`: the prefix free of `"`, `\`, controls (< 0x20)
    /// and non-ASCII (RFC 8259 §7).
    package static func jsonPlainSpanReference(_ b: UnsafeRawBufferPointer) -> Int {
        b.firstIndex(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 || $0 >= 0x80 }) ?? b.count
    }

    /// Checks every kernel of every level against the reference on `bytes`: the scans and the
    /// whole-buffer UTF-8 verdict from each of the first 64 start offsets (so every alignment
    /// to a 16-, 32- and 64-byte step), the incremental validator over three fragments split
    /// where the input's first bytes say, unmasking with a key and payload offset taken from the
    /// input, and the copy.
    public static func check(_ bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * n + 2, alignment: 32)
        defer { scratch.deallocate() }
        let a = UnsafeMutableRawBufferPointer(rebasing: scratch[1..<(1 + n)])  // odd address on purpose
        let b = UnsafeMutableRawBufferPointer(rebasing: scratch[(1 + n)..<(1 + 2 * n)])
        let seed = bytes.prefix(8).reduce(UInt64(n)) { $0 &* 31 &+ UInt64($1) }
        for k in levels {
            let level = String(cString: k.name)
            for start in 0..<min(n, 64) + (n == 0 ? 1 : 0) {
                let s = UnsafeRawBufferPointer(rebasing: bytes[start...])
                let p = s.baseAddress?.assumingMemoryBound(to: UInt8.self)
                precondition(k.ascii_span(p, s.count) == asciiSpanReference(s), "\(level) ascii_span")
                precondition(k.json_plain_span(p, s.count) == jsonPlainSpanReference(s), "\(level) json_plain_span")
                var reference = UTF8Validator()
                let valid = reference.feedReference(s) && reference.isComplete
                precondition(k.utf8_valid(p, s.count) == valid, "\(level) utf8_valid")
            }

            // Incremental: three fragments, ends chosen by the input.
            let cut1 = n == 0 ? 0 : Int(seed % UInt64(n + 1))
            let cut2 = cut1 + (n == cut1 ? 0 : Int((seed >> 16) % UInt64(n - cut1 + 1)))
            var vector = UTF8Validator(), reference = UTF8Validator()
            for (lo, hi) in [(0, cut1), (cut1, cut2), (cut2, n)] {
                let piece = UnsafeRawBufferPointer(rebasing: bytes[lo..<hi])
                let got = vector.feed(piece, validate: k.utf8_valid)
                precondition(got == reference.feedReference(piece), "\(level) incremental UTF-8 verdict")
                precondition(vector.isComplete == reference.isComplete, "\(level) incremental UTF-8 state")
            }

            // Unmask from a payload offset, and copy.
            let key = UInt32(truncatingIfNeeded: seed >> 32)
            let offset = Int(seed & 7)
            a.copyMemory(from: bytes)
            b.copyMemory(from: bytes)
            let rotated = Masking.rotated(key, offset: offset)
            let ascii = k.unmask(a.baseAddress?.assumingMemoryBound(to: UInt8.self), n, rotated)
            Masking.unmaskReference(b, key: key, offset: offset)
            precondition(a.elementsEqual(b), "\(level) unmask")
            precondition(ascii == b.allSatisfy { $0 < 0x80 }, "\(level) unmask's ASCII verdict")
            if let src = bytes.baseAddress, n >= PYRY_COPY_VECTOR_MIN {
                k.copy_large(a.baseAddress, src, n)
                precondition(a.elementsEqual(bytes), "\(level) copy")
            }
        }
        JSONDifferential.check(bytes)
    }
}
