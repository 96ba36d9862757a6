import RelayCodecs

/// permessage-deflate on a connection (RFC 7692): negotiated at the upgrade, then messages are
/// inflated on the way in and deflated on the way out with the loop's one `DeflateCodec`.
/// Nothing here runs for a connection without the extension.
extension Connection {
    /// Accepts the first acceptable permessage-deflate offer of `head`, if any: call it only when
    /// answering the request with `.upgrade`, and add the returned header to the 101.
    public func acceptPerMessageDeflate(_ head: HTTPRequestHead) -> (String, String)? {
        guard state == .http, let agreement = PerMessageDeflate.negotiate(head.values("sec-websocket-extensions"))
        else { return nil }
        deflateWindowBits = UInt8(agreement.deflateWindowBits)
        wsParser.compressionNegotiated = true
        return ("Sec-WebSocket-Extensions", agreement.responseValue)
    }

    /// Inflates a compressed message and hands it to the delegate. The output is bounded by the
    /// message limit while inflating (a bomb is closed 1009 with at most that much produced) and
    /// charged to the loop's buffer budget as an assembly buffer is. False when the connection
    /// failed and reads no more frames.
    @inline(never)
    package func deliverCompressed(_ payload: UnsafeRawBufferPointer, opcode: Opcode) -> Bool {
        // After our close frame, messages are read only to reach the peer's close: not inflated.
        guard state == .open else { return true }
        // The parser's limit (the setting, capped at `Limits.maxMessageBytesCeiling`), so a
        // compressed message is bounded as an uncompressed one is. Charged to the loop, not to
        // `heldBytes` (which `syncHeldBytes` recomputes from the buffers), for the moment the
        // message is inflated and handled.
        var charged = 0
        let result = context.deflateCodec.inflate(payload, limit: wsParser.maxMessageBytes) { extra in
            guard admitHeldGrowth(extra) else { return false }
            charged += extra
            context.heldBytes += extra
            return true
        }
        defer { context.heldBytes -= charged }
        switch result {
        case .message(let buffer, let count, _):
            defer { buffer?.deallocate() }
            let message = UnsafeRawBufferPointer(start: buffer, count: count)
            if opcode == .text {
                // RFC 6455 §8.1 on the inflated text (RFC 7692 §6: extensions apply before it).
                var v = UTF8Validator()
                guard v.feed(message), v.isComplete else { return failCompressed(.invalidPayload) }
            }
            if state == .open { toDelegate { $0.connection(self, message: message, opcode: opcode) } }
            return true
        case .tooBig:
            return failCompressed(.messageTooBig)
        case .corrupt:
            return failCompressed(.invalidPayload)
        case .refused:
            return false  // shed by the budget: its close is already queued
        }
    }

    private func failCompressed(_ code: CloseCode) -> Bool {
        // RFC 6455 §7.1.7, as for a violation the parser finds.
        if state == .open {
            closeHandshake = .local(code, answer: nil)
            writeCloseFrame(code)
        }
        closeAfterFlush()
        return false
    }

    /// Queues a data message deflated (RSV1 set, RFC 7692 §7.2.1), or as is when that would
    /// not make it smaller.
    @inline(never)
    package func sendCompressed(opcode: Opcode, payload: UnsafeRawBufferPointer) {
        guard let (deflated, count) = context.deflateCodec.deflate(payload, windowBits: Int32(deflateWindowBits)) else {
            queueFrame(opcode: opcode, rsv1: false, payload: payload)
            return
        }
        queueFrame(opcode: opcode, rsv1: true, payload: UnsafeRawBufferPointer(start: deflated, count: count))
        deflated.deallocate()
    }

    /// `sendFrame(opcode:length:fill:)` for a compressing connection: the message is built in a
    /// scratch buffer, then deflated into the queue.
    @inline(never)
    package func sendCompressed(opcode: Opcode, length: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(length, 1), alignment: 16)
        defer { scratch.deallocate() }
        fill(scratch)
        sendCompressed(opcode: opcode, payload: UnsafeRawBufferPointer(start: scratch, count: length))
    }

    private func queueFrame(opcode: Opcode, rsv1: Bool, payload: UnsafeRawBufferPointer) {
        let h = FrameEncoder.headerLength(payloadLength: payload.count)
        output.reserve(h + payload.count, pool: context.pool)
        let p = output.writePointer
        let written = FrameEncoder.writeHeader(opcode: opcode, payloadLength: payload.count, into: p)
        if rsv1 { p.storeBytes(of: p.load(as: UInt8.self) | 0x40, as: UInt8.self) }
        if payload.count > 0 { (p + written).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        output.didWrite(written + payload.count)
        context.queuedBytes += written + payload.count
        didQueue()
    }
}
