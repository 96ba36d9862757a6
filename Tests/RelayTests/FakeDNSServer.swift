import CEpoll
import Foundation  // Thread: the fake resolver must answer while the probe blocks in poll(2).

@testable import RelaySystem

/// A one-shot UDP DNS server on 127.0.0.1 for FlyDNSSignal tests: answers the first query it
/// receives with `addresses` as AAAA records (owner name compressed to the question, 0xC00C).
final class FakeDNSServer: Sendable {
    let fd: Int32
    let port: UInt16

    init() {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var tv = timeval(tv_sec: 5, tv_usec: 0)  // a failed test must not leave the thread blocked forever
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let any = SocketAddress(ip: "127.0.0.1", port: 0)!
        _ = try? any.withSockAddr { sa, len in pyry_bind(fd, sa, len) }
        var s = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &s) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = pyry_getsockname(fd, $0, &len) }
        }
        self.fd = fd
        port = UInt16(bigEndian: s.sin_port)
    }

    deinit { close(fd) }

    var address: String { "127.0.0.1:\(port)" }

    /// Starts a thread that answers one query; `strayFirst` sends a reply with the wrong ID first.
    func answerOnce(_ addresses: [[UInt8]], strayFirst: Bool = false) {
        let fd = self.fd
        Thread {
            var buf = [UInt8](repeating: 0, count: 512)
            var peer = sockaddr_storage()
            var plen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &peer) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    pyry_recvfrom(fd, &buf, buf.count, 0, $0, &plen)
                }
            }
            guard n >= 12 else { return }
            let query = Array(buf[0..<n])
            func reply(_ id: (UInt8, UInt8)) -> [UInt8] {
                var r: [UInt8] = [id.0, id.1, 0x81, 0x80, 0x00, 0x01, 0x00, UInt8(addresses.count), 0, 0, 0, 0]
                r += query[12...]
                for a in addresses { r += [0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x10] + a }
                return r
            }
            var replies = [reply((query[0], query[1]))]
            if strayFirst { replies.insert(reply((query[0] ^ 0xff, query[1])), at: 0) }
            for r in replies {
                _ = withUnsafePointer(to: &peer) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        pyry_sendto(fd, r, r.count, 0, $0, plen)
                    }
                }
            }
        }.start()
    }
}
