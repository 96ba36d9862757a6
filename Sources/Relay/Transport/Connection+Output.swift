import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// The write side: frames into the output queue, the close handshake, flushing, read pausing.
extension Connection {
    // MARK: sending

    /// Queues one unfragmented frame (a copy of `payload`) for the end-of-tick flush.
    public func sendFrame(opcode: Opcode, payload: UnsafeRawBufferPointer) {
        guard state == .open else { return }
        if deflateWindowBits != 0 && !opcode.isControl {
            sendCompressed(opcode: opcode, payload: payload)
            return
        }
        let h = FrameEncoder.headerLength(payloadLength: payload.count)
        output.reserve(h + payload.count, pool: context.pool)
        let p = output.writePointer
        let written = FrameEncoder.writeHeader(opcode: opcode, payloadLength: payload.count, into: p)
        if payload.count > 0 { (p + written).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        output.didWrite(written + payload.count)
        context.queuedBytes += written + payload.count
        didQueue()
    }

    /// Queues one text frame whose payload of `length` bytes `fill` writes in place: the single
    /// copy of a forwarded message goes straight into this queue.
    @inline(__always)
    public func sendFrame(opcode: Opcode, length: Int, fill: (UnsafeMutableRawPointer) -> Void) {
        guard state == .open else { return }
        if deflateWindowBits != 0 {
            sendCompressed(opcode: opcode, length: length, fill: fill)
            return
        }
        let h = FrameEncoder.headerLength(payloadLength: length)
        output.reserve(h + length, pool: context.pool)
        let p = output.writePointer
        let written = FrameEncoder.writeHeader(opcode: opcode, payloadLength: length, into: p)
        fill(p + written)
        output.didWrite(written + length)
        context.queuedBytes += written + length
        didQueue()
    }

    /// Pings the peer; an unanswered ping closes it 1011 `heartbeat timeout` after the heartbeat
    /// timeout, whoever sent it (the heartbeat, or the registry's claim probe).
    public func sendPing() { sendPing(nextBeat: nil) }

    /// `nextBeat`: when the heartbeat entry comes due that checks the pong too (nil when not
    /// known: a probe's ping then gets a `.pongDeadline` entry of its own).
    package func sendPing(nextBeat: Int64?) {
        guard state == .open else { return }
        if !pingOutstanding {
            let at = due(in: settings.heartbeatTimeoutMs)
            deadlines.pong = ShortDeadline(ms: at)
            // The next heartbeat entry checks a deadline that comes no earlier than it.
            if at < nextBeat ?? .max { schedule(.pongDeadline, at: at) }
        }
        sendFrame(opcode: .ping, payload: UnsafeRawBufferPointer(start: nil, count: 0))
    }

    @inline(__always)
    package func didQueue() {
        if output.count >= backpressure.highWater { backpressure.aboveHighWater = true }
        markDirty()
    }

    package func markDirty() {
        if !dirtyMarked {
            dirtyMarked = true
            // Borrowed: the reactor outlives every connection, so no retain per message.
            Unmanaged.passUnretained(context.reactor)._withUnsafeGuaranteedRef { $0.markDirty(fd: socket.raw) }
        }
    }

    /// Appends whole bytes (responses, control frames) to the output queue.
    package func enqueue(_ bytes: [UInt8]) {
        output.append(pool: context.pool, bytes)
        context.queuedBytes += bytes.count
    }

    package func writeCloseFrame(_ code: CloseCode?, reason: String = "") {
        var r = Array(reason.utf8)
        if r.count > 123 { r = Array(r[0..<123]) }
        enqueue(FrameEncoder.closeFrame(code: code, reason: r))
        markDirty()
    }

    /// Starts the closing handshake with `code` (RFC 6455 §7.1.2); the socket is dropped when
    /// the peer answers or after the close timeout.
    public func close(code: CloseCode, reason: String = "") {
        switch state {
        case .open:
            closeHandshake = .local(code, answer: nil)
            writeCloseFrame(code, reason: reason)
            state = .closeSent
            // The peer's answering close must be read even from a paused connection.
            resumeReading()
            let at = due(in: settings.closeHandshakeTimeoutMs)
            deadlines.closeAnswer = ShortDeadline(ms: at)
            schedule(.closeDeadline, at: at)
        case .http:
            abort()
        case .closeSent, .closing, .lingering, .closed:
            break
        }
    }

    /// Writes what is queued, then FIN. Input after this point is ignored. The close-handshake
    /// timeout bounds the rest, from now; with `flushBoundByWriteStall` the write-stall timeout
    /// bounds the flush instead (a slow reader still gets its close frame) and the linger after
    /// the FIN has its own close-handshake timeout.
    package func closeAfterFlush(flushBoundByWriteStall: Bool = false) {
        guard state != .closed && state != .closing && state != .lingering else { return }
        state = .closing
        releaseInput()
        if flushBoundByWriteStall {
            deadlines.linger = .unarmed  // armed after the flush (the slot held the pong deadline)
        } else {
            armLingerDeadline()
        }
        setInterest(Reactor.writable)
        flush()
    }

    package func armLingerDeadline() {
        let at = due(in: settings.closeHandshakeTimeoutMs)
        deadlines.linger = ShortDeadline(ms: at)
        schedule(.lingerDeadline, at: at)
    }

    /// Closes a peer whose queue overflowed (docs/operations.md) with a real close frame once it reads
    /// again: the queued bytes not yet handed to the kernel are dropped, except the rest of the
    /// frame already partly written (over TLS, also the record OpenSSL may hold pending, which a
    /// retried `SSL_write` must be offered again), so the peer still sees whole frames; then our
    /// close frame and FIN. A peer that never reads again is dropped at the write-stall timeout.
    public func closeDroppingBacklog(code: CloseCode, reason: String) {
        guard state == .open else { return }
        closeHandshake = .local(code, answer: nil)
        let mustKeep = tls == nil ? 0 : min(output.count, Connection.tlsMaxRecordPlaintext)
        if mustKeep > 0 { advanceFrameBoundary(past: mustKeep) }
        let keep = Int(frameBoundaryAhead)
        context.queuedBytes -= output.count - keep
        output.truncate(keeping: keep)
        writeCloseFrame(code, reason: reason)
        if output.capacity > context.pool.blockSize && output.capacity > 2 * output.count {
            let freed = output.resize(to: output.count, pool: context.pool)
            if freed > 0 { context.noteReleased(freed) }
        }
        closeAfterFlush(flushBoundByWriteStall: true)
    }

    /// Moves `frameBoundaryAhead` to the first frame start at or past `target` queued bytes,
    /// reading the headers of the frames in between before they are consumed. It runs only on
    /// partial writes (a peer slower than its traffic) and touches each frame once. Before the
    /// upgrade no frames are queued: any offset is a boundary.
    @inline(never)
    package func advanceFrameBoundary(past target: Int) {
        guard wasUpgraded else {
            frameBoundaryAhead = UInt32(target)
            return
        }
        let queued = output.readable
        var b = Int(frameBoundaryAhead)
        while b < target {
            guard let n = FrameEncoder.frameLength(UnsafeRawBufferPointer(rebasing: queued[b...])) else {
                b = queued.count  // cannot happen: only whole frames are queued
                break
            }
            b += n
        }
        frameBoundaryAhead = UInt32(b)
    }

    /// docs/protocol.md §7.5: a queue that reached its high-water mark tells the delegate once it
    /// is down to the low-water mark, whether or not bytes still wait.
    @inline(__always)
    private func noteDrainBelowLowWater() {
        if backpressure.aboveHighWater && output.count <= backpressure.lowWater {
            backpressure.aboveHighWater = false
            delegate.connectionDidDrain(self)
        }
    }

    package func flush() {
        while !output.isEmpty {
            let r: IOResult<Int>
            do {
                r = try ioWrite(UnsafeRawPointer(output.readable.baseAddress!), output.count)
            } catch {
                peerGone()
                return
            }
            switch r {
            case .done(let n):
                if n < output.count {
                    if Int(frameBoundaryAhead) < n { advanceFrameBoundary(past: n) }
                    frameBoundaryAhead -= UInt32(n)
                    // Progress: the stall clock restarts (a whole write ends the loop and disarms it).
                    deadlines.writeStall = ShortDeadline(ms: due(in: settings.writeStallTimeoutMs))
                }
                bytesOut += n
                output.consume(n)
                context.queuedBytes -= n
            case .wouldBlock:
                // The stall clock runs from the last progress, or from now after a full drain
                // (an older pending timer re-checks against this).
                if !deadlines.writeStall.isArmed {
                    deadlines.writeStall = ShortDeadline(ms: due(in: settings.writeStallTimeoutMs))
                }
                if !writeStallTimerPending {
                    writeStallTimerPending = true
                    schedule(.writeStall, at: deadlines.writeStall.ms(near: context.reactor.now))
                }
                setInterest(tlsWants.writeNeedsReadable ? interest | Reactor.readable : interest | Reactor.writable)
                // Part of the queue went out: it may have reached the low-water mark already.
                noteDrainBelowLowWater()
                return
            }
        }
        deadlines.writeStall = .unarmed
        frameBoundaryAhead = 0
        output.release(to: context.pool)
        noteDrainBelowLowWater()
        switch state {
        case .closing:
            // RFC 6455 §7.1.1: the server closes the TCP connection first; a half-close lets the
            // peer read everything we sent (an error response, a close frame) before it sees EOF.
            // Over TLS, close_notify goes first (RFC 8446 §6.1), best effort.
            tls?.shutdown()
            _ = shutdown(fd, Int32(SHUT_WR))
            state = .lingering
            if !deadlines.linger.isArmed { armLingerDeadline() }
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
        case .closed, .lingering:
            break
        case .http:
            // The answer is out: read and parse the next request (pipelined ones are buffered).
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue | (tlsWants.readNeedsWritable ? Reactor.writable : 0))
            if !input.isEmpty { parseRequests() }
            // The next request, or frames behind an upgrade, may wait inside OpenSSL (read-ahead).
            if (state != .http || output.isEmpty) && tls?.hasPendingInput == true { dispatchRead() }
        default:
            var want = interest
            if !tlsWants.readNeedsWritable { want &= ~Reactor.writable }
            if backpressure.readingPaused && !tlsWants.writeNeedsReadable { want &= ~Reactor.readable }
            setInterest(want)
        }
    }

