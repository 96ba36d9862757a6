import CEpoll
import RelaySystem
import RelayReactor

/// Before HTTP: the PROXY v2 header (docs/protocol.md §3.3) and the TLS handshake (docs/protocol.md §2.1).
extension Connection {
    // MARK: preamble: PROXY v2 header, TLS handshake

    package func advancePreamble() {
        if preamble == .proxyHeader {
            readProxyHeader()
            if preamble == .none && state == .http { dispatchRead() }
        }
        if preamble == .tlsHandshake { driveHandshake() }
    }

    /// Reads exactly the bytes the parser asks for, so the ClientHello behind the header stays
    /// in the kernel for OpenSSL. Any refusal closes with zero bytes written (docs/protocol.md §3.3).
    package func readProxyHeader() {
        while true {
            switch ProxyProtocolV2.parse(UnsafeRawBufferPointer(input.readable)) {
            case .refused:
                abort()
                return
            case .proxied(let source, let length):
                http?.remote = IPEndpoint(source)
                input.consume(length)
                input.release(to: context.pool)
                http?.proxyDeadline = .unarmed
                preamble = tls != nil ? .tlsHandshake : .none
                delegate.connection(self, proxiedFrom: source)
                return
            case .needMore(let total):
                let want = total - input.count
                input.reserve(want, pool: context.pool)
                let r: IOResult<Int>
                do { r = try Socket.read(fd, input.writePointer, want) } catch { abort(); return }
                guard case .done(let n) = r else { return }
                if n == 0 { abort(); return }
                input.didWrite(n)
            }
        }
    }

    package func driveHandshake() {
        guard let tls else { return }
        // Fair loop (docs/architecture.md): a bounded number of handshake steps per loop iteration. Over budget the
        // event is left pending; level-triggered epoll reports it again next iteration.
        guard context.takeHandshakeStep() else { return }
        switch tls.handshake() {
        case .done:
            preamble = .none
            delegate.connection(self, tlsHandshakeFinished: true)
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
            // The request may already be buffered in OpenSSL or the kernel.
            dispatchRead()
        case .wantRead:
            setInterest(Reactor.readable | EPOLLRDHUP.rawValue)
        case .wantWrite:
            // Not readable: level-triggered readability would spin while the write is blocked.
            setInterest(Reactor.writable)
        case .failed:
            delegate.connection(self, tlsHandshakeFinished: false)
            abort()
        }
    }

}
