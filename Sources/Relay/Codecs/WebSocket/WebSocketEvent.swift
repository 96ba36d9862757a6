/// One result of `WebSocketParser.next(_:)`. Payload pointers are valid only until the next call
/// to `next` (they point into the caller's input or the parser's assembly buffer).
public enum WebSocketEvent {
    /// No complete event in the input; nothing was consumed.
    case needMore
    /// A complete data message (text or binary), unmasked.
    /// Unfragmented: `payload` points INTO the caller's input buffer (zero copy, unmasked in place).
    /// Fragmented: `payload` points into the parser's own assembly buffer.
    case message(opcode: Opcode, payload: UnsafeRawBufferPointer, consumed: Int)
    /// A non-final data fragment was absorbed into the assembly buffer.
    case fragment(consumed: Int)
    case ping(payload: UnsafeRawBufferPointer, consumed: Int)
    case pong(payload: UnsafeRawBufferPointer, consumed: Int)
    /// The peer's close frame (validated, RFC 6455 §5.5.1). `code` is nil when the payload was empty.
    case close(code: CloseCode?, reason: UnsafeRawBufferPointer, consumed: Int)
    /// A protocol violation: send a close frame with this code and stop reading.
    case violation(CloseCode)
}
