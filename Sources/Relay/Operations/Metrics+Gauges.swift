import RelayLog
import RelaySystem
import Relaying

extension Metrics.Gauges {
    /// The gauges of one scrape, read from the relay service and the process.
    package init(relay: RelayService) {
        var g = Metrics.Gauges()
        g.connectedBinaries = relay.connectedBinaries
        g.connectedPhones = relay.connectedPhones
        g.liveConnections = relay.liveConnectionCount
        g.halfOpen = relay.halfOpenCount
        g.queuedBytes = relay.context.queuedBytes
        g.loopLatency = relay.context.reactor.loopLatency
        g.logLinesDropped = Log.linesDropped
        g.openFileDescriptors = relay.openDescriptors()
        g.residentMemoryBytes = RelaySystem.residentMemoryBytes()
        g.pushWakes = relay.push?.counts
        self = g
    }
}
