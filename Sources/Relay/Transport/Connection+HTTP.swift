import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// The HTTP phase (docs/protocol.md §3): one request head at a time, bounded, then the upgrade.
extension Connection {
    // MARK: HTTP phase

    package func readHTTP() {
        // One request at a time: while an answer is still queued, the client's next request
        // waits in the kernel (a pipelining client that never reads cannot grow our queue).
        guard output.isEmpty else {
            setInterest(interest & ~(Reactor.readable | EPOLLRDHUP.rawValue))
            return
        }
        input.reserve(4096, pool: context.pool)
        let r: IOResult<Int>
        do { r = try ioRead(input.writePointer, input.writableCount) } catch { abort(); return }
        guard case .done(let n) = r else {
            // Nothing arrived (e.g. right after a TLS handshake): an idle connection keeps no buffer.
            if input.isEmpty { input.release(to: context.pool) }
            return
        }
        if n == 0 { abort(); return }
        if input.count == 0, let http, http.deadline.ms > context.reactor.now + settings.headerTimeoutMs {
            // First byte of a request on an idle keep-alive connection: the header timeout starts now.
            armHTTPDeadline(context.reactor.now + settings.headerTimeoutMs)
        }
        input.didWrite(n)
        parseRequests()
    }

    package func parseRequests() {
        while state == .http && !input.isEmpty && output.isEmpty {
            guard let http else { return }
            let result = http.parser.parse(UnsafeRawBufferPointer(input.readable))
            switch result {
            case .needMore:
                return
            case .failure(let status):
                enqueue(HTTPResponse.error(status, close: true))
                closeAfterFlush()
                return
            case .complete(let head, let headerLength):
                input.consume(headerLength)
                http.parser.reset()
                switch delegate.connection(self, request: head) {
                case .respond(let bytes, let close):
                    enqueue(bytes)
                    if close {
                        closeAfterFlush()
                        return
                    }
                    armHTTPDeadline(context.reactor.now + settings.keepAliveIdleMs)
                    markDirty()
                case .drop:
                    abort()
                    return
                case .upgrade(let acceptKey, let extra):
                    enqueue(HTTPResponse.switchingProtocols(accept: acceptKey, extraHeaders: extra))
                    becomeWebSocket()
                    return
                }
            }
        }
        if input.isEmpty { input.release(to: context.pool) }
    }

    package func becomeWebSocket() {
        // Frames start right after the 101 (the backlog cut walks them from here).
        frameBoundaryAhead = UInt32(output.count)
        state = .open
        http = nil
        armHeartbeat(now: context.reactor.now)
        markDirty()
        delegate.connectionDidUpgrade(self)
        // Frames pipelined behind the request head are already buffered; a connection the
        // delegate paused (a binary awaiting its claim) keeps them until it resumes.
        drainBufferedFrames()
        if input.isEmpty { input.release(to: context.pool) }
        syncHeldBytes()
    }

    /// Sets the HTTP-phase deadline; a heap entry is added only when it comes earlier than the
    /// one already pending (a later deadline is picked up when that entry fires), so a
    /// keep-alive client cannot grow the timer heap one entry per request.
    package func armHTTPDeadline(_ ms: Int64) {
        guard let http else { return }
        http.deadline = Deadline(ms: ms)
        if ms < http.timerAt.ms {
            http.timerAt = http.deadline
            schedule(.httpDeadline, at: ms)
        }
    }

}
