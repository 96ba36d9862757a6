import CEpoll
import RelaySystem
import RelayReactor
import RelayTransport

/// docs/architecture.md (v1 = single-instance) Fly.io signal: ask Fly's internal resolver for `<FLY_APP_NAME>.internal` AAAA,
/// one UDP datagram, and compare the machines' 6PN addresses with our `FLY_PRIVATE_IP`.
/// Any address other than ours → `multiple`; exactly ours → `single`; no answer → `unknown`.
public final class FlyDNSSignal: ReplicaSignal {
    public let name = "fly"
    public let isPlatform = true
    /// Fly's internal resolver (fly.io docs: "Private Networking", `fdaa::3`).
    public static let defaultServer = "[fdaa::3]:53"
    /// docs/architecture.md (v1 = single-instance): 2 s. (Candidate for `Limits.flyDNSTimeoutMs`.)
    public static let defaultTimeoutMs: Int64 = 2_000

    package let appName: String
    package let ownAddress: [UInt8]?  // FLY_PRIVATE_IP as 16 octets; nil when unset or not IPv6
    package let server: SocketAddress
    package let timeoutMs: Int64

    /// nil when `FLY_APP_NAME` is unset or empty: the signal does not apply.
    public init?(env: [String: String], server: SocketAddress? = nil,
                 timeoutMs: Int64 = FlyDNSSignal.defaultTimeoutMs) {
        guard let app = env["FLY_APP_NAME"], !app.isEmpty else { return nil }
        appName = app
        ownAddress = env["FLY_PRIVATE_IP"].flatMap(Self.ipv6Octets)
        self.server = server ?? (try! SocketAddress(parsing: Self.defaultServer))
        self.timeoutMs = timeoutMs
    }

    package static func ipv6Octets(_ text: String) -> [UInt8]? {
        var a = in6_addr()
        guard inet_pton(AF_INET6, text, &a) == 1 else { return nil }
        return withUnsafeBytes(of: a) { Array($0) }
    }

    public func probe() -> ReplicaSignalAnswer {
        let id = UInt16.random(in: .min ... .max)
        let query: [UInt8]
        do throws(DNSMessage.QueryError) {
            query = try DNSMessage.aaaaQuery(id: id, name: appName + ".internal")
        } catch {
            return .unknown(evidence: "FLY_APP_NAME is not a valid DNS label; no query sent")
        }
        switch exchange(query, id: id) {
        case .failure(let why):
            return .unknown(evidence: "no answer from the resolver at \(server): \(why)")
        case .success(let response):
            return Self.classify(response, own: ownAddress)
        }
    }

    /// The rule of docs/architecture.md (v1 = single-instance) over a parsed answer (pure, tested with byte literals).
    package static func classify(_ r: DNSMessage.AAAAResponse, own: [UInt8]?) -> ReplicaSignalAnswer {
        // NXDOMAIN (3) is an answer with no machines; any other failure code is no answer.
        guard r.rcode == 0 || r.rcode == 3 else {
            return .unknown(evidence: "the resolver answered with rcode \(r.rcode)")
        }
        var distinct: [[UInt8]] = []
        for a in r.addresses where !distinct.contains(a) { distinct.append(a) }
        let tc = r.truncated ? " (truncated answer)" : ""
        guard let own else {
            if distinct.count >= 2 {
                return .multiple(evidence: "the app's .internal name has \(distinct.count) machine addresses\(tc)")
            }
            return .unknown(evidence: "FLY_PRIVATE_IP is unset or not IPv6 and the app's .internal name has "
                + "\(distinct.count) address(es)\(tc)")
        }
        let others = distinct.filter { $0 != own }.count
        if others > 0 {
            return .multiple(evidence: "the app's .internal name has \(others) machine address(es) other than "
                + "FLY_PRIVATE_IP\(tc)")
        }
        if distinct.count == 1 && !r.truncated {
            return .single(evidence: "the app's .internal name has exactly one address, FLY_PRIVATE_IP")
        }
        if distinct.count == 1 {
            return .unknown(evidence: "the answer was truncated after our own address")
        }
        return .unknown(evidence: "the app's .internal name has no AAAA records\(tc)")
    }

    /// One query, one answer, within `timeoutMs` (poll(2) on a non-blocking connected UDP socket;
    /// `connect` makes the kernel drop datagrams from any other source). Answers with the wrong ID
    /// or question are ignored until the deadline.
    package func exchange(_ query: [UInt8], id: UInt16) -> Result<DNSMessage.AAAAResponse, ExchangeError> {
        let raw: Int32
        do throws(Errno) {
            raw = try syscallChecked("socket") {
                socket(server.family, Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
            }
        } catch {
            return .failure(ExchangeError("\(error)"))
        }
        let fd = FileDescriptor(raw)
        do throws(Errno) {
            _ = try server.withSockAddr { sa, len throws(Errno) in
                try syscallChecked("connect") { pyry_connect(fd.raw, sa, len) }
            }
            _ = try syscallChecked("send") { query.withUnsafeBytes { send(fd.raw, $0.baseAddress, $0.count, 0) } }
        } catch {
            return .failure(ExchangeError("\(error)"))
        }
        let deadline = Self.monotonicMs() + timeoutMs
        let expectedName = appName.lowercased() + ".internal"
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            var pfd = pollfd(fd: fd.raw, events: Int16(POLLIN), revents: 0)
            do throws(Errno) {
                let ready = try syscallChecked("poll") {
                    // Recomputed on each EINTR retry so a signal cannot extend the 2 s budget.
                    poll(&pfd, 1, Int32(clamping: max(0, deadline - Self.monotonicMs())))
                }
                if ready == 0 { return .failure(ExchangeError("timeout after \(timeoutMs) ms")) }
                let n: Int
                switch try syscall("recv", { buf.withUnsafeMutableBytes { recv(fd.raw, $0.baseAddress, $0.count, 0) } }) {
                case .done(let v): n = v
                case .wouldBlock: continue
                }
                if let r = try? DNSMessage.parseAAAAResponse(Array(buf[0..<n])), r.id == id,
                   r.questionName == nil || r.questionName == expectedName {
                    return .success(r)
                }
                // A stray or malformed datagram: keep waiting for ours until the deadline.
            } catch {
                // ECONNREFUSED here is the ICMP port-unreachable of the resolver, reported on a connected socket.
                return .failure(ExchangeError("\(error)"))
            }
        }
    }

    package struct ExchangeError: Error, CustomStringConvertible {
        package let description: String
        package init(_ d: String) { description = d }
    }

    package static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
    }
}
