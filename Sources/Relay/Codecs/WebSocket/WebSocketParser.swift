/// Server-side RFC 6455 frame decoder and message assembler: a pure state machine over bytes
/// (bytes in, `.needMore | .message | .violation` out). No syscalls, no allocation for unfragmented frames.
///
/// Contract: `input` is every received byte not yet consumed, starting at a frame boundary.
/// The parser reports at most one event per call and never keeps a pointer into `input`; it
/// re-reads the (at most 14-byte) header on each call until the frame is complete, so the caller
/// must keep a frame's bytes until the event that consumes them (`bytesNeededForCurrentFrame`
/// says how many). Payloads are unmasked in place, so bytes must not be fed twice.
///
/// Every rule is checked the moment the bytes it depends on are present (RFC 6455 §5.2–§5.5,
/// docs/protocol.md §4): a bad first byte fails with 1 byte of input; an oversized length fails with the
/// length field, before the mask key or payload — a frame claiming 2^63−1 bytes is refused with
/// 10 bytes of input. Text payload is unmasked and UTF-8 validated as it arrives, so invalid
/// text fails fast even inside one large frame (RFC 6455 §8.1).
///
/// After a `.violation` the parser is failed for good: every later call returns the same
/// `.violation(code)` again and consumes nothing.
public struct WebSocketParser: ~Copyable {
    // Stored properties, the pointer first and the one- to three-byte ones together at the end;
    // the counters are 32-bit (all are bounded by the message limit, at most
    // `Limits.maxMessageBytesCeiling`): every connection embeds a parser for its lifetime
    // (docs/benchmarks.md, M1).

    // Fragmented-message assembly (§5.4).
    private var assembly: UnsafeMutableRawPointer?
    private var maxMessage32: UInt32
    private var assemblyCapacity32: UInt32 = 0
    private var assemblyCount32: UInt32 = 0

    // Current (incomplete) frame.
    private var currentFrameTotal32: Int32 = -1  // header + payload, once the length field is known
    private var textPayloadUnmasked32: UInt32 = 0  // payload bytes already unmasked and validated

    /// The code of the violation that failed the parser, 0 while none did (`failure`).
    private var failure16: UInt16 = 0
    /// `requireMasked`, `compressionNegotiated`, `assemblingCompressed`: one bit each, as only
    /// the general frame path reads them (the small-message one does not).
    private var flags: UInt8
    /// The last `.message` carried RSV1: its payload is deflated and the caller inflates (and,
    /// for text, UTF-8-validates) it.
    public private(set) var lastMessageCompressed = false
    private var assemblingOpcode: Opcode?      // .text/.binary between first and final fragment
    /// The last `.message` pointed into `assembly`; free it at the next call (not before: the
    /// payload must stay valid until then). Idle connections hold no buffers.
    private var releaseAssemblyOnNextCall = false
    /// UTF-8 state of the text message in progress; reset at every message boundary.
    private var utf8 = UTF8Validator()

    /// The message limit (docs/protocol.md §4), at most `Limits.maxMessageBytesCeiling`.
    public var maxMessageBytes: Int {
        @inline(__always) get { Int(maxMessage32) }
    }
    private var assemblyCapacity: Int {
        @inline(__always) get { Int(assemblyCapacity32) }
        @inline(__always) set { assemblyCapacity32 = UInt32(truncatingIfNeeded: newValue) }
    }
    private var assemblyCount: Int {
        @inline(__always) get { Int(assemblyCount32) }
        @inline(__always) set { assemblyCount32 = UInt32(truncatingIfNeeded: newValue) }
    }
    /// -1 until the frame's length field is known.
    private var currentFrameTotal: Int {
        @inline(__always) get { Int(currentFrameTotal32) }
        @inline(__always) set { currentFrameTotal32 = Int32(truncatingIfNeeded: newValue) }
    }
    private var textPayloadUnmasked: Int {
        @inline(__always) get { Int(textPayloadUnmasked32) }
        @inline(__always) set { textPayloadUnmasked32 = UInt32(truncatingIfNeeded: newValue) }
    }

    private static let requireMaskedFlag: UInt8 = 1
    private static let compressionNegotiatedFlag: UInt8 = 2
    private static let assemblingCompressedFlag: UInt8 = 4

