/// Server-side frame encoding (RFC 6455 §5.2). Server frames are never masked (§5.1).
public enum FrameEncoder {
    /// Header length for an unmasked frame: 2, 4 (16-bit length) or 10 (64-bit length).
    @inline(__always)
    public static func headerLength(payloadLength: Int) -> Int {
        payloadLength <= 125 ? 2 : (payloadLength <= 0xFFFF ? 4 : 10)
    }

    /// Writes an unmasked frame header into `into` (which must have room for
    /// `headerLength(payloadLength:)` bytes) and returns its length. Uses the minimal length
    /// encoding (§5.2 "the minimal number of bytes MUST be used").
    /// Inlinable: it runs for every frame queued, from the transport module.
    @inlinable @inline(__always)
    public static func writeHeader(
        opcode: Opcode, fin: Bool = true, payloadLength: Int, into: UnsafeMutableRawPointer
    ) -> Int {
        precondition(payloadLength >= 0)
        into.storeBytes(of: (fin ? 0x80 : 0) | opcode.rawValue, as: UInt8.self)
        if payloadLength <= 125 {
            into.storeBytes(of: UInt8(truncatingIfNeeded: payloadLength), toByteOffset: 1, as: UInt8.self)
            return 2
        }
        if payloadLength <= 0xFFFF {
            into.storeBytes(of: 126, toByteOffset: 1, as: UInt8.self)
            into.storeBytes(of: UInt16(truncatingIfNeeded: payloadLength).bigEndian, toByteOffset: 2, as: UInt16.self)
            return 4
        }
        into.storeBytes(of: 127, toByteOffset: 1, as: UInt8.self)
        into.storeBytes(of: UInt64(payloadLength).bigEndian, toByteOffset: 2, as: UInt64.self)
        return 10
    }

    /// Header plus payload length of the unmasked frame at the start of `bytes`, once its header
    /// is there (nil before): for walking frames already queued for writing.
    public static func frameLength(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 2 else { return nil }
        let len7 = Int(bytes[1] & 0x7F)
        if len7 < 126 { return 2 + len7 }
        if len7 == 126 {
            guard bytes.count >= 4 else { return nil }
            return 4 + (Int(bytes[2]) << 8 | Int(bytes[3]))
        }
        guard bytes.count >= 10 else { return nil }
        var n = 0
        for i in 2..<10 { n = n << 8 | Int(bytes[i]) }
        return 10 + n
    }

    /// A whole unmasked frame (tests, control frames; not the data path).
    public static func frame(opcode: Opcode, fin: Bool = true, payload: [UInt8]) -> [UInt8] {
        let h = headerLength(payloadLength: payload.count)
        var out = [UInt8](repeating: 0, count: h + payload.count)
        out.withUnsafeMutableBytes { raw in
            _ = writeHeader(opcode: opcode, fin: fin, payloadLength: payload.count, into: raw.baseAddress!)
            payload.withUnsafeBytes { src in
                if src.count > 0 { (raw.baseAddress! + h).copyMemory(from: src.baseAddress!, byteCount: src.count) }
            }
        }
        return out
    }

    /// A close frame (RFC 6455 §5.5.1): empty payload when `code` is nil, else the code
    /// big-endian followed by `reason` (caller keeps code + reason ≤ 125 bytes).
    public static func closeFrame(code: CloseCode?, reason: [UInt8] = []) -> [UInt8] {
        guard let code else { return frame(opcode: .close, payload: []) }
        precondition(reason.count <= Limits.maxControlPayload - 2, "close reason exceeds §5.5 control limit")
        return frame(opcode: .close, payload: [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xFF)] + reason)
    }

    /// A client-to-server frame, masked with `maskKey` (wire key bytes loaded little-endian, as
    /// in `Masking.unmask`). For tests and the bench tool.
    public static func maskedFrame(opcode: Opcode, fin: Bool = true, payload: [UInt8], maskKey: UInt32) -> [UInt8] {
        var out = frame(opcode: opcode, fin: fin, payload: payload)
        let h = headerLength(payloadLength: payload.count)
        out[1] |= 0x80
        let key: [UInt8] = [
            UInt8(truncatingIfNeeded: maskKey), UInt8(truncatingIfNeeded: maskKey >> 8),
            UInt8(truncatingIfNeeded: maskKey >> 16), UInt8(truncatingIfNeeded: maskKey >> 24),
        ]
        out.insert(contentsOf: key, at: h)
        out.withUnsafeMutableBytes { raw in
            Masking.unmask(UnsafeMutableRawBufferPointer(rebasing: raw[(h + 4)...]), key: maskKey)
        }
        return out
    }
}
