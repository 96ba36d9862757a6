import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// The WebSocket phase (RFC 6455, docs/protocol.md §4): reading frames and handing messages up.
extension Connection {
    // MARK: WebSocket phase

    /// Inlined into its one caller, `dispatchRead`: one call frame less per read.
    @inline(__always)
    package func readWebSocket() {
        if input.isEmpty {
            let buf = context.readBuffer
            let r: IOResult<Int>
            do { r = try ioRead(buf, context.readBufferSize) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            let consumed = processFrames(UnsafeMutableRawBufferPointer(start: buf, count: n))
            if consumed < n && (state == .open || state == .closeSent) {
                // The partial frame (or frames a pause left unread) moves to our own buffer.
                let rest = n - consumed
                guard growInput(to: inputCapacityTarget(holding: rest)) else { return }
                input.append(buf + consumed, rest)
            }
        } else {
            guard growInput(to: inputCapacityTarget(holding: input.count)) else { return }
            let r: IOResult<Int>
            do { r = try ioRead(input.writePointer, input.writableCount) } catch { peerGone(); return }
            guard case .done(let n) = r else { return }
            if n == 0 { peerGone(); return }
            input.didWrite(n)
            let consumed = processFrames(input.readable)
            // processFrames may have closed the connection and released the buffer.
            if state == .open || state == .closeSent { consumeInput(consumed) }
        }
        syncHeldBytes()
    }

    /// Runs the frame parser over `bytes` until it needs more or the connection stops reading.
    /// Returns the number of bytes consumed.
    package func processFrames(_ bytes: UnsafeMutableRawBufferPointer) -> Int {
        var offset = 0
        // A paused reader stops between frames; the rest stays buffered until it resumes.
        while (state == .open || state == .closeSent) && !backpressure.readingPaused {
            // Every byte used at a message boundary: nothing to parse, no deadline to arm.
            if offset == bytes.count && wsParser.isAtMessageBoundary { return offset }
            let rest = UnsafeMutableRawBufferPointer(rebasing: bytes[offset...])
            switch wsParser.next(rest) {
            case .needMore:
                // A message (or its first byte) has begun arriving: the 30 s message deadline
                // starts here, so no partial frame, not even a header, holds its buffer longer.
                if wsParser.isAssemblingMessage || offset < bytes.count { armAssemblyDeadline() }
                return offset
            case .message(let opcode, let payload, let consumed):
                offset += consumed
                deadlines.assembly = .unarmed
                if wsParser.lastMessageCompressed {
                    guard deliverCompressed(payload, opcode: opcode) else { return offset }
                } else if state == .open {
                    toDelegate { $0.connection(self, message: payload, opcode: opcode) }
                }
            case .fragment(let consumed):
                offset += consumed
                armAssemblyDeadline()
                // The assembly may have grown: charge it now (the budget may shed this connection).
                syncHeldBytes()
            case .ping(let payload, let consumed):
                offset += consumed
                // A whole control frame outside a fragmented message leaves nothing pending.
                if !wsParser.isAssemblingMessage { deadlines.assembly = .unarmed }
                // RFC 6455 §5.5.3: answer with a pong carrying the same application data. A peer
                // that pings without reading gets no more pongs once ours back up (§5.5.3 lets an
                // endpoint answer only the most recent ping), so pings cannot grow our queue.
                if state == .open && output.count < Connection.pongBacklogLimit {
                    sendFrame(opcode: .pong, payload: payload)
                }
            case .pong(_, let consumed):
                offset += consumed
                if !wsParser.isAssemblingMessage { deadlines.assembly = .unarmed }
                if state == .open {
                    deadlines.pong = .unarmed
                    delegate.connectionDidReceivePong(self)
                }
            case .close(let code, _, let consumed):
                offset += consumed
                if state == .open {
                    // RFC 6455 §5.5.1: echo the status code; no code in, no code out.
                    closeHandshake = .peer(code)
                    writeCloseFrame(code)
                } else {
                    closeHandshake.peerSent(code)
                }
                closeAfterFlush()
                return offset
            case .violation(let code):
                // RFC 6455 §7.1.7: fail the connection — send our close and drop it after flushing.
                if state == .open {
                    closeHandshake = .local(code, answer: nil)
                    writeCloseFrame(code)
                }
                closeAfterFlush()
                return offset
            }
        }
        return offset
    }

    /// Arms the message deadline once per message (a later frame of the same message keeps it).
    package func armAssemblyDeadline() {
        guard !deadlines.assembly.isArmed, state == .open else { return }
        let at = due(in: settings.messageAssemblyTimeoutMs)
        deadlines.assembly = ShortDeadline(ms: at)
        schedule(.assemblyDeadline, at: at)
    }

    /// Processes frames already buffered (behind the upgrade request, or held while paused).
    package func drainBufferedFrames() {
        guard state == .open || state == .closeSent, !backpressure.readingPaused, !input.isEmpty else { return }
        let consumed = processFrames(input.readable)
        if state == .open || state == .closeSent { consumeInput(consumed) }
        syncHeldBytes()
    }

    // MARK: memory held by unfinished messages

    /// The close reason of a connection shed because the loop's buffers are over budget.
    public static let bufferBudgetReason = "memory budget exceeded"

    /// Input capacity for `count` buffered bytes of a partial frame: twice what arrived (at least
    /// `Limits.inputGrowthStep` more), never past the frame. The buffer, and its charge against
    /// the budget, follow the bytes the peer sent, not the length its header announced.
    package func inputCapacityTarget(holding count: Int) -> Int {
        let step = count + Limits.inputGrowthStep
        guard let frame = wsParser.bytesNeededForCurrentFrame, frame > count else { return step }
        return min(max(2 * count, step), frame)
    }

    /// Makes room in `input` for `target - count` more bytes, growing it to exactly `target`
    /// within the budget. False when the budget shed this connection instead.
    package func growInput(to target: Int) -> Bool {
        if target > input.capacity {
            guard admitHeldGrowth(target - input.capacity) else { return false }
            input.resize(to: target, pool: context.pool)
            syncHeldBytes()
        } else if input.writableCount < target - input.count {
            input.compact()
        }
        return true
    }

    /// Drops consumed input. An emptied buffer goes back at once; one much larger than the
    /// partial frame left in it shrinks, so a finished large message frees its memory now.
    package func consumeInput(_ n: Int) {
        input.consume(n)
        if input.isEmpty {
            input.release(to: context.pool)
        } else {
            let target = inputCapacityTarget(holding: input.count)
            if input.capacity > 2 * target { input.resize(to: target, pool: context.pool) }
        }
    }

    /// Frees input and the message in assembly: the connection reads no more frames.
    package func releaseInput() {
        input.release(to: context.pool)
        wsParser.discardMessage()
        syncHeldBytes()
    }

    /// Brings this connection's share of `context.heldBytes` up to date (a few loads when
    /// nothing changed: it runs once per read).
    @inline(__always)
    package func syncHeldBytes() {
        let held = input.capacity + wsParser.assemblyBufferCapacity
        if held != heldBytes { heldBytesChanged(to: held) }
    }

    @inline(never)
    package func heldBytesChanged(to held: Int) {
        let delta = held - heldBytes
        heldBytes = held
        context.heldBytes += delta
        if delta < -context.pool.blockSize {
            context.noteReleased(-delta)
        } else if delta > 0 && context.bufferedBytes > context.bufferBudget {
            // Fragments were assembled past the budget: shed holders now.
            _ = makeBufferRoom(0)
        }
    }

    /// Asks for `extra` more held bytes within the budget. False when this connection was shed
    /// to stay within it.
    @inline(__always)
    package func admitHeldGrowth(_ extra: Int) -> Bool {
        context.bufferedBytes + extra <= context.bufferBudget || makeBufferRoom(extra)
    }

    /// Over the budget: the delegate sheds the largest holders (this one included) until `extra`
    /// fits; if it cannot free enough, this connection goes. False when it did.
    @inline(never)
    package func makeBufferRoom(_ extra: Int) -> Bool {
        delegate.connection(self, needsBufferRoom: extra)
        guard state == .open || state == .closeSent else { return false }
        if context.bufferedBytes + extra <= context.bufferBudget { return true }
        shed(code: .internalError, reason: Connection.bufferBudgetReason)
        return false
    }

    /// Closes this connection because the loop needs its memory back: our close frame, then FIN
    /// without awaiting the peer's answer (RFC 6455 §7.1.7, failing the connection); its input
    /// and message in assembly are freed at once.
    public func shed(code: CloseCode, reason: String) {
        guard state == .open || state == .closeSent else { return }
        if state == .open {
            closeHandshake = .local(code, answer: nil)
            writeCloseFrame(code, reason: reason)
        }
        closeAfterFlush()
    }
}
