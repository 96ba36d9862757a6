import FuzzSupport
import RelayCodecs

// libFuzzer body for the WebSocket frame parser (compiled in every build so it stays type-checked;
// only the FUZZING build exports it through LLVMFuzzerTestOneInput, see main.swift).
//
// Input layout: byte 0 = options, bytes 1–2 = chunk-size seed, rest = the client byte stream.
// The stream is parsed twice — all at once and in pseudo-random chunk sizes — and the two event
// sequences must be identical (the parser's contract: chunking never changes the outcome).
// Option bit 0x20 negotiates permessage-deflate (RFC 7692): compressed messages are inflated
// with the relay's codec, whose output must stay within the message limit.
// Every input also goes through `SIMDDifferential.check`: the unmask and UTF-8 kernels (and
// the rest) of every vector level must agree with the Swift reference code on it.

/// The loop's one codec, as a connection would use it (reset per message).
nonisolated(unsafe) let fuzzCodec = DeflateCodec()

/// Folds everything observable about an event sequence into one number.
struct EventDigest: Equatable {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    var events = 0
    var consumed = 0

    mutating func mix(_ v: UInt64) {
        hash = (hash ^ v) &* 0x0000_0100_0000_01B3
    }

    mutating func mix(_ bytes: UnsafeRawBufferPointer) {
        mix(UInt64(bytes.count))
        for b in bytes { mix(UInt64(b)) }
    }
}

/// Checks the per-event invariants and folds the event into `d`.
func record(_ e: WebSocketEvent, input: UnsafeMutableRawBufferPointer, parser: borrowing WebSocketParser,
            into d: inout EventDigest) -> (consumed: Int, stop: Bool, failed: Bool) {
    func checkConsumed(_ c: Int) {
        precondition(c >= 2 && c <= input.count, "consumed \(c) of \(input.count)")
    }
    d.events += 1
    switch e {
    case .needMore:
        if let need = parser.bytesNeededForCurrentFrame { precondition(need > input.count, "needMore with \(need) ≤ \(input.count)") }
        d.events -= 1
        return (0, true, false)
    case .violation(let code):
        d.mix(0x100 | UInt64(code.rawValue))
        return (0, true, true)
    case .message(let op, let payload, let c):
        checkConsumed(c)
        precondition(payload.count <= parser.maxMessageBytes)
        precondition(op == .text || op == .binary)
        d.mix(0x200 | UInt64(op.rawValue)); d.mix(payload); d.mix(UInt64(c))
        if parser.lastMessageCompressed {
            precondition(parser.compressionNegotiated, "RSV1 accepted without the extension")
            inflateChecked(payload, limit: parser.maxMessageBytes, into: &d)
        } else if op == .text {
            precondition(String(validating: payload, as: UTF8.self) != nil, "invalid UTF-8 passed")
        }
        return (c, false, false)
    case .fragment(let c):
        checkConsumed(c)
        precondition(parser.isAssemblingMessage)
        d.mix(0x300); d.mix(UInt64(c))
        return (c, false, false)
    case .ping(let payload, let c), .pong(let payload, let c):
        checkConsumed(c)
        precondition(payload.count <= 125)
        if case .ping = e { d.mix(0x400) } else { d.mix(0x500) }
        d.mix(payload); d.mix(UInt64(c))
        return (c, false, false)
    case .close(let code, let reason, let c):
        checkConsumed(c)
        if let code { precondition(code.isValidOnWire) } else { precondition(reason.count == 0) }
        precondition(String(validating: reason, as: UTF8.self) != nil)
        d.mix(0x600 | UInt64(code?.rawValue ?? 0)); d.mix(reason); d.mix(UInt64(c))
        return (c, false, false)
    }
}

/// Inflates a compressed message: never more than `limit` bytes granted or produced.
func inflateChecked(_ payload: UnsafeRawBufferPointer, limit: Int, into d: inout EventDigest) {
    var granted = 0
    switch fuzzCodec.inflate(payload, limit: limit, grow: { granted += $0; return true }) {
    case .message(let p, let count, let capacity):
        precondition(count <= limit && capacity <= limit && granted == capacity, "inflate past the limit")
        d.mix(0x700); d.mix(UnsafeRawBufferPointer(start: p, count: count))
        p?.deallocate()
    case .tooBig:
        precondition(granted <= limit)
        d.mix(0x701)
    case .corrupt:
        d.mix(0x702)
    case .refused:
        preconditionFailure("grow always agrees here")
    }
}

/// Runs one parser over `buffer`, revealing it `chunk()` bytes at a time, like a connection
/// that keeps every unconsumed byte in one buffer.
func run(_ buffer: UnsafeMutableRawBufferPointer, maxMessageBytes: Int, requireMasked: Bool,
         compression: Bool, chunk: () -> Int) -> EventDigest {
    var parser = WebSocketParser(maxMessageBytes: maxMessageBytes, requireMasked: requireMasked)
    parser.compressionNegotiated = compression
    var d = EventDigest()
    var start = 0
    var received = 0
    while received < buffer.count {
        received = min(buffer.count, received + chunk())
        while true {
            let input = UnsafeMutableRawBufferPointer(rebasing: buffer[start..<received])
            let (c, stop, failed) = record(parser.next(input), input: input, parser: parser, into: &d)
            start += c
            d.consumed += c
            if failed { return d }  // the parser is failed for good; the caller would stop reading
            if stop { break }
        }
    }
    return d
}

func fuzzFrame(_ data: UnsafeRawBufferPointer) {
    SIMDDifferential.check(data)
    guard data.count >= 3 else { return }
    let options = data[0]
    let requireMasked = options & 0x01 == 0
    // Small limits exercise 1009 paths with small inputs.
    let maxMessageBytes = options & 0x02 == 0 ? Limits.maxMessageBytes : Int(data[1])
    let maxChunk = [1, 3, 16, 64, 512, 4096, 1 << 20, 7][Int(options >> 2) & 7]
    let compression = options & 0x20 != 0
    var seed = UInt32(data[1]) << 8 | UInt32(data[2]) | 0x1_0000
    let stream = UnsafeRawBufferPointer(rebasing: data[3...])

    let a = UnsafeMutableRawBufferPointer.allocate(byteCount: stream.count, alignment: 1)
    let b = UnsafeMutableRawBufferPointer.allocate(byteCount: stream.count, alignment: 1)
    defer { a.deallocate(); b.deallocate() }
    a.copyMemory(from: stream)
    b.copyMemory(from: stream)

    let whole = run(a, maxMessageBytes: maxMessageBytes, requireMasked: requireMasked, compression: compression) { Int.max / 2 }
    let chunked = run(b, maxMessageBytes: maxMessageBytes, requireMasked: requireMasked, compression: compression) {
        seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5
        return 1 + Int(seed % UInt32(maxChunk))
    }
    precondition(whole == chunked, "chunking changed the events: \(whole) vs \(chunked)")
    sink(whole)
}