    package func readAndDiscard() {
        let buf = context.readBuffer
        let r: IOResult<Int>
        do { r = try Socket.read(fd, buf, context.readBufferSize) } catch { abort(); return }
        if case .done(let n) = r, n == 0 { abort() }
    }

    // MARK: read backpressure

    /// Stops reading from this peer (its kernel buffers fill, TCP pushes back): docs/protocol.md §7.5.
    public func pauseReading() {
        guard !backpressure.readingPaused, state == .open else { return }
        backpressure.readingPaused = true
        // EPOLLRDHUP is level-triggered too: keeping it would report a half-closed paused peer
        // on every iteration. HUP/ERR (always reported) still end the connection.
        setInterest(interest & ~(Reactor.readable | EPOLLRDHUP.rawValue))
    }

    public func resumeReading() {
        guard backpressure.readingPaused else { return }
        backpressure.readingPaused = false
        if state == .open || state == .closeSent {
            setInterest(interest | Reactor.readable | EPOLLRDHUP.rawValue)
            kickBufferedInput()
        }
    }

    /// Frames held in our buffer, or input held by OpenSSL, raise no epoll event: process
    /// them at the end of this tick.
    package func kickBufferedInput() {
        if !input.isEmpty || tls?.hasPendingInput == true {
            readKick = true
            markDirty()
        }
    }
}