    /// Server role (RFC 6455 §5.1): client frames must be masked. When false (client role or
    /// tests), masked and unmasked frames are both accepted.
    public var requireMasked: Bool { flags & Self.requireMaskedFlag != 0 }
    /// permessage-deflate was negotiated (RFC 7692 §6): RSV1 on the first frame of a data message
    /// marks it compressed. Without it every RSV bit is a protocol error (RFC 6455 §5.2).
    public var compressionNegotiated: Bool {
        get { flags & Self.compressionNegotiatedFlag != 0 }
        set { setFlag(Self.compressionNegotiatedFlag, newValue) }
    }
    /// The message in assembly had RSV1 on its first frame (RFC 7692 §6.1).
    private var assemblingCompressed: Bool {
        get { flags & Self.assemblingCompressedFlag != 0 }
        set { setFlag(Self.assemblingCompressedFlag, newValue) }
    }
    private var failure: CloseCode? {
        get { failure16 == 0 ? nil : CloseCode(failure16) }
        set { failure16 = newValue?.rawValue ?? 0 }
    }

    private mutating func setFlag(_ flag: UInt8, _ on: Bool) {
        flags = on ? flags | flag : flags & ~flag
    }

    /// `maxMessageBytes` above `Limits.maxMessageBytesCeiling` is lowered to it.
    public init(maxMessageBytes: Int = Limits.maxMessageBytes, requireMasked: Bool = true) {
        precondition(maxMessageBytes >= 0)
        self.maxMessage32 = UInt32(min(maxMessageBytes, Limits.maxMessageBytesCeiling))
        self.flags = requireMasked ? Self.requireMaskedFlag : 0
    }

    deinit { assembly?.deallocate() }

    /// True between the first fragment of a message and its final one (docs/protocol.md §4 30 s deadline).
    public var isAssemblingMessage: Bool { assemblingOpcode != nil }

    /// Header + payload bytes the caller must hold before the current frame can complete; nil
    /// until the frame's length field has been received.
    public var bytesNeededForCurrentFrame: Int? { currentFrameTotal >= 0 ? currentFrameTotal : nil }

    /// Bytes currently held by the assembly buffer (for tests and metrics).
    public var assemblyBufferCapacity: Int { assemblyCapacity }

    /// Forgets the message and frame in progress and frees the assembly buffer at once, for a
    /// connection that reads no more frames (it is closing). A later call must start at a frame
    /// boundary.
    public mutating func discardMessage() {
        releaseAssembly()
        releaseAssemblyOnNextCall = false
        assemblingOpcode = nil
        assemblingCompressed = false
        utf8.reset()
        currentFrameTotal = -1
        textPayloadUnmasked = 0
    }

    /// True between messages with nothing pending: a call on empty input would only answer
    /// `.needMore` (the caller may skip it).
    public var isAtMessageBoundary: Bool { assemblingOpcode == nil && !releaseAssemblyOnNextCall }

    /// Decodes at most one event from `input`. Unmasks in place. Advance the read index by the
    /// event's `consumed` and call again until `.needMore` or `.violation`.
    public mutating func next(_ input: UnsafeMutableRawBufferPointer) -> WebSocketEvent {
        if let event = nextSmallMessage(input) { return event }
        return nextFrame(input)
    }

