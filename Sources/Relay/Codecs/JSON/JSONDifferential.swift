import CRelaySIMD

/// The small-message JSON validator (`pyry_json_valid_small`) checked against the Swift scanner
/// (`JSON.isValidReference`) at every level this CPU offers, with and without the UTF-8 shortcut
/// and at depth limits around the input's own nesting. Traps on the first disagreement:
/// `SIMDDifferential.check` runs it, so fuzz-frame and fuzz-envelope do on every input.
public enum JSONDifferential {
    /// Inputs longer than the small path takes are checked by their first and last
    /// `PYRY_JSON_SMALL_MAX` bytes. Each is also checked as the end of a document that the
    /// kernels walk in place (json_small.h: 256 bytes or more, ending in `]`), in a buffer of
    /// exactly its size.
    public static func check(_ bytes: UnsafeRawBufferPointer) {
        let small = Int(PYRY_JSON_SMALL_MAX)
        if bytes.count <= small {
            compare(bytes)
        } else {
            compare(UnsafeRawBufferPointer(rebasing: bytes.prefix(small)))
            compare(UnsafeRawBufferPointer(rebasing: bytes.suffix(small)))
        }
        compareInPlace(UnsafeRawBufferPointer(rebasing: bytes.suffix(small - inPlaceHead.count - 1)))
    }

    /// `["x…x",` (255 bytes): with any input and a closing `]` after it, at least the in-place
    /// walk's 256 bytes.
    private static let inPlaceHead = Array("[\"".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: 251) + Array("\",".utf8)

    private static func compareInPlace(_ bytes: UnsafeRawBufferPointer) {
        let n = inPlaceHead.count + bytes.count + 1
        let doc = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 1)
        defer { doc.deallocate() }
        inPlaceHead.withUnsafeBytes { doc.copyMemory(from: $0) }
        if let src = bytes.baseAddress { (doc.baseAddress! + inPlaceHead.count).copyMemory(from: src, byteCount: bytes.count) }
        doc[n - 1] = UInt8(ascii: "]")
        compare(UnsafeRawBufferPointer(doc))
    }

    /// The default limit, and 0...3: below, at and above the nesting of short inputs (all >= 0:
    /// the kernel's limit is unsigned).
    private static let depths = [JSON.defaultMaxDepth, 0, 1, 2, 3]

    private static func compare(_ bytes: UnsafeRawBufferPointer) {
        var utf8 = UTF8Validator()
        let isUTF8 = utf8.feedReference(bytes) && utf8.isComplete
        let p = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let levels = SIMDDifferential.levels
        for maxDepth in depths {
            // The reference's verdict does not depend on the level: one scan per depth.
            let expected = JSON.isValidReference(bytes, maxDepth: maxDepth)
            for k in levels {
                precondition(k.json_valid_small(p, bytes.count, maxDepth, false) == expected,
                             "\(String(cString: k.name)) json_valid_small, maxDepth \(maxDepth)")
                if isUTF8 {
                    precondition(k.json_valid_small(p, bytes.count, maxDepth, true) == expected,
                                 "\(String(cString: k.name)) json_valid_small (UTF-8 validated), maxDepth \(maxDepth)")
                }
            }
        }
    }
}
