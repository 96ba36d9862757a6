/// Ids of outbound calls, connections and DNS lookups, unique across every `HTTPSClient` of the
/// process: they key reactor timers of shared kinds, so a client can tell its own timers from
/// another client's. One thread runs the reactor, which is what makes the plain static safe.
package enum OutboundIDs {
    nonisolated(unsafe) private static var last: UInt64 = 0

    package static func next() -> UInt64 {
        last += 1
        return last
    }
}
