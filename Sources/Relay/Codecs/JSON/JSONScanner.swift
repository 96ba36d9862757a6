import CRelaySIMD

/// JSON validation (RFC 8259) without building a tree, without Foundation and without heap
/// allocation: the relay only needs "is this one JSON value" (docs/protocol.md §7.1) and the byte ranges of a
/// few top-level members of a binary's envelope (docs/protocol.md §7.2).
///
/// Compatibility with Go's `encoding/json` (the relay we replace):
/// - Same grammar, same whitespace set (RFC 8259 §2: space, tab, LF, CR).
/// - Nesting: Go refuses more than 10,000 nested arrays/objects (`maxNestingDepth` in its scanner);
///   so do we, iteratively, so 100,000 `[` cost a bounded bit stack instead of the call stack.
/// - `\uXXXX` escapes of lone surrogates (`"\ud800"`) are accepted, as Go does: the escape grammar
///   only asks for four hex digits (RFC 8259 §7 allows them; §8.2 only warns).
/// - Stricter than Go on purpose: raw bytes inside strings must be valid UTF-8 (RFC 8259 §8.1,
///   RFC 3629: no overlongs, no encoded surrogates, nothing above U+10FFFF). Go's scanner lets
///   any byte ≥ 0x80 through, but the relay forwards these bytes in WebSocket *text* frames
///   (docs/protocol.md §4), which RFC 6455 §8.1 requires to be UTF-8; a binary-opcode phone message with
///   invalid UTF-8 would otherwise become a text frame the peer must fail with 1007.
public enum JSON {
    /// Go's `encoding/json` nesting limit (scanner.go `maxNestingDepth`). Depth counts open
    /// arrays/objects: `[[1]]` has depth 2.
    public static let defaultMaxDepth = 10_000

    /// True when `bytes` is exactly one JSON value, optionally surrounded by whitespace.
    /// `utf8Validated`: the caller already checked the bytes are UTF-8 (a WebSocket text message,
    /// RFC 6455 §8.1), so strings skip that check.
    /// Inlinable: the relay checks every phone message with it, from the service module.
    @inlinable @inline(__always)
    public static func isValid(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
                               utf8Validated: Bool = false) -> Bool {
        // Small messages, the usual phone message among them, in one C pass (CRelaySIMD.h):
        // the scanner's fixed costs per token and per string dominate at this size.
        if bytes.count <= pyry_json_small_max() {
            return pyry_json_valid_small(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                                         maxDepth > 0 ? maxDepth : 0, utf8Validated)
        }
        return isValidReference(bytes, maxDepth: maxDepth, utf8Validated: utf8Validated)
    }

    /// `isValid` by the Swift scanner alone, at any size: the reference the small-message path is
    /// compared with (`JSONDifferential`, run by the fuzzers on every input).
    @usableFromInline
    package static func isValidReference(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth,
                                         utf8Validated: Bool = false) -> Bool {
        var s = JSONScanner(bytes)
        s.utf8Validated = utf8Validated
        s.skipWhitespace()
        guard s.skipValue(maxDepth: maxDepth) else { return false }
        s.skipWhitespace()
        return s.atEnd
    }

    /// Convenience for tests and cold paths.
    public static func isValid(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) -> Bool {
        bytes.withUnsafeBytes { isValid($0, maxDepth: maxDepth) }
    }
}

/// What `scanString` learned about one string token.
package struct JSONStringToken {
    /// Bytes between the quotes, as offsets into the scanned buffer.
    package var content: Range<Int>
    /// Whether `content` holds a backslash escape (and so differs from the decoded value).
    package var hasEscapes: Bool
}

