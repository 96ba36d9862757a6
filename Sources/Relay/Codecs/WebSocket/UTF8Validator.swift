import CRelaySIMD

/// Incremental UTF-8 validator (RFC 3629 §4; Unicode Table 3-7 "well-formed byte sequences").
///
/// The state survives across `feed` calls, so a text message can be validated fragment by
/// fragment (and a frame chunk by chunk) with code points split anywhere — RFC 6455 §8.1 lets
/// an endpoint fail a connection as soon as the bytes seen so far cannot be valid.
/// Rejects overlongs, surrogates (U+D800–DFFF) and code points above U+10FFFF.
public struct UTF8Validator: Sendable {
    // States: what the next byte must be.
    @usableFromInline package static let accept: UInt8 = 0
    @usableFromInline package static let need1: UInt8 = 1        // one 80–BF, then done
    @usableFromInline package static let need2: UInt8 = 2        // 80–BF, then need1
    @usableFromInline package static let need3: UInt8 = 3        // 80–BF, then need2
    @usableFromInline package static let afterE0: UInt8 = 4      // A0–BF (no overlongs), then need1
    @usableFromInline package static let afterED: UInt8 = 5      // 80–9F (no surrogates), then need1
    @usableFromInline package static let afterF0: UInt8 = 6      // 90–BF (no overlongs), then need2
    @usableFromInline package static let afterF4: UInt8 = 7      // 80–8F (≤ U+10FFFF), then need2
    @usableFromInline package static let reject: UInt8 = 8       // sticky

    @usableFromInline package var state: UInt8 = 0

    public init() {}

    /// True when the bytes fed so far end on a code point boundary (and none was invalid).
    public var isComplete: Bool { state == Self.accept }

    public mutating func reset() { state = Self.accept }

    /// Feeds more bytes. Returns false as soon as the bytes so far cannot be valid UTF-8;
    /// after that every call returns false until `reset()`.
    @inline(__always)
    public mutating func feed(_ b: UnsafeRawBufferPointer) -> Bool {
        feed(b, validate: pyry_utf8_valid)
    }

    /// `feed` for bytes already known to be ASCII (the unmask pass said so, `Masking.unmask`):
    /// after a complete code point they change nothing (RFC 3629 §4), so no pass is made; inside
    /// one they are checked as any bytes are.
    @inline(__always)
    public mutating func feed(_ b: UnsafeRawBufferPointer, knownASCII: Bool) -> Bool {
        (knownASCII && state == Self.accept) || feed(b)
    }

    /// `feed` with the bulk of the bytes checked by `validate`, a complete-buffer validator (the
    /// CRelaySIMD kernel of the level the CPU offers; tests pass each level's).
    @inline(__always)
    package mutating func feed(_ b: UnsafeRawBufferPointer,
                       validate: @convention(c) (UnsafePointer<UInt8>?, Int) -> Bool) -> Bool {
        guard let raw = b.baseAddress, b.count > 0 else { return state != Self.reject }
        let p = raw.assumingMemoryBound(to: UInt8.self)
        // The usual case, one kernel call: no code point open before the bytes, ASCII last.
        if state == Self.accept && p[b.count &- 1] < 0x80 {
            if validate(p, b.count) { return true }
            state = Self.reject
            return false
        }
        return feedAcrossCodePoints(p, b.count, validate: validate)
    }

    /// `feed` when a code point may be open at either end.
    @inline(never)
    package mutating func feedAcrossCodePoints(_ p: UnsafePointer<UInt8>, _ n: Int,
                                       validate: @convention(c) (UnsafePointer<UInt8>?, Int) -> Bool) -> Bool {
        var s = state
        if s == Self.reject { return false }
        var i = 0
        // First the rest of a code point the previous call's bytes left open (at most 3 bytes).
        while s != Self.accept && i < n {
            s = Self.step(s, p[i])
            if s == Self.reject {
                state = s
                return false
            }
            i &+= 1
        }
        // Then every complete code point at once, in the vector kernel...
        let end = Self.endOfCompleteCodePoints(p, from: i, to: n)
        if end > i && !validate(p + i, end &- i) {
            state = Self.reject
            return false
        }
        // ...and the first bytes of one the input cuts off, through the state machine.
        i = end
        while i < n {
            s = Self.step(s, p[i])
            if s == Self.reject {
                state = s
                return false
            }
            i &+= 1
        }
        state = s
        return true
    }

    /// Where p[from..<n) stops holding whole code points: before a lead byte in the last three
    /// bytes whose sequence (RFC 3629 §4: the lead's high bits give its length) runs past `n`;
    /// else `n`. Bytes that cannot be valid need no care here: the kernel or the state machine
    /// rejects them either way.
    @inline(__always)
    package static func endOfCompleteCodePoints(_ p: UnsafePointer<UInt8>, from: Int, to n: Int) -> Int {
        var k = 1
        while k <= 3 && n &- k >= from {
            let b = p[n &- k]
            if b < 0x80 { return n }
            if b >= 0xC0 {
                let length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2
                return length > k ? n &- k : n
            }
            k &+= 1
        }
        return n
    }

    /// The reference `feed`: the state machine alone, byte by byte. The fuzzers and tests
    /// check the vector path against it.
    public mutating func feedReference(_ b: UnsafeRawBufferPointer) -> Bool {
        var s = state
        if s == Self.reject { return false }
        for byte in b {
            s = Self.step(s, byte)
            if s == Self.reject { break }
        }
        state = s
        return s != Self.reject
    }

    @inline(__always)
    @usableFromInline package static func step(_ s: UInt8, _ b: UInt8) -> UInt8 {
        switch s {
        case accept:
            switch b {
            case 0x00...0x7F: return accept
            case 0xC2...0xDF: return need1
            case 0xE0: return afterE0
            case 0xE1...0xEC, 0xEE, 0xEF: return need2
            case 0xED: return afterED
            case 0xF0: return afterF0
            case 0xF1...0xF3: return need3
            case 0xF4: return afterF4
            default: return reject  // 80–BF stray continuation, C0/C1 overlong, F5–FF
            }
        case need1: return (0x80...0xBF).contains(b) ? accept : reject
        case need2: return (0x80...0xBF).contains(b) ? need1 : reject
        case need3: return (0x80...0xBF).contains(b) ? need2 : reject
        case afterE0: return (0xA0...0xBF).contains(b) ? need1 : reject
        case afterED: return (0x80...0x9F).contains(b) ? need1 : reject
        case afterF0: return (0x90...0xBF).contains(b) ? need2 : reject
        case afterF4: return (0x80...0x8F).contains(b) ? need2 : reject
        default: return reject
        }
    }
}
