import RelayLog
import RelayReactor

/// The TLS listener's current context; SIGHUP swaps it (docs/operations.md § Certificate renewal).
package final class TLSHolder: TimerOwner {
    package enum TimerKind: UInt8 {
        /// Every `TLSContext.ticketKeyRotationMs`.
        case ticketRotation
    }
    package private(set) var current: TLSContext
    private var timers: TimerHandle<TimerKind>?

    package init(_ context: TLSContext) { current = context }

    /// ACME: a new pair for new connections (existing ones keep theirs, as with a reload).
    package func install(_ context: TLSContext) { current = context }

    /// Loads the same files again. A good pair serves new connections from now on; a bad one
    /// leaves the old pair in place. Existing connections keep their own SSL_CTX reference.
    package func reload() {
        do {
            current = try TLSContext(certFile: current.certFile, keyFile: current.keyFile)
            Log.info("tls_reloaded")
        } catch {
            Log.error("tls_reload_failed", ["err": error.description])
        }
    }

    package func startTicketRotation(on reactor: Reactor) {
        let handle = reactor.registerTimers(for: self)
        timers = handle
        handle.schedule(.ticketRotation, at: reactor.now + TLSContext.ticketKeyRotationMs)
    }

    package func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        do { try current.rotateTicketKeys() } catch {
            Log.error("tls_ticket_rotation_failed", ["err": error.description])
        }
        timers?.schedule(.ticketRotation, at: now + TLSContext.ticketKeyRotationMs)
    }
}
