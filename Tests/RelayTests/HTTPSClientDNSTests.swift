import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayReactor
@testable import RelayTransport

/// A UDP nameserver on 127.0.0.1 served by the test's reactor: answers A and AAAA questions from
/// `records` (NXDOMAIN for other names), or stays silent (`silent`) like a dead resolver.
final class ReactorDNSServer: EventHandler {
    var fd: FileDescriptor
    let address: SocketAddress
    var records: [String: (a: [[UInt8]], aaaa: [[UInt8]])]
    var silent = false
    /// (name, type) of every question received.
    private(set) var questions: [(String, UInt16)] = []

    init(reactor: Reactor, records: [String: (a: [[UInt8]], aaaa: [[UInt8]])]) throws {
        self.records = records
        let raw = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        fd = FileDescriptor(raw)
        var any = SocketAddress(ip: "127.0.0.1", port: 1)!
        withUnsafeMutableBytes(of: &any.storage) { $0.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self) }
        _ = try any.withSockAddr { sa, len throws(Errno) in try syscallChecked("bind") { pyry_bind(raw, sa, len) } }
        address = Socket.localAddress(raw)
        super.init()
        _ = try reactor.register(fd: fd.raw, events: Reactor.readable, handler: self)
    }

    override func handleEvent(_ events: UInt32) {
        var buf = [UInt8](repeating: 0, count: 512)
        var peer = sockaddr_storage()
        var plen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let n = withUnsafeMutablePointer(to: &peer) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { pyry_recvfrom(fd.raw, &buf, buf.count, 0, $0, &plen) }
        }
        guard n >= 12, let (name, end) = try? DNSMessage.readName(Array(buf[0..<n]), at: 12), end + 4 <= n else { return }
        let type = UInt16(buf[end]) << 8 | UInt16(buf[end + 1])
        questions.append((name, type))
        if silent { return }
        let answers = records[name].map { type == DNSMessage.typeA ? $0.a : $0.aaaa } ?? []
        let rcode: UInt8 = records[name] == nil ? 3 : 0
        var r: [UInt8] = [buf[0], buf[1], 0x81, 0x80 | rcode, 0x00, 0x01, 0x00, UInt8(answers.count), 0, 0, 0, 0]
        r += buf[12..<(end + 4)]
        for a in answers {
            r += [0xc0, 0x0c, UInt8(type >> 8), UInt8(type & 0xff), 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, UInt8(a.count)] + a
        }
        _ = withUnsafePointer(to: &peer) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { pyry_sendto(fd.raw, r, r.count, 0, $0, plen) }
        }
    }
}

@Suite struct HTTPSClientDNSTests {
    let reactor: Reactor
    static let loopback6: [UInt8] = Array(repeating: 0, count: 15) + [1]

    init() throws {
        _ = TestPKI.dir
        reactor = try Reactor()
    }

    func client(_ servers: [SocketAddress], hosts: [String: [String]] = [:]) throws -> HTTPSClient {
        try HTTPSClient(reactor: reactor, deadlineMs: 5_000, maxResponseBytes: 4_096,
                        resolverConfiguration: { ResolverConfiguration(nameservers: servers, hosts: hosts) })
    }

    func call(_ c: HTTPSClient, _ url: String) -> Result<HTTPSResponse, HTTPSFailure>? {
        var outcome: Result<HTTPSResponse, HTTPSFailure>?
        c.send(HTTPSRequest(method: "GET", url: HTTPSURL(url)!)) { outcome = $0 }
        pump(reactor, timeoutMs: 8_000) { outcome != nil }
        return outcome
    }