/// A cursor over one buffer. All offsets are relative to the buffer start.
/// Every `scan*`/`skip*` function either consumes exactly one token and returns success, or
/// returns failure with the cursor somewhere inside it (callers then give up on the document).
package struct JSONScanner {
    package let base: UnsafePointer<UInt8>
    package let count: Int
    package var index: Int = 0
    package var utf8Validated = false

    package init(_ bytes: UnsafeRawBufferPointer) {
        if let b = bytes.baseAddress, bytes.count > 0 {
            base = b.assumingMemoryBound(to: UInt8.self)
            count = bytes.count
        } else {
            // An empty buffer has no base address; any non-null pointer with count 0 is never read.
            base = UnsafePointer(bitPattern: 1)!
            count = 0
        }
    }

    /// Depth-stack words the stdlib always keeps on the machine stack (1 KiB).
    package static let promotedStackWords = 128
    /// The fixed depth stack: one bit for each of Go's 10,000 levels (`JSON.defaultMaxDepth`).
    package typealias DepthStack = InlineArray<157, UInt64>
    package static let maxDepthStackWords = DepthStack.count

    @inline(__always) package var atEnd: Bool { index >= count }

    /// The byte at the cursor, or 0 at the end (0 is never valid where a token is expected,
    /// so callers need no separate end check).
    @inline(__always) package var peek: UInt8 { index < count ? base[index] : 0 }

    @inline(__always) package mutating func skipWhitespace() {
        while index < count {
            switch base[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    // MARK: Values

    /// Skips one value (cursor on its first byte, whitespace already skipped), validating it.
    /// `maxDepth` bounds the nesting of arrays/objects *inside and including* this value.
    package mutating func skipValue(maxDepth: Int) -> Bool {
        switch peek {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard maxDepth > 0 else { return false }
            // One bit per open container (1 = object). Each level costs at least one byte of
            // input, so the stack never needs more bits than bytes remain: small messages get a
            // few words, on the machine stack. The stdlib puts a temporary allocation above
            // 1 KiB on the heap unless it can prove the stack has room, so a message long enough
            // for more levels gets a fixed array that holds Go's 10,000 (zeroed: 1,256 bytes).
            let words = (min(maxDepth, count - index) + 63) / 64
            if words > Self.promotedStackWords && words <= Self.maxDepthStackWords {
                var stack = DepthStack(repeating: 0)
                return withUnsafeMutableBytes(of: &stack) { raw in
                    skipContainer(maxDepth: maxDepth, stack: raw.baseAddress!.assumingMemoryBound(to: UInt64.self))
                }
            }
            return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: words) { stack in
                skipContainer(maxDepth: maxDepth, stack: stack.baseAddress!)
            }
        default:
            return skipScalar()
        }
    }

    /// Skips a string, number or literal.
    @inline(__always) package mutating func skipScalar() -> Bool {
        switch peek {
        case UInt8(ascii: "\""): return scanString() != nil
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return scanNumber() != nil
        case UInt8(ascii: "t"): return scanLiteral("true")
        case UInt8(ascii: "f"): return scanLiteral("false")
        case UInt8(ascii: "n"): return scanLiteral("null")
        default: return false
        }
    }

    /// Iterative container walk: RFC 8259 §4 (objects) and §5 (arrays).
    private mutating func skipContainer(maxDepth: Int, stack: UnsafeMutablePointer<UInt64>) -> Bool {
        var depth = 0

        @inline(__always) func setTop(_ isObject: Bool, _ d: Int) {
            let word = (d - 1) >> 6, bit = UInt64(1) << UInt64((d - 1) & 63)
            if isObject { stack[word] |= bit } else { stack[word] &= ~bit }
        }
        @inline(__always) func topIsObject(_ d: Int) -> Bool {
            stack[(d - 1) >> 6] & (UInt64(1) << UInt64((d - 1) & 63)) != 0
        }

        // State: expecting a value (cursor on it, whitespace skipped).
        expectValue: while true {
            let c = peek
            if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") {
                depth += 1
                guard depth <= maxDepth else { return false }
                let isObject = c == UInt8(ascii: "{")
                setTop(isObject, depth)
                index += 1
                skipWhitespace()
                if peek == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                    index += 1
                    depth -= 1
                    // fall through to "after value"
                } else {
                    if isObject {
                        guard skipMemberName() else { return false }
                    }
                    continue expectValue
                }
            } else {
                guard skipScalar() else { return false }
            }

            // State: a value just ended; close containers or move to the next element.
            while depth > 0 {
                skipWhitespace()
                let d = peek
                if d == UInt8(ascii: ",") {
                    index += 1
                    skipWhitespace()
                    if topIsObject(depth) {
                        guard skipMemberName() else { return false }
                    }
                    continue expectValue
                }
                guard d == (topIsObject(depth) ? UInt8(ascii: "}") : UInt8(ascii: "]")) else { return false }
                index += 1
                depth -= 1
            }
            return true
        }
    }

    /// `"name" ws : ws`, cursor left on the member's value.
    @inline(__always) private mutating func skipMemberName() -> Bool {
        guard peek == UInt8(ascii: "\""), scanString() != nil else { return false }
        skipWhitespace()
        guard peek == UInt8(ascii: ":") else { return false }
        index += 1
        skipWhitespace()
        return true
    }

    @inline(__always) package mutating func scanLiteral(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard count - index >= n else { return false }
        let w = word.utf8Start
        for k in 0..<n where base[index + k] != w[k] { return false }
        index += n
        return true
    }

    // MARK: Numbers (RFC 8259 §6)

    /// A number token. `unsigned` is set when it is a plain non-negative integer (no sign,
    /// fraction or exponent) — the only form Go's `strconv.ParseUint` accepts for an unsigned
    /// field — and then `value` holds it, saturated at `UInt64.max`.
    package struct NumberToken {
        package var range: Range<Int>
        package var unsigned: Bool
        package var value: UInt64
    }

    package mutating func scanNumber() -> NumberToken? {
        let start = index
        var plain = true
        var value: UInt64 = 0
        if peek == UInt8(ascii: "-") { index += 1; plain = false }
        // int = zero / ( digit1-9 *DIGIT ): no leading zeros.
        let first = peek
        if first == UInt8(ascii: "0") {
            index += 1
        } else if first >= UInt8(ascii: "1") && first <= UInt8(ascii: "9") {
            while index < count, case let d = base[index], d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") {
                let (m, o1) = value.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(d - UInt8(ascii: "0")))
                value = (o1 || o2) ? UInt64.max : a
                index += 1
            }
        } else {
            return nil
        }
        // frac = decimal-point 1*DIGIT
        if peek == UInt8(ascii: ".") {
            plain = false
            index += 1
            guard skipDigits() else { return nil }
        }
        // exp = e [ minus / plus ] 1*DIGIT
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            plain = false
            index += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() else { return nil }
        }
        return NumberToken(range: start..<index, unsigned: plain, value: plain ? value : 0)
    }

    @inline(__always) private mutating func skipDigits() -> Bool {
        let start = index
        while index < count, case let d = base[index], d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") {
            index += 1
        }
        return index > start
    }

    // MARK: Strings (RFC 8259 §7, §8.1)

    /// Scans a string (cursor on the opening quote), validating escapes and UTF-8.
    package mutating func scanString() -> JSONStringToken? {
        index += 1
        let start = index
        var escapes = false
        while true {
            // Plain ASCII without quote, backslash or control characters — base64 ciphertext,
            // the usual frame content — is skipped 16–64 bytes per step (CRelaySIMD).
            index += pyry_json_plain_span(base + index, count - index)
            guard index < count else { return nil }
            let b = base[index]
            switch b {
            case UInt8(ascii: "\""):
                let token = JSONStringToken(content: start..<index, hasEscapes: escapes)
                index += 1
                return token
            case UInt8(ascii: "\\"):
                escapes = true
                guard skipEscape() else { return nil }
            case 0..<0x20:
                return nil  // RFC 8259 §7: control characters must be escaped.
            case 0x20..<0x80:
                index += 1
            default:
                if utf8Validated {
                    index += 1
                } else {
                    guard skipUTF8Sequence() else { return nil }
                }
            }
        }
    }

    /// `\"` `\\` `\/` `\b` `\f` `\n` `\r` `\t` or `\u` + 4 hex digits (any code unit, surrogates
    /// included, as Go accepts).
    @inline(__always) private mutating func skipEscape() -> Bool {
        guard count - index >= 2 else { return false }
        switch base[index + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
             UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            index += 2
            return true
        case UInt8(ascii: "u"):
            guard count - index >= 6 else { return false }
            for k in 2..<6 where Hex.value(base[index + k]) == nil { return false }
            index += 6
            return true
        default:
            return false
        }
    }

    /// One well-formed UTF-8 sequence (RFC 3629 §4), as `UTF8Validator` judges it: at most 4
    /// bytes, so they go in one at a time.
    @inline(__always) private mutating func skipUTF8Sequence() -> Bool {
        var v = UTF8Validator()
        var i = index
        repeat {
            guard i < count, v.feed(UnsafeRawBufferPointer(start: base + i, count: 1)) else { return false }
            i += 1
        } while !v.isComplete
        index = i
        return true
    }
}
