@testable import RelayCodecs

/// An event with its payload copied out, so events can be compared after the buffer moves on.
enum Recorded: Equatable, CustomStringConvertible {
    case message(Opcode, [UInt8])
    case fragment
    case ping([UInt8])
    case pong([UInt8])
    case close(UInt16?, [UInt8])
    case violation(UInt16)

    var description: String {
        switch self {
        case .message(let o, let p): return "message(\(o), \(p.count)B)"
        case .fragment: return "fragment"
        case .ping(let p): return "ping(\(p))"
        case .pong(let p): return "pong(\(p))"
        case .close(let c, let r): return "close(\(c.map(String.init) ?? "nil"), \(r))"
        case .violation(let c): return "violation(\(c))"
        }
    }
}

/// Plays the caller of `WebSocketParser.next`: keeps every received, unconsumed byte in one
/// buffer, receives `stream` in chunks of the given sizes (cycled), and drains events after each
/// chunk. Stops at the first violation. Returns the events and the total consumed.
func drive(_ stream: [UInt8], chunks: [Int] = [Int.max], parser: inout WebSocketParser) -> (events: [Recorded], consumed: Int) {
    var buffer: [UInt8] = []
    var start = 0
    var fed = 0
    var chunkIndex = 0
    var events: [Recorded] = []
    var consumed = 0
    repeat {
        let size = min(max(chunks[chunkIndex % chunks.count], 1), stream.count - fed)
        chunkIndex += 1
        buffer.append(contentsOf: stream[fed..<(fed + size)])
        fed += size
        while true {
            var stop = false
            var advance = 0
            buffer.withUnsafeMutableBytes { raw in
                let input = UnsafeMutableRawBufferPointer(rebasing: raw[start...])
                switch parser.next(input) {
                case .needMore:
                    stop = true
                case .message(let op, let p, let c):
                    events.append(.message(op, Array(p))); advance = c
                case .fragment(let c):
                    events.append(.fragment); advance = c
                case .ping(let p, let c):
                    events.append(.ping(Array(p))); advance = c
                case .pong(let p, let c):
                    events.append(.pong(Array(p))); advance = c
                case .close(let code, let r, let c):
                    events.append(.close(code?.rawValue, Array(r))); advance = c
                case .violation(let code):
                    events.append(.violation(code.rawValue)); stop = true
                }
            }
            start += advance
            consumed += advance
            if case .violation = events.last { return (events, consumed) }
            if stop { break }
        }
    } while fed < stream.count
    return (events, consumed)
}

/// Events for `stream` fed all at once, with a fresh parser.
func events(_ stream: [UInt8], maxMessageBytes: Int = Limits.maxMessageBytes, requireMasked: Bool = true) -> [Recorded] {
    var p = WebSocketParser(maxMessageBytes: maxMessageBytes, requireMasked: requireMasked)
    return drive(stream, parser: &p).events
}

let testKey: UInt32 = 0x3D21_FA37  // wire bytes 37 FA 21 3D (RFC 6455 §5.7 example)

func masked(_ op: Opcode, _ payload: [UInt8], fin: Bool = true, key: UInt32 = testKey) -> [UInt8] {
    FrameEncoder.maskedFrame(opcode: op, fin: fin, payload: payload, maskKey: key)
}

func closeBody(_ code: UInt16, _ reason: [UInt8] = []) -> [UInt8] {
    [UInt8(code >> 8), UInt8(code & 0xFF)] + reason
}
