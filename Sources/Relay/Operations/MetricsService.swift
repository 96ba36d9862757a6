import RelaySystem
import RelayCodecs
import RelayTransport
import Relaying

/// The loopback-only metrics listener (docs/operations.md): `GET /metrics` in the Prometheus text
/// format; everything else 404. Plain HTTP on the same transport, never upgraded.
public final class MetricsService: ConnectionDelegate {
    package let context: IOContext
    package let relay: RelayService
    package let metrics: Metrics
    package var live: [ObjectIdentifier: Connection] = [:]

    public init(context: IOContext, relay: RelayService, metrics: Metrics) {
        self.context = context
        self.relay = relay
        self.metrics = metrics
    }

    public func accept(fd: consuming FileDescriptor, remote: SocketAddress) {
        let c = Connection(fd: fd, remote: remote, context: context, settings: relay.settings.connection, delegate: self)
        do { try c.start() } catch { return }
        live[ObjectIdentifier(c)] = c
    }

    public override func connection(_ c: Connection, request head: HTTPRequestHead) -> HTTPDisposition {
        let close = !head.keepAlive || head.carriesBody || relay.draining
        guard head.path == "/metrics" else {
            return .respond(HTTPResponse.error(.notFound, close: close), close: close)
        }
        let body = metrics.render(Metrics.Gauges(relay: relay))
        let response = HTTPResponse.ok(body: body, contentType: "text/plain; version=0.0.4; charset=utf-8",
                                       extraHeaders: [], close: close)
        return .respond(head.method == "HEAD" ? HTTPResponse.withoutBody(response) : response, close: close)
    }

    public override func connectionDidUpgrade(_ c: Connection) {}
    public override func connection(_ c: Connection, message payload: UnsafeRawBufferPointer, opcode: Opcode) {}
    public override func connectionDidClose(_ c: Connection, peerCode: CloseCode?, localCode: CloseCode?) {
        live[ObjectIdentifier(c)] = nil
    }
}
