import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs

/// Name → addresses without blocking the loop: `/etc/hosts` first, then A and AAAA questions
/// (RFC 1035, RFC 3596) in UDP datagrams to the nameservers of `/etc/resolv.conf`, answered on
/// the reactor. Not `getaddrinfo` (it blocks) nor `getaddrinfo_a` (it blocks a helper thread per
/// lookup, and the relay has one thread).
///
/// Each lookup asks the first nameserver; after `Limits.dnsRetryMs` of silence, or at once when
/// that server's port is closed, it asks the next one (round robin, the earlier sockets still
/// listening), and it ends when both questions have an answer or at its deadline with whatever
/// arrived. Spoofing resistance is that of a stub
/// resolver: a random 16-bit id per question, a fresh random source port per lookup, a connected
/// socket (the kernel drops datagrams from anyone but that server), and the question echoed back.
/// Limits: names are absolute (no `search` list: the callers dial fully qualified names),
/// a truncated answer gives the records that fit (no TCP retry).
package final class AsyncResolver: TimerOwner {
    package enum TimerKind: UInt8 {
        /// Ask the next nameserver, or end the lookup at its deadline (key: lookup id).
        case tick
    }

    private let reactor: Reactor
    private lazy var timers = reactor.registerTimers(for: self)
    private let configuration: () -> ResolverConfiguration
    private var lookups: [UInt64: Lookup] = [:]
    /// Silence after which the next nameserver is asked (tests shorten it).
    package var retryMs = Limits.dnsRetryMs

    package init(reactor: Reactor, configuration: @escaping () -> ResolverConfiguration) {
        self.reactor = reactor
        self.configuration = configuration
    }

    package var activeLookups: Int { lookups.count }

    /// Resolves `name`; `completion` gets the addresses with `port` (empty: no address), at most
    /// once, and never after `cancel`. A name found in /etc/hosts completes before this returns.
    /// Returns the lookup's id for `cancel`, nil when it completed already.
    package func resolve(_ name: String, port: UInt16, deadline: Int64,
                 completion: @escaping ([SocketAddress]) -> Void) -> UInt64? {
        let config = configuration()
        let key = name.lowercased()
        if let ips = config.hosts[key] {
            completion(Array(ips.compactMap { SocketAddress(ip: $0, port: port) }.prefix(Limits.httpsClientMaxAddresses)))
            return nil
        }
        let id = OutboundIDs.next()
        let lookup = Lookup(id: id, name: key, port: port, servers: config.nameservers, deadline: deadline,
                            completion: completion)
        lookups[id] = lookup
        guard !config.nameservers.isEmpty, (try? DNSMessage.encodeName(key)) != nil else {
            finish(lookup)
            return nil
        }
        ask(lookup)
        return lookups[id] == nil ? nil : id
    }

    package func cancel(_ id: UInt64) {
        guard let lookup = lookups.removeValue(forKey: id) else { return }
        closeSockets(lookup)
    }

    package func cancelAll() {
        for id in Array(lookups.keys) { cancel(id) }
    }

    package func timerFired(_ kind: TimerKind, key: UInt64, now: Int64) {
        guard let lookup = lookups[key] else { return }  // finished meanwhile: a stale tick
        if now >= lookup.deadline {
            finish(lookup)
        } else if now >= lookup.nextAskAt {  // else an earlier tick, superseded by a refusal's ask
            ask(lookup)
        }
    }

    /// Sends the unanswered questions to the next nameserver (and on to the one after, at once,
    /// while they refuse) and arms the next tick.
    private func ask(_ lookup: Lookup) {
        // Each server is asked at most twice (resolv.conf's default `attempts:2`).
        while lookup.asked < 2 * lookup.servers.count {
            let index = lookup.asked % lookup.servers.count
            lookup.asked += 1
            if lookup.sockets[index] == nil, let s = DNSSocket(server: lookup.servers[index], resolver: self, lookup: lookup.id) {
                if (try? s.register(reactor)) != nil { lookup.sockets[index] = s } else { s.close(reactor) }
            }
            guard let s = lookup.sockets[index] else { continue }
            var delivered = true
            if lookup.a == nil { delivered = s.send(lookup.query(DNSMessage.typeA)) && delivered }
            if lookup.aaaa == nil { delivered = s.send(lookup.query(DNSMessage.typeAAAA)) && delivered }
            if delivered { break }
        }
        lookup.nextAskAt = monotonicMs() + retryMs
        timers.schedule(.tick, at: min(lookup.nextAskAt, lookup.deadline), key: lookup.id)
    }

    /// A datagram from one of the lookup's servers.
    fileprivate func received(_ datagram: [UInt8], lookup id: UInt64) {
        guard let lookup = lookups[id] else { return }
        for (type, qid) in [(DNSMessage.typeA, lookup.idA), (DNSMessage.typeAAAA, lookup.idAAAA)] {
            guard datagram.count >= 2, UInt16(datagram[0]) << 8 | UInt16(datagram[1]) == qid,
                  let r = try? DNSMessage.parseResponse(datagram, type: type), r.id == qid,
                  r.questionName == lookup.name else { continue }
            // NOERROR and NXDOMAIN are answers; SERVFAIL, REFUSED… leave the question to the next server.
            guard r.rcode == 0 || r.rcode == 3 else { continue }
            // The first answer per type stands: a slow first nameserver asked again after the
            // retry may answer after the next one; an empty or NXDOMAIN answer must not replace records.
            if type == DNSMessage.typeA { lookup.a = lookup.a ?? r.addresses } else { lookup.aaaa = lookup.aaaa ?? r.addresses }
        }
        if lookup.a != nil && lookup.aaaa != nil { finish(lookup) }
    }

    /// A nameserver refused: the next one is asked at once.
    fileprivate func refused(lookup id: UInt64) {
        guard let lookup = lookups[id] else { return }
        ask(lookup)
    }

    private func finish(_ lookup: Lookup) {
        guard lookups.removeValue(forKey: lookup.id) != nil else { return }
        closeSockets(lookup)
        lookup.completion(lookup.addresses())
    }

    private func closeSockets(_ lookup: Lookup) {
        for case let s? in lookup.sockets { s.close(reactor) }
        lookup.sockets = []
    }
}

