internal import CTLS
import CEpoll
import RelaySystem
import RelayCodecs

/// One `SSL` on a non-blocking socket, server side (or client side: OutboundTLSContext.swift) (one owning type: the owner frees it
/// in `deinit`). Every call clears the error queue first and turns `WANT_READ`/`WANT_WRITE`
/// into values (convention 7). The socket itself is owned by the connection.
package final class TLSSession {
    package enum HandshakeResult: Equatable {
        case done
        case wantRead
        case wantWrite
        case failed(HandshakeFailure)
    }

    /// How a handshake failed. Its text is built only on request (`reason()`): the relay's own
    /// listeners count failures and never show the text; the HTTPS client names it.
    package struct HandshakeFailure: Equatable {
        package let sslError: Int32
        package let errno: Int32

        /// OpenSSL's root-cause reason, else the socket's error. It reads OpenSSL's error
        /// queue, which the next TLS call clears: ask right after `handshake()` returned.
        package func reason() -> String {
            if sslError == SSL_ERROR_SYSCALL {
                let err = TLSError.drain("handshake", fallback: "")
                if !err.reason.isEmpty { return err.reason }
                return errno == 0 ? "unexpected EOF" : String(cString: strerror(errno))
            }
            return TLSError.drain("handshake").reason
        }
    }

    /// What the last call that returned `.wouldBlock` is waiting for. A read can need the
    /// socket writable (a TLS 1.3 KeyUpdate answer) and a write can need it readable.
    package enum Want { case read, write }

    package let ssl: OpaquePointer
    package private(set) var want: Want = .read
    /// Set after a fatal error: OpenSSL forbids `SSL_shutdown` then (SSL_shutdown(3)).
    package private(set) var broken = false
    package private(set) var handshakeDone = false
    private var shutdownSent = false
    /// The last read found no whole record: OpenSSL tried the socket and it was empty. Bytes it
    /// still holds (part of a record) wait for the socket, whose readiness epoll reports.
    private var readBlocked = false

    package init?(ctx: OpaquePointer, fd: Int32) {
        ERR_clear_error()
        guard let ssl = SSL_new(ctx) else {
            ERR_clear_error()
            return nil
        }
        self.ssl = ssl
        guard SSL_set_fd(ssl, fd) == 1 else {
            ERR_clear_error()
            return nil  // deinit frees ssl
        }
        SSL_set_accept_state(ssl)
    }

    deinit { SSL_free(ssl) }

    /// Advances the handshake as far as the socket allows.
    package func handshake() -> HandshakeResult {
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            handshakeDone = true
            return .done
        }
        let e = SSL_get_error(ssl, r)
        switch e {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default:
            broken = true
            return .failed(HandshakeFailure(sslError: e, errno: e == SSL_ERROR_SYSCALL ? pyry_errno() : 0))
        }
    }

    /// Decrypts into `buffer`. `.done(0)` is the end of the stream: the peer's close_notify,
    /// or EOF without one (HTTP and WebSocket frame their own messages, so a truncated
    /// stream cannot be mistaken for a complete one).
    @inline(__always)
    package func read(into buffer: UnsafeMutableRawPointer, count: Int) throws(Errno) -> IOResult<Int> {
        ERR_clear_error()
        let r = SSL_read(ssl, buffer, Int32(clamping: count))
        if r > 0 {
            readBlocked = false
            return .done(Int(r))
        }
        let result = try outcome(r, call: "SSL_read")
        if case .wouldBlock = result { readBlocked = true }
        return result
    }

    /// Encrypts up to `count` bytes from `buffer` (partial writes enabled: the result may be
    /// less). After `.wouldBlock` the retry must offer the same bytes again (at any address).
    @inline(__always)
    package func write(from buffer: UnsafeRawPointer, count: Int) throws(Errno) -> IOResult<Int> {
        ERR_clear_error()
        let r = SSL_write(ssl, buffer, Int32(clamping: count))
        if r > 0 { return .done(Int(r)) }
        return try outcome(r, call: "SSL_write")
    }

    private func outcome(_ r: Int32, call: StaticString) throws(Errno) -> IOResult<Int> {
        switch SSL_get_error(ssl, r) {
        case SSL_ERROR_WANT_READ:
            want = .read
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            want = .write
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .done(0)
        case SSL_ERROR_SYSCALL:
            broken = true
            let code = pyry_errno()
            ERR_clear_error()
            // OpenSSL 3 reports EOF without close_notify as SSL_ERROR_SSL "unexpected eof"
            // unless SSL_OP_IGNORE_UNEXPECTED_EOF; 1.1-style SYSCALL with errno 0 is EOF too.
            if code == 0 { return .done(0) }
            throw Errno(code, call: call)
        default:
            broken = true
            ERR_clear_error()
            throw Errno(EPROTO, call: call)
        }
    }

    /// Input inside OpenSSL that a read can use without the socket: decrypted plaintext, or
    /// records read ahead but not yet decrypted. Epoll cannot see it, so the reader drains it
    /// before waiting for the socket again. Not after a read that found only part of a record:
    /// `SSL_has_pending` stays 1 for it, and draining on that would spin until the rest arrives.
    package var hasPendingInput: Bool { !readBlocked && SSL_has_pending(ssl) == 1 }

    /// Best-effort close_notify (RFC 8446 §6.1), never blocking, result ignored.
    package func shutdown() {
        guard handshakeDone, !broken, !shutdownSent else { return }
        shutdownSent = true
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }
}
