import CRelaySIMD
import Glibc
import Testing
@testable import RelayCodecs

/// The small-message validator (`pyry_json_valid_small`, every level this CPU has) against
/// written-out verdicts and the Swift scanner: at the size cut-off, at the depth limit, for each
/// error class at every offset modulo the 16/64-byte steps of its mask.
@Suite struct JSONSmallPathTests {
    let levels = SIMDDifferential.levels
    let cutoff = Int(PYRY_JSON_SMALL_MAX)

    /// Every level's verdict and the scanner's on `bytes`, which must all be `expected`.
    private func expectVerdict(_ bytes: [UInt8], _ expected: Bool, maxDepth: Int = JSON.defaultMaxDepth,
                               _ note: String, sourceLocation: SourceLocation = #_sourceLocation) {
        bytes.withUnsafeBytes { raw in
            let p = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
            #expect(JSON.isValidReference(raw, maxDepth: maxDepth) == expected, "scanner: \(note)", sourceLocation: sourceLocation)
            #expect(JSON.isValid(raw, maxDepth: maxDepth) == expected, "isValid: \(note)", sourceLocation: sourceLocation)
            guard bytes.count <= cutoff else { return }
            for k in levels {
                // The kernel takes the limit unsigned; `JSON.isValid` passes a negative one as 0.
                #expect(k.json_valid_small(p, bytes.count, max(maxDepth, 0), false) == expected,
                        "\(String(cString: k.name)): \(note)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test func everyLevelAgreesOnTheGrammarCases() {
        for text in JSONTests.valid { expectVerdict(Array(text.utf8), true, "valid \(text)") }
        for text in JSONTests.invalid { expectVerdict(Array(text.utf8), false, "invalid \(text)") }
    }

    /// A string document of every length up to past the cut-off, whole and cut one byte short
    /// (no closing quote): the last mask word, the overlapping tail load and the padded copy.
    @Test func stringsOfEveryLengthAroundTheSteps() {
        for length in 2...(cutoff + 3) {
            let doc = [0x22] + [UInt8](repeating: UInt8(ascii: "x"), count: length - 2) + [0x22]
            expectVerdict(doc, true, "string of \(length) bytes")
            expectVerdict(Array(doc.dropLast()), false, "unterminated string of \(length - 1) bytes")
            expectVerdict(doc + [0x22], false, "string of \(length) bytes and a stray quote")
        }
    }

    /// Each level hands the small path at most what it takes.
    @Test func levelCutoffsAreWithinTheSmallPathsLimit() {
        for k in levels { #expect(k.json_small_max > 0 && k.json_small_max <= cutoff, "\(String(cString: k.name))") }
        #expect(levels.contains { $0.json_small_max == pyry_json_small_max() })
    }

    /// The same document one byte below, at and above the kernel's limit and each level's
    /// cut-off (where `JSON.isValid` switches paths): the same verdicts on both sides.
    @Test func documentsAtTheCutoffs() {
        for length in Set([cutoff] + levels.map { Int($0.json_small_max) }).flatMap({ ($0 - 2)...($0 + 2) }) {
            // `[1,1,…,1]` padded with spaces to `length` bytes.
            var doc = Array("[1".utf8)
            while doc.count + 3 <= length - 1 { doc += Array(",1".utf8) }
            doc += [UInt8](repeating: 0x20, count: length - 1 - doc.count) + Array("]".utf8)
            #expect(doc.count == length)
            expectVerdict(doc, true, "array of \(length) bytes")
            var broken = doc
            broken[length - 1] = UInt8(ascii: "}")
            expectVerdict(broken, false, "mismatched closer at \(length) bytes")
            expectVerdict(Array("{\"p\":\"".utf8) + [UInt8](repeating: 0x41, count: length - 8) + Array("\"}".utf8),
                          true, "object of \(length) + 0 bytes")
        }
    }

    /// Nesting at, below and above `maxDepth`, with arrays and objects alternating across the
    /// 64-bit words of the depth stack, up to the deepest the small path takes (`[…]` of
    /// `PYRY_JSON_SMALL_MAX` bytes).
    @Test func depthLimit() {
        for depth in [1, 2, 63, 64, 65, 127, 128, 129, cutoff / 2 - 1, cutoff / 2] {
            let doc = [UInt8](repeating: UInt8(ascii: "["), count: depth) + [UInt8](repeating: UInt8(ascii: "]"), count: depth)
            expectVerdict(doc, true, "depth \(depth)")
            expectVerdict(doc, true, maxDepth: depth, "depth \(depth) at its limit")
            expectVerdict(doc, false, maxDepth: depth - 1, "depth \(depth) over its limit")
        }
        expectVerdict(Array("1".utf8), true, maxDepth: 0, "a scalar needs no depth")
        expectVerdict(Array("[]".utf8), false, maxDepth: 0, "no container at depth 0")
        expectVerdict(Array("[]".utf8), false, maxDepth: -1, "a negative limit")
        // {"a":[ … 1 … ]}: 36 levels of each, closers checked against the kind at each level.
        let open = String(repeating: "{\"a\":[", count: 36), close = String(repeating: "]}", count: 36)
        expectVerdict(Array((open + "1" + close).utf8), true, "alternating 72 levels")
        expectVerdict(Array((open + "1" + close).utf8), false, maxDepth: 71, "alternating 72 levels, limit 71")
        var swapped = Array((open + "1" + close).utf8)
        swapped.swapAt(swapped.count - 1, swapped.count - 2)  // `…]}` becomes `…}]`
        expectVerdict(swapped, false, "closers swapped at the outermost level")
        expectVerdict(Array((open + "1" + String(close.dropLast(2))).utf8), false, "one level left open")
    }

    /// Each error class after a prefix of every length 0..<80 inside the first string, so it
    /// lands at every offset of the 16- and 64-byte steps (and the matching valid control).
    @Test func errorClassesAtEveryOffset() {
        let cases: [(String, [UInt8], Bool)] = [
            ("control character", [0x01], false), ("tab", [0x09], false), ("DEL", [0x7F], true),
            ("bad escape", Array("\\x".utf8), false), ("short escape", Array("\\n".utf8), true),
            ("\\u escape", Array("\\u00e9".utf8), true), ("\\u with a non-hex digit", Array("\\u00g9".utf8), false),
            ("2-byte UTF-8", [0xC3, 0xA9], true), ("overlong", [0xC0, 0xAF], false),
            ("surrogate", [0xED, 0xA0, 0x80], false), ("4-byte UTF-8", [0xF0, 0x9F, 0x98, 0x80], true),
            ("above U+10FFFF", [0xF4, 0x90, 0x80, 0x80], false), ("stray continuation", [0x80], false),
            ("escaped quote", Array("\\\"".utf8), true),
        ]
        for prefix in 0..<80 {
            for (name, bytes, valid) in cases {
                let doc = Array("{\"k\":\"".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: prefix) + bytes
                    + Array("\",\"n\":-1.5e3}".utf8)
                expectVerdict(doc, valid, "\(name) after \(prefix)")
            }
            // Cut inside an escape or a sequence at the very end of the input.
            let pad = [UInt8](repeating: UInt8(ascii: "a"), count: prefix)
            for tail: [UInt8] in [Array("\\".utf8), Array("\\u00".utf8), [0xE2, 0x82], [0xF0]] {
                expectVerdict([0x22] + pad + tail, false, "cut after \(prefix)")
            }
        }
    }

    /// Long plain runs take the AVX2 pass's 128-byte blocks: each error class after a run of
    /// every length that puts it at every offset of a block and of the words after it.
    @Test func errorClassesAfterLongPlainRuns() {
        let cases: [(String, [UInt8], Bool)] = [
            ("control character", [0x1F], false), ("quote", Array("\"".utf8), false), ("short escape", Array("\\n".utf8), true),
            ("bad escape", Array("\\x".utf8), false), ("2-byte UTF-8", [0xC3, 0xA9], true), ("stray continuation", [0x80], false),
            ("DEL", [0x7F], true), ("space", [0x20], true),
        ]
        for run in 120...420 {
            for (name, bytes, valid) in cases {
                let doc = Array("{\"k\":\"".utf8) + [UInt8](repeating: UInt8(ascii: "Q"), count: run) + bytes
                    + Array("\",\"n\":-1.5e3}".utf8)
                expectVerdict(doc, valid, "\(name) after \(run)")
            }
        }
    }

    /// A long array of numbers has no special byte, so its blocks take the plain-run way too:
    /// its blanks (between tokens) must still switch to the walk that skips them.
    @Test func longRunsWithoutStringsKeepTheirBlanks() {
        let numbers = (100...199).map(String.init)  // 100 × 3 digits: a 401-byte compact array
        expectVerdict(Array(("[" + numbers.joined(separator: ",") + "]").utf8), true, "compact")
        for at in 1..<numbers.count {
            for blank in [" ", "\t", "\r\n"] {
                // One blank in the middle of the array, after comma `at`: alone in its block.
                let doc = "[" + numbers[..<at].joined(separator: ",") + "," + blank + numbers[at...].joined(separator: ",") + "]"
                expectVerdict(Array(doc.utf8), true, "blank \(blank.utf8.map { $0 }) after comma \(at)")
            }
            let missing = "[" + numbers[..<at].joined(separator: ",") + " " + numbers[at...].joined(separator: ",") + "]"
            expectVerdict(Array(missing.utf8), false, "a blank for comma \(at)")
        }
    }

    /// Input without a byte <= 0x20 takes a walk that skips no whitespace: one blank (or a
    /// control character) anywhere switches to the full walk, between tokens or inside them.
    @Test func oneBlankAtEveryPosition() {
        let compact = Array("{\"t\":\"0000000000000000\",\"p\":[true,-1.5e3,null,{\"a\":\"xxxxxxxxxxxxxxxx\"}]}".utf8)
        expectVerdict(compact, true, "compact")
        let grammar = compact.withUnsafeBytes { JSON.isValidReference($0) }
        #expect(grammar)
        for at in 0...compact.count {
            for blank: UInt8 in [0x20, 0x09, 0x0A, 0x0D, 0x01] {
                var doc = compact
                doc.insert(blank, at: at)
                let expected = doc.withUnsafeBytes { JSON.isValidReference($0) }
                expectVerdict(doc, expected, "byte \(blank) at \(at)")
            }
        }
    }

    @Test func scalarsAndWhitespaceAtTheEnd() {
        for doc in ["true", "false", "null", " null ", "-0.5E+2", "1e9", "[true,false,null]", "{\"a\" : 1 }\r\n"] {
            expectVerdict(Array(doc.utf8), true, doc)
        }
        for doc in ["tru", "fals", "nul", "nulL", "truefalse", "-", "1.", "1e", "2.e1", "[1,]", "{\"a\":1,}", "{\"a\"}", "\u{0}"] {
            expectVerdict(Array(doc.utf8), false, doc)
        }
    }

    /// Every level's verdict on `doc` placed so that its last byte is the last readable byte
    /// before a page the process may not touch (PROT_NONE): a read past the input traps. The
    /// in-place walk (documents of `JSON_SMALL_IN_PLACE_MIN` bytes or more ending in `}` or
    /// `]`) reads the input itself, with no zero padding after it.
    private func expectVerdictBeforeAGuardPage(_ doc: [UInt8], _ note: String,
                                               sourceLocation: SourceLocation = #_sourceLocation) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        precondition(doc.count <= page)
        guard let region = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              region != MAP_FAILED else {
            Issue.record("mmap failed", sourceLocation: sourceLocation)
            return
        }
        defer { munmap(region, 2 * page) }
        #expect(mprotect(region + page, page, PROT_NONE) == 0, sourceLocation: sourceLocation)
        let start = region + page - doc.count
        doc.withUnsafeBytes { start.copyMemory(from: $0.baseAddress!, byteCount: doc.count) }
        let input = UnsafeRawBufferPointer(start: start, count: doc.count)
        let expected = JSON.isValidReference(input)
        var utf8 = UTF8Validator()
        let isUTF8 = utf8.feedReference(input) && utf8.isComplete
        let p = start.assumingMemoryBound(to: UInt8.self)
        for k in levels {
            #expect(k.json_valid_small(p, doc.count, JSON.defaultMaxDepth, false) == expected,
                    "\(String(cString: k.name)): \(note)", sourceLocation: sourceLocation)
            if isUTF8 {
                #expect(k.json_valid_small(p, doc.count, JSON.defaultMaxDepth, true) == expected,
                        "\(String(cString: k.name)) (UTF-8 validated): \(note)", sourceLocation: sourceLocation)
            }
        }
    }

    /// Endings that make the walk look past a byte (a literal, an escape, a number, a string
    /// still open, a closer that is not the outermost one), at the end of documents of 250 to
    /// 330 bytes (below and above the in-place limit, the end at every offset of a 64-byte mask
    /// word) and of the kernel's largest input, each before a guard page.
    @Test func inPlaceWalkReadsNothingPastTheInput() {
        let inPlaceMin = 256  // JSON_SMALL_IN_PLACE_MIN (json_small.h)
        let endings = [
            "1]", "tru]", "true]", "fals]", "false]", "nul]", "null]", "\"x]", "\"x\"]", "\"\\]", "\"\\\"]",
            "\"\\u12]", "\"\\u12ab\"]", "1.]", "1e]", "1e+]", "-]", "-0]", "[1]", "[1]]", "[[1]", "{}]", "{\"a\"}]",
            "\"\u{e9}]", "\"\u{e9}\"]", " ]", "\t]", "1 ]", "1}", "{\"a\":1}}", "{\"a\":1}", "{\"a\":tru}",
            "{\"a\":\"x}", "{\"a\":\"x\"}", "{\"a\":[]}", "{\"a\":[}",
        ]
        var docs: [(String, [UInt8])] = []
        for ending in endings {
            let tail = Array(ending.utf8)
            for length in Array((inPlaceMin - 6)...(inPlaceMin + 74)) + [cutoff - 1, cutoff] {
                // `[` + a string of x that fills the document up to the ending + `,` + the ending
                // (which closes the array itself when it ends in `]`).
                let fill = length - 4 - tail.count
                guard fill >= 0 else { continue }
                let doc = Array("[\"".utf8) + [UInt8](repeating: UInt8(ascii: "x"), count: fill) + Array("\",".utf8) + tail
                docs.append(("\(ending) at \(length) bytes", doc))
            }
        }
        // A long string still open at the end: the mask search must stop at the last byte,
        // also when the whole last block is plain.
        for length in [inPlaceMin, inPlaceMin + 63, inPlaceMin + 64, 384, 512, cutoff] {
            docs.append(("open string of \(length) bytes", Array("[\"".utf8) + [UInt8](repeating: 0x61, count: length - 3) + Array("]".utf8)))
            docs.append(("open key of \(length) bytes", Array("{\"".utf8) + [UInt8](repeating: 0x61, count: length - 3) + Array("}".utf8)))
            let numbers = "[" + String(repeating: "7,", count: (length - 2) / 2) + "7"
            docs.append(("numbers to \(length) bytes", Array((numbers + "]").utf8)))
        }
        for (note, doc) in docs { expectVerdictBeforeAGuardPage(doc, note) }
    }

    /// Random near-JSON (valid documents with one byte changed, cut or doubled) through the
    /// fuzzers' differential check.
    @Test func differentialCheckOnMutatedDocuments() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return seed }
        let pieces = ["{", "}", "[", "]", ",", ":", "\"k\"", "\"é\\n\"", "12", "-0.5e-3", "true", "null", " ", "\"\\u12ab\""]
        var docs = (JSONTests.valid + JSONTests.invalid).map { Array($0.utf8) }
        for _ in 0..<400 {
            var doc = Array("{\"t\":\"0000000000000000\",\"p\":[\"xxxxxxxx\",1,{\"a\":null}]}".utf8)
            for _ in 0..<Int(next() % 4) {
                let at = Int(next() % UInt64(doc.count))
                switch next() % 4 {
                case 0: doc[at] = UInt8(truncatingIfNeeded: next())
                case 1: doc.insert(contentsOf: pieces[Int(next() % UInt64(pieces.count))].utf8, at: at)
                case 2: doc.removeSubrange(at...)
                default: doc.insert(contentsOf: doc[at...].prefix(40), at: at)
                }
                if doc.isEmpty { break }
            }
            docs.append(doc)
        }
        for doc in docs { doc.withUnsafeBytes { JSONDifferential.check($0) } }
    }
}
