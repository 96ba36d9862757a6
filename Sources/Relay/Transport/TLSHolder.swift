import RelayLog

/// The TLS listener's current context; SIGHUP swaps it (docs/operations.md § Certificate renewal).
package final class TLSHolder {
    package static let rotationTimerKind: UInt8 = 251
    package private(set) var current: TLSContext

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

    package func rotateTicketKeys() {
        do { try current.rotateTicketKeys() } catch {
            Log.error("tls_ticket_rotation_failed", ["err": error.description])
        }
    }
}