/// One lookup in flight: the two questions and what has been answered.
private final class Lookup {
    let id: UInt64
    let name: String
    let port: UInt16
    let servers: [SocketAddress]
    let deadline: Int64
    let completion: ([SocketAddress]) -> Void
    let idA: UInt16
    let idAAAA: UInt16
    var sockets: [DNSSocket?]
    var asked = 0
    var nextAskAt: Int64 = 0
    var a: [[UInt8]]?     // nil until answered
    var aaaa: [[UInt8]]?

    init(id: UInt64, name: String, port: UInt16, servers: [SocketAddress], deadline: Int64,
         completion: @escaping ([SocketAddress]) -> Void) {
        self.id = id
        self.name = name
        self.port = port
        self.servers = servers
        self.deadline = deadline
        self.completion = completion
        idA = UInt16.random(in: .min ... .max)
        idAAAA = idA ^ UInt16.random(in: 1 ... .max)  // never equal to idA
        sockets = Array(repeating: nil, count: servers.count)
    }

    func query(_ type: UInt16) -> [UInt8] {
        (try? DNSMessage.query(id: type == DNSMessage.typeA ? idA : idAAAA, name: name, type: type)) ?? []
    }

    /// AAAA and A interleaved, IPv6 first (RFC 8305 §4), duplicates dropped, capped.
    func addresses() -> [SocketAddress] {
        let v6 = (aaaa ?? []).compactMap { Lookup.address($0, port: port) }
        let v4 = (a ?? []).compactMap { Lookup.address($0, port: port) }
        var out: [SocketAddress] = []
        for i in 0..<max(v6.count, v4.count) {
            for list in [v6, v4] where i < list.count && !out.contains(list[i]) { out.append(list[i]) }
        }
        return Array(out.prefix(Limits.httpsClientMaxAddresses))
    }

    static func address(_ octets: [UInt8], port: UInt16) -> SocketAddress? {
        guard octets.count == 4 || octets.count == 16 else { return nil }
        return octets.withUnsafeBytes { SocketAddress(address: $0, port: port) }
    }
}

/// A connected UDP socket to one nameserver, registered on the reactor for the lookup's answers.
private final class DNSSocket: EventHandler {
    private var fd: FileDescriptor
    private var token: Token?
    private weak var resolver: AsyncResolver?
    private let lookup: UInt64

    init?(server: SocketAddress, resolver: AsyncResolver, lookup: UInt64) {
        let raw = socket(server.family, Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { return nil }
        fd = FileDescriptor(raw)
        self.resolver = resolver
        self.lookup = lookup
        let connected = (try? server.withSockAddr { sa, len throws(Errno) in
            try syscallChecked("connect") { pyry_connect(raw, sa, len) }
        }) != nil
        guard connected else { return nil }
    }

    func register(_ reactor: Reactor) throws(Errno) {
        token = try reactor.register(fd: fd.raw, events: Reactor.readable, handler: self)
    }

    /// False when the server is known to have no resolver: the port-unreachable of an earlier
    /// datagram comes back as this send's ECONNREFUSED (on loopback, before the next send). Any
    /// other loss is silence, which the next tick handles.
    func send(_ query: [UInt8]) -> Bool {
        let n = query.withUnsafeBytes { CEpoll.send(fd.raw, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        return n >= 0 || pyry_errno() != ECONNREFUSED
    }

    override func handleEvent(_ events: UInt32) {
        var buf = [UInt8](repeating: 0, count: 1232)  // RFC 1035 §2.3.4 allows 512; EDNS answers stay under 1232
        // A few datagrams per event (level-triggered: more wake us again), answers and strays alike.
        for _ in 0..<4 {
            let n = buf.withUnsafeMutableBytes { recv(fd.raw, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                // ECONNREFUSED: the ICMP port-unreachable of a server with no resolver (reported
                // once): ask the next one now rather than after the silence. EAGAIN: drained.
                if pyry_errno() == ECONNREFUSED { resolver?.refused(lookup: lookup) }
                return
            }
            resolver?.received(Array(buf[0..<n]), lookup: lookup)
            if token == nil { return }  // the lookup finished and closed us
        }
    }

    func close(_ reactor: Reactor) {
        if let token { reactor.deregisterBeforeClose(token: token) }
        token = nil
        fd.close()
    }
}
