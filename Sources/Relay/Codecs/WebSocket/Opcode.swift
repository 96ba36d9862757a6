/// Frame opcodes (RFC 6455 §5.2, §11.8). Values 3–7 and 11–15 are reserved: `Opcode(rawValue:)`
/// returns nil for them, and the parser answers 1002.
public enum Opcode: UInt8, Sendable {
    case continuation = 0
    case text = 1
    case binary = 2
    case close = 8
    case ping = 9
    case pong = 10

    /// Control frames have the high bit of the 4-bit opcode set (RFC 6455 §5.5).
    @inline(__always)
    public var isControl: Bool { rawValue & 0x08 != 0 }
}
