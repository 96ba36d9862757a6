// TEMPORARY compile stubs for helper-delivered APIs; deleted at integration.
public enum Opcode: UInt8 { case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }
public enum WebSocketEvent {
    case needMore
    case message(opcode: Opcode, payload: UnsafeRawBufferPointer, consumed: Int)
    case fragment(consumed: Int)
    case ping(payload: UnsafeRawBufferPointer, consumed: Int)
    case pong(payload: UnsafeRawBufferPointer, consumed: Int)
    case close(code: CloseCode?, reason: UnsafeRawBufferPointer, consumed: Int)
    case violation(CloseCode)
}
public struct WebSocketParser {
    public init(maxMessageBytes: Int = Limits.maxMessageBytes, requireMasked: Bool = true) {}
    public mutating func next(_ input: UnsafeMutableRawBufferPointer) -> WebSocketEvent { fatalError() }
    public var isAssemblingMessage: Bool { false }
    public var bytesNeededForCurrentFrame: Int? { nil }
}
public enum FrameEncoder {
    public static func writeHeader(opcode: Opcode, fin: Bool = true, payloadLength: Int, into: UnsafeMutableRawPointer) -> Int { fatalError() }
    public static func headerLength(payloadLength: Int) -> Int { fatalError() }
    public static func frame(opcode: Opcode, payload: [UInt8]) -> [UInt8] { fatalError() }
    public static func closeFrame(code: CloseCode?, reason: [UInt8] = []) -> [UInt8] { fatalError() }
}
