import CEpoll

/// The WebSocket phase (RFC 6455, docs/protocol.md §4): reading frames and handing messages up.
extension Connection {
    // MARK: WebSocket phase

    func readWebSocket() {
        if input.isEmpty {
            let buf = context.readBuffer
            let r: IOResult<Int>
            do { r = try ioRead(buf, context.readBufferSize) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            bytesIn += n
            let consumed = processFrames(UnsafeMutableRawBufferPointer(start: buf, count: n))
            if consumed < n && (state == .open || state == .closeSent) {
                input.reserve(max(wsParser.bytesNeededForCurrentFrame ?? 0, n - consumed), pool: context.pool)
                input.append(pool: context.pool, buf + consumed, n - consumed)
            }
        } else {
            let need = (wsParser.bytesNeededForCurrentFrame ?? 0) - input.count
            input.reserve(max(need, 16 * 1024), pool: context.pool)
            let r: IOResult<Int>
            do { r = try ioRead(input.writePointer, input.writableCount) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            bytesIn += n
            input.didWrite(n)
            let consumed = processFrames(input.readable)
            // processFrames may have closed the connection and released the buffer.
            if state == .open || state == .closeSent { input.consume(consumed) }
            if input.isEmpty { input.release(to: context.pool) }
        }
    }

    /// Runs the frame parser over `bytes` until it needs more or the connection stops reading.
    /// Returns the number of bytes consumed.
    func processFrames(_ bytes: UnsafeMutableRawBufferPointer) -> Int {
        var offset = 0
        // A paused reader stops between frames; the rest stays buffered until it resumes.
        while (state == .open || state == .closeSent) && !readingPaused {
            let rest = UnsafeMutableRawBufferPointer(rebasing: bytes[offset...])
            switch wsParser.next(rest) {
            case .needMore:
                // A message (or its one frame) has begun arriving: docs/protocol.md §4's 30 s start here.
                if wsParser.isAssemblingMessage || wsParser.bytesNeededForCurrentFrame != nil { armAssemblyDeadline() }
                return offset
            case .message(let opcode, let payload, let consumed):
                offset += consumed
                assemblyDeadline = 0
                if state == .open { delegate.connection(self, message: payload, opcode: opcode) }
            case .fragment(let consumed):
                offset += consumed
                armAssemblyDeadline()
            case .ping(let payload, let consumed):
                offset += consumed
                // RFC 6455 §5.5.3: answer with a pong carrying the same application data. A peer
                // that pings without reading gets no more pongs once ours back up (§5.5.3 lets an
                // endpoint answer only the most recent ping), so pings cannot grow our queue.
                if state == .open && output.count < Connection.pongBacklogLimit {
                    sendFrame(opcode: .pong, payload: payload)
                }
            case .pong(_, let consumed):
                offset += consumed
                if state == .open {
                    pingOutstanding = false
                    pongDeadline = 0
                    delegate.connectionDidReceivePong(self)
                }
            case .close(let code, _, let consumed):
                offset += consumed
                peerCloseCode = code
                if state == .open {
                    // RFC 6455 §5.5.1: echo the status code; no code in, no code out.
                    closeInitiatedByPeer = true
                    localCloseCode = code
                    writeCloseFrame(code)
                }
                closeAfterFlush()
                return offset
            case .violation(let code):
                // RFC 6455 §7.1.7: fail the connection — send our close and drop it after flushing.
                if state == .open {
                    localCloseCode = code
                    writeCloseFrame(code)
                }
                closeAfterFlush()
                return offset
            }
        }
        return offset
    }

    /// Arms the message deadline once per message (a later frame of the same message keeps it).
    func armAssemblyDeadline() {
        guard assemblyDeadline == 0, state == .open else { return }
        assemblyDeadline = context.reactor.now + settings.messageAssemblyTimeoutMs
        schedule(.assemblyDeadline, at: assemblyDeadline)
    }

    /// Processes frames already buffered (behind the upgrade request, or held while paused).
    func drainBufferedFrames() {
        guard state == .open || state == .closeSent, !readingPaused, !input.isEmpty else { return }
        let consumed = processFrames(input.readable)
        if state == .open || state == .closeSent { input.consume(consumed) }
        if input.isEmpty { input.release(to: context.pool) }
    }

}
