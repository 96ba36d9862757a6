import CEpoll
import RelaySystem
import RelayCodecs
import RelayLog
import RelayTransport

/// The plain `--http-listen` listener in ACME mode (docs/operations.md "ACME"): answers http-01
/// challenges (RFC 8555 §8.3, `/.well-known/acme-challenge/<token>` → the key authorization),
/// `/healthz` (200 once a certificate is served; 503 with the reason before), and 404 to
/// everything else. Every response closes the connection, and at most
/// `Limits.acmeHTTPMaxConnections` are open at once: this port faces the internet.
package final class HTTPChallengeService: ConnectionDelegate {
    package static let challengePrefix = "/.well-known/acme-challenge/"

    package let context: IOContext
    package let settings: ConnectionSettings
    package let acme: ACMEManager
    /// The relay's /healthz body once there is a certificate.
    package let health: () -> [UInt8]
    package var live: [ObjectIdentifier: Connection] = [:]

    package init(context: IOContext, settings: ConnectionSettings, acme: ACMEManager, health: @escaping () -> [UInt8]) {
        self.context = context
        self.settings = settings
        self.acme = acme
        self.health = health
    }

    package func accept(fd: consuming FileDescriptor, remote: SocketAddress) {
        guard live.count < Limits.acmeHTTPMaxConnections else { return }  // `fd` closes as it goes
        let c = Connection(fd: fd, remote: remote, context: context, settings: settings, delegate: self)
        do { try c.start() } catch { return }
        live[ObjectIdentifier(c)] = c
    }

    package override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
        let response: [UInt8]
        if head.path.hasPrefix(HTTPChallengeService.challengePrefix),
           let answer = acme.http01[String(head.path.dropFirst(HTTPChallengeService.challengePrefix.count))] {
            response = HTTPResponse.ok(body: Array(answer.utf8), contentType: "application/octet-stream", extraHeaders: [], close: true)
            Log.info("acme_challenge_answered", ["challenge": "http-01", "remote": c.remote.ipString])
        } else if head.path == "/healthz" {
            if acme.served != nil {
                response = health()
            } else {
                let body = "{\"status\":\"no_certificate\",\"reason\":\(JSONValue.quote(acme.lastFailure ?? "acme order in progress"))}"
                response = HTTPResponse.withBody(.serviceUnavailable, body: Array(body.utf8), contentType: "application/json; charset=utf-8",
                                                 extraHeaders: [("Cache-Control", "no-store")], close: true)
            }
        } else {
            response = HTTPResponse.error(.notFound, close: true)
        }
        return .respond(head.method == "HEAD" ? HTTPResponse.withoutBody(response) : response, close: true)
    }

    package override func connectionDidUpgrade(_ c: Connection) {}
    package override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {}
    package override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        live[ObjectIdentifier(c)] = nil
    }
}
