import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayOperations

/// FlyDNSSignal against a fake resolver on loopback (docs/architecture.md (v1 = single-instance) Fly.io signal).
@Suite struct FlyDNSSignalTests {
    static let ours: [UInt8] = [0xfd, 0xaa, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]
    static let other: [UInt8] = [0xfd, 0xaa, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02]
    static let env = ["FLY_APP_NAME": "myapp", "FLY_PRIVATE_IP": "fdaa:0:1::1"]

    static func signal(_ server: String, timeoutMs: Int64 = 2_000) -> FlyDNSSignal {
        FlyDNSSignal(env: env, server: try! SocketAddress(parsing: server), timeoutMs: timeoutMs)!
    }

    @Test func notApplicableWithoutAppName() {
        #expect(FlyDNSSignal(env: [:]) == nil)
        #expect(FlyDNSSignal(env: ["FLY_APP_NAME": ""]) == nil)
    }

    @Test func twoAddressesIsMultiple() {
        let server = FakeDNSServer()
        server.answerOnce([Self.ours, Self.other])
        #expect(Self.signal(server.address).probe()
            == .multiple(evidence: "the app's .internal name has 1 machine address(es) other than FLY_PRIVATE_IP"))
    }

    @Test func onlyOurAddressIsSingle() {
        let server = FakeDNSServer()
        server.answerOnce([Self.ours], strayFirst: true)  // the wrong-ID datagram is ignored
        #expect(Self.signal(server.address).probe().word == "single")
    }

    @Test func silenceIsUnknownAfterTheTimeout() {
        let server = FakeDNSServer()  // bound, never answers
        let t0 = monotonicNanos()
        let a = Self.signal(server.address, timeoutMs: 200).probe()
        let ms = (monotonicNanos() - t0) / 1_000_000
        #expect(a == .unknown(evidence: "no answer from the resolver at \(server.address): timeout after 200 ms"))
        #expect(ms >= 200 && ms < 2_000)
    }

    @Test func refusedPortIsUnknown() {
        let port: UInt16
        do { let s = FakeDNSServer(); port = s.port }  // closed again: nothing listens there now
        let a = Self.signal("127.0.0.1:\(port)", timeoutMs: 1_000).probe()
        #expect(a.word == "unknown")
        #expect(a.evidence.contains("recv: "))
    }
}