    /// The common frame on its own: a whole, final, masked text or binary frame of ≤ 65,535
    /// bytes (a 7- or 16-bit length) outside a fragmented message, no RSV bit (RFC 6455 §5.2).
    /// Every rule `nextFrame` checks holds for it by construction, except the size limit and
    /// UTF-8, checked here; anything else (or nil) goes the general way.
    @inline(__always)
    private mutating func nextSmallMessage(_ input: UnsafeMutableRawBufferPointer) -> WebSocketEvent? {
        guard input.count >= 6, let base = input.baseAddress, assemblingOpcode == nil,
              !releaseAssemblyOnNextCall, textPayloadUnmasked == 0, failure16 == 0 else { return nil }
        let b0 = base.load(as: UInt8.self)
        let b1 = base.load(fromByteOffset: 1, as: UInt8.self)
        // FIN + text (0x81) or FIN + binary (0x82); MASK + a 7-bit length < 126, or 126 and a
        // 16-bit length (§5.2: a 64-bit one goes the general way).
        guard b0 == 0x81 || b0 == 0x82, b1 & 0x80 != 0, b1 <= 0x80 | 126 else { return nil }
        var length = Int(b1 & 0x7F)
        var header = 6
        if length == 126 {
            length = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            header = 8
        }
        guard length <= maxMessageBytes, input.count >= header + length else { return nil }
        let key = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: header - 4, as: UInt32.self))
        let payload = UnsafeMutableRawBufferPointer(start: base + header, count: length)
        let ascii = Masking.unmask(payload, key: key)
        currentFrameTotal = -1
        lastMessageCompressed = false
        if b0 == 0x81 {
            // RFC 6455 §8.1: a text message is valid UTF-8 that ends on a code point; ASCII is.
            guard ascii || (utf8.feed(UnsafeRawBufferPointer(payload)) && utf8.isComplete) else {
                return fail(.invalidPayload)
            }
            return .message(opcode: .text, payload: UnsafeRawBufferPointer(payload), consumed: header + length)
        }
        return .message(opcode: .binary, payload: UnsafeRawBufferPointer(payload), consumed: header + length)
    }

    private mutating func nextFrame(_ input: UnsafeMutableRawBufferPointer) -> WebSocketEvent {
        if let failure { return .violation(failure) }
        if releaseAssemblyOnNextCall {
            releaseAssemblyOnNextCall = false
            releaseAssembly()
        }
        let n = input.count
        guard n >= 1, let base = input.baseAddress else { return .needMore }

        // Byte 0: FIN, RSV1–3, opcode (§5.2).
        let b0 = base.load(as: UInt8.self)
        let fin = b0 & 0x80 != 0
        // Reserved opcodes 3–7 and 11–15 (§5.2, §10.7).
        guard let opcode = Opcode(rawValue: b0 & 0x0F) else { return fail(.protocolError) }
        // RSV bits MUST be 0 unless an extension gives them a meaning (§5.2).
        var compressed = opcode == .continuation && assemblingCompressed
        if b0 & 0x70 != 0 {
            guard rsv1MarksCompression(b0, opcode) else { return fail(.protocolError) }
            compressed = true
        }
        let isControl = opcode.isControl
        if isControl {
            // Control frames MUST NOT be fragmented (§5.5); they may interleave with fragments (§5.4).
            if !fin { return fail(.protocolError) }
        } else if opcode == .continuation {
            if assemblingOpcode == nil { return fail(.protocolError) }  // nothing to continue (§5.4)
        } else if assemblingOpcode != nil {
            return fail(.protocolError)  // new message inside a fragmented one (§5.4)
        }

        guard n >= 2 else { return .needMore }
        // Byte 1: MASK, 7-bit length (§5.2).
        let b1 = base.load(fromByteOffset: 1, as: UInt8.self)
        let masked = b1 & 0x80 != 0
        // A server MUST close on an unmasked client frame (§5.1).
        if requireMasked && !masked { return fail(.protocolError) }
        let len7 = Int(b1 & 0x7F)
        var headerLength: Int
        let payloadLength: Int
        if isControl {
            // Control payloads are ≤ 125 bytes (§5.5), so they never use an extended length.
            if len7 > Limits.maxControlPayload { return fail(.protocolError) }
            // A close body is empty or starts with a 2-byte code (§5.5.1).
            if opcode == .close && len7 == 1 { return fail(.protocolError) }
            payloadLength = len7
            headerLength = 2
        } else if len7 < 126 {
            payloadLength = len7
            headerLength = 2
        } else if len7 == 126 {
            guard n >= 4 else { return .needMore }
            payloadLength = Int(UInt16(bigEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            headerLength = 4
            // Non-minimal encodings are accepted: §5.2 binds the sender only.
        } else {
            guard n >= 10 else { return .needMore }
            let v = UInt64(bigEndian: base.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            // "the most significant bit MUST be 0" (§5.2).
            if v >> 63 != 0 { return fail(.protocolError) }
            payloadLength = Int(v)
            headerLength = 10
        }
        // docs/protocol.md §4 message limit, checked on the header so no byte of an oversized message is
        // buffered. `assemblyCount` is 0 outside a fragmented message; subtract to avoid overflow.
        if !isControl && payloadLength > maxMessageBytes - assemblyCount {
            return fail(.messageTooBig)
        }
        if masked { headerLength += 4 }
        currentFrameTotal = headerLength + payloadLength
        guard n >= headerLength else { return .needMore }

        let key = masked ? UInt32(littleEndian: base.loadUnaligned(fromByteOffset: headerLength - 4, as: UInt32.self)) : 0
        let payloadBase = base + headerLength
        // Compressed text is validated by the caller once inflated.
        let isText = (opcode == .text || (opcode == .continuation && assemblingOpcode == .text)) && !compressed

        if n - headerLength < payloadLength {
            // Partial frame. Text is unmasked and validated as it arrives so invalid UTF-8 fails
            // fast (§8.1); other payloads wait until the frame is complete.
            let available = n - headerLength
            if isText && available > textPayloadUnmasked {
                let fresh = UnsafeMutableRawBufferPointer(
                    start: payloadBase + textPayloadUnmasked, count: available - textPayloadUnmasked)
                let ascii = masked && Masking.unmask(fresh, key: key, offset: textPayloadUnmasked)
                textPayloadUnmasked = available
                if !utf8.feed(UnsafeRawBufferPointer(fresh), knownASCII: ascii) { return fail(.invalidPayload) }
            }
            return .needMore
        }

        // The frame is complete.
        let consumed = headerLength + payloadLength
        let done = textPayloadUnmasked
        currentFrameTotal = -1
        textPayloadUnmasked = 0
        let rest = UnsafeMutableRawBufferPointer(start: payloadBase + done, count: payloadLength - done)
        let ascii = masked && Masking.unmask(rest, key: key, offset: done)
        let payload = UnsafeRawBufferPointer(start: payloadBase, count: payloadLength)

        switch opcode {
        case .ping:
            return .ping(payload: payload, consumed: consumed)
        case .pong:
            return .pong(payload: payload, consumed: consumed)
        case .close:
            return closeEvent(payload, consumed: consumed)
        case .text, .binary, .continuation:
            break
        }

        if isText && !utf8.feed(UnsafeRawBufferPointer(rest), knownASCII: ascii) { return fail(.invalidPayload) }
        if fin && isText && !utf8.isComplete { return fail(.invalidPayload) }  // ends mid code point

        if let messageOpcode = assemblingOpcode {
            append(payload)
            guard fin else { return .fragment(consumed: consumed) }
            assemblingOpcode = nil
            assemblingCompressed = false
            lastMessageCompressed = compressed
            utf8.reset()
            releaseAssemblyOnNextCall = true
            let assembled = UnsafeRawBufferPointer(start: assembly, count: assemblyCount)
            assemblyCount = 0
            return .message(opcode: messageOpcode, payload: assembled, consumed: consumed)
        }
        if fin {
            utf8.reset()
            lastMessageCompressed = compressed
            return .message(opcode: opcode, payload: payload, consumed: consumed)
        }
        assemblingOpcode = opcode
        assemblingCompressed = compressed
        append(payload)
        return .fragment(consumed: consumed)
    }

    /// RFC 7692 §6: with permessage-deflate, RSV1 (and only RSV1) may be set, and only on the
    /// first frame of a data message (§6.1: not on control frames or continuations).
    @inline(never)
    private func rsv1MarksCompression(_ b0: UInt8, _ opcode: Opcode) -> Bool {
        compressionNegotiated && b0 & 0x70 == 0x40 && (opcode == .text || opcode == .binary)
    }

    /// Validates a complete close body (§5.5.1, §7.4): code valid on the wire, reason UTF-8.
    private mutating func closeEvent(_ payload: UnsafeRawBufferPointer, consumed: Int) -> WebSocketEvent {
        guard payload.count >= 2 else {
            return .close(code: nil, reason: UnsafeRawBufferPointer(start: payload.baseAddress, count: 0), consumed: consumed)
        }
        let code = CloseCode(UInt16(payload[0]) << 8 | UInt16(payload[1]))
        if !code.isValidOnWire { return fail(.protocolError) }
        let reason = UnsafeRawBufferPointer(rebasing: payload[2...])
        // A separate validator: a close may arrive between fragments of a text message.
        var v = UTF8Validator()
        if !v.feed(reason) || !v.isComplete { return fail(.protocolError) }
        return .close(code: code, reason: reason, consumed: consumed)
    }

    private mutating func fail(_ code: CloseCode) -> WebSocketEvent {
        failure = code
        currentFrameTotal = -1
        return .violation(code)
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        let needed = assemblyCount + bytes.count
        if needed > assemblyCapacity {
            // Geometric growth, capped at the message limit (which `needed` never exceeds).
            let grown = max(needed, min(max(assemblyCapacity * 2, 4096), maxMessageBytes))
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
            if let old = assembly {
                fresh.copyMemory(from: old, byteCount: assemblyCount)
                old.deallocate()
            }
            assembly = fresh
            assemblyCapacity = grown
        }
        if let src = bytes.baseAddress, bytes.count > 0 {
            (assembly! + assemblyCount).copyMemory(from: src, byteCount: bytes.count)
        }
        assemblyCount = needed
    }

    private mutating func releaseAssembly() {
        assembly?.deallocate()
        assembly = nil
        assemblyCapacity = 0
        assemblyCount = 0
    }
}