    @Test func nameResolvedOverUDPTriesAAAAThenA() throws {
        // ::1 first (nothing listens there on this port: refused), then 127.0.0.1.
        let dns = try ReactorDNSServer(reactor: reactor, records: ["push.test": (a: [[127, 0, 0, 1]], aaaa: [Self.loopback6])])
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(HTTPSTestServer.response(body: "via dns")) }
        let c = try client([dns.address])
        let r = try call(c, "https://Push.Test:\(server.port)/x")!.get()
        #expect(String(decoding: r.body, as: UTF8.self) == "via dns")
        #expect(Set(dns.questions.map { "\($0.0) \($0.1)" }) == ["push.test 1", "push.test 28"])
        #expect(String(decoding: server.requests[0].bytes, as: UTF8.self).contains("\r\nHost: push.test:\(server.port)\r\n"))
        #expect(c.resolver.activeLookups == 0)
    }

    @Test func unknownNameFailsWithResolve() throws {
        let dns = try ReactorDNSServer(reactor: reactor, records: [:])
        let c = try client([dns.address])
        #expect(call(c, "https://nowhere.test/") == .failure(.resolve))
        #expect(dns.questions.count == 2)
        #expect(c.resolver.activeLookups == 0 && c.openConnections == 0)
    }

    @Test func noNameserverFailsAtOnce() throws {
        let c = try client([])
        let started = monotonicMs()
        #expect(call(c, "https://push.test/") == .failure(.resolve))
        #expect(monotonicMs() - started < 1_000)
        #expect(c.resolver.activeLookups == 0)
    }

    @Test func etcHostsEntryWinsOverDNS() throws {
        let dns = try ReactorDNSServer(reactor: reactor, records: [:])
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(HTTPSTestServer.response(body: "hosts")) }
        let c = try client([dns.address], hosts: ["push.test": ["127.0.0.1"]])
        #expect((try? call(c, "https://push.test:\(server.port)/")?.get().status) == 200)
        #expect(dns.questions.isEmpty)
    }

    @Test func silentNameserverIsSkippedForTheNext() throws {
        let dead = try ReactorDNSServer(reactor: reactor, records: [:])
        dead.silent = true
        let dns = try ReactorDNSServer(reactor: reactor, records: ["push.test": (a: [[127, 0, 0, 1]], aaaa: [])])
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(HTTPSTestServer.response(body: "second")) }
        let c = try client([dead.address, dns.address])
        c.resolver.retryMs = 100
        #expect((try? call(c, "https://push.test:\(server.port)/")?.get().status) == 200)
        #expect(dead.questions.count == 2 && dns.questions.count == 2)
    }

    @Test func refusingNameserverIsSkippedAtOnce() throws {
        // A UDP port with nothing bound: the kernel answers port-unreachable.
        let closed = try ReactorDNSServer(reactor: reactor, records: [:])
        let closedAddress = closed.address
        closed.fd.close()
        let dns = try ReactorDNSServer(reactor: reactor, records: ["push.test": (a: [[127, 0, 0, 1]], aaaa: [])])
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(HTTPSTestServer.response(body: "next")) }
        let c = try client([closedAddress, dns.address])
        c.resolver.retryMs = 3_000
        let started = monotonicMs()
        #expect((try? call(c, "https://push.test:\(server.port)/")?.get().status) == 200)
        #expect(monotonicMs() - started < 2_000, "not after the 3 s silence")
    }

    @Test func noAnswerEndsWithResolveAtTheLookupDeadline() throws {
        let dead = try ReactorDNSServer(reactor: reactor, records: [:])
        dead.silent = true
        let c = try client([dead.address])
        c.resolver.retryMs = 100
        c.resolveTimeoutMs = 400
        let started = monotonicMs()
        #expect(call(c, "https://push.test/") == .failure(.resolve))
        let elapsed = monotonicMs() - started
        #expect(elapsed >= 400 && elapsed < 2_000, "\(elapsed) ms")
        #expect(dead.questions.count == 4, "one server asked twice (A and AAAA each time)")
        #expect(c.resolver.activeLookups == 0)
    }

    @Test func unansweredConnectGivesWayToTheNextAddress() throws {
        let server = try HTTPSTestServer(reactor: reactor) { _, _, _ in .send(HTTPSTestServer.response(body: "second address")) }
        // 127.0.0.2, same port: a listener whose accept queue is full drops the SYN (a black hole).
        let hole = FileDescriptor(socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0))
        let holeAddress = SocketAddress(ip: "127.0.0.2", port: server.port)!
        _ = try holeAddress.withSockAddr { sa, len throws(Errno) in try syscallChecked("bind") { pyry_bind(hole.raw, sa, len) } }
        #expect(listen(hole.raw, 0) == 0)
        let filler = FileDescriptor(socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0))
        _ = try holeAddress.withSockAddr { sa, len throws(Errno) in try syscallChecked("connect") { pyry_connect(filler.raw, sa, len) } }
        let c = try HTTPSClient(reactor: reactor, deadlineMs: 2_000, maxResponseBytes: 4_096,
                                resolverConfiguration: { ResolverConfiguration(nameservers: [], hosts: ["push.test": ["127.0.0.2", "127.0.0.1"]]) })
        c.minConnectAttemptMs = 200
        let started = monotonicMs()
        let r = try call(c, "https://push.test:\(server.port)/")!.get()
        let elapsed = monotonicMs() - started
        #expect(String(decoding: r.body, as: UTF8.self) == "second address")
        #expect(elapsed >= 1_000 && elapsed < 1_900, "half the deadline for the first of two addresses: \(elapsed) ms")
        let holeOpen = hole.isOpen, fillerOpen = filler.isOpen  // both held to the end
        #expect(holeOpen && fillerOpen)
    }
}
