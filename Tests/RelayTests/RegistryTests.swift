import Testing
@testable import RelayCodecs
@testable import RelayCore

/// docs/protocol.md §5 and §8 scenarios, driven as a pure state machine.
@Suite struct RegistryTests {
    let b1 = ConnHandle(1), b2 = ConnHandle(2), b3 = ConnHandle(3)
    let p1 = ConnHandle(11), p2 = ConnHandle(12), p3 = ConnHandle(13)

    func makeRegistry(maxPhones: Int = 16) -> Registry {
        Registry(graceMs: 30_000, probeTimeoutMs: 10_000, maxPhonesPerServer: maxPhones)
    }

    /// Registers and returns the conn id.
    @discardableResult
    func register(_ r: Registry, _ p: ConnHandle, _ id: String = "srv", random: UInt32 = 0) -> String {
        guard case .registered(let suffix) = r.registerPhone(p, serverID: id, random: random) else {
            Issue.record("phone not registered")
            return ""
        }
        return ConnectionID.make(role: .phone, serverID: id, random: suffix)
    }

    // MARK: Claims

    @Test func firstClaimWins() {
        let r = makeRegistry()
        #expect(r.claimBinary(b1, serverID: "srv", now: 0) == [.claimed(b1, serverID: "srv", kind: .fresh)])
        #expect(r.connectedBinaries == 1)
        #expect(r.liveBinary(serverID: "srv") == b1)
        #expect(r.liveBinary(serverID: "other") == nil)
    }

    @Test func recordsOfOneServerIDCanShareTheRegistrysString() {
        let r = makeRegistry()
        let id = "a-server-id-longer-than-fifteen-bytes-\(Int.random(in: 0..<10))"  // heap-allocated
        let heard = String(decoding: Array(id.utf8), as: UTF8.self)  // equal, own storage (a header)
        #expect(r.sharedServerID(heard) == heard, "no slot yet: the argument")
        _ = r.claimBinary(b1, serverID: id, now: 0)
        var shared = r.sharedServerID(heard)
        var original = id
        #expect(shared == heard)
        let sameBlock = shared.withUTF8 { a in original.withUTF8 { b in a.baseAddress == b.baseAddress } }
        #expect(sameBlock, "the slot's string, not a copy")
        #expect(r.sharedServerID("other") == "other")
    }

    @Test func secondClaimProbesThenGets4409WhenIncumbentAnswers() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        let c1 = register(r, p1, random: 1)
        #expect(r.claimBinary(b2, serverID: "srv", now: 500) == [
            .probeIncumbent(b1), .armTimer(.probe(newcomer: b2, token: 1), atMs: 10_500),
        ])
        #expect(r.isPending(b2))
        #expect(r.connectedBinaries == 1)
        #expect(r.incumbentAnswered(b1, now: 900) == [
            .closeConn(b2, code: CloseCode(4409), reason: "server-id already claimed"),
            .claimRefused(b2, serverID: "srv"),
        ])
        // Incumbent and its phones untouched.
        #expect(r.liveBinary(serverID: "srv") == b1)
        #expect(r.route(phone: p1) == .forward(binary: b1))
        #expect(r.phone(connID: c1, ofBinary: b1) == p1)
        // The probe deadline firing later is stale.
        #expect(r.timerFired(.probe(newcomer: b2, token: 1), now: 10_500) == [])
        // A refused newcomer disconnecting changes nothing.
        #expect(r.binaryDisconnected(b2, now: 11_000) == [])
        #expect(r.liveBinary(serverID: "srv") == b1)
        // A pong without pending probes is nothing.
        #expect(r.incumbentAnswered(b1, now: 12_000) == [])
    }

    @Test func takeoverAfterProbeTimeout() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        register(r, p2, random: 2)
        _ = r.claimBinary(b2, serverID: "srv", now: 1_000)
        #expect(r.timerFired(.probe(newcomer: b2, token: 1), now: 11_000) == [
            .closeConn(b1, code: CloseCode(1011), reason: "heartbeat timeout"),
            .closeConn(p1, code: CloseCode(4404), reason: "binary reclaimed server-id"),
            .closeConn(p2, code: CloseCode(4404), reason: "binary reclaimed server-id"),
            .claimed(b2, serverID: "srv", kind: .takeover),
        ])
        #expect(r.liveBinary(serverID: "srv") == b2)
        #expect(r.connectedBinaries == 1)
        #expect(r.connectedPhones == 0)
        // The evicted phones are forgotten: no close notice to the new binary.
        #expect(r.phoneLeft(p1, closeCode: nil, closedByBinary: false) == [])
        #expect(r.route(phone: p2) == .unknown)
        // The displaced incumbent's disconnect must not arm grace over the new binary.
        #expect(r.binaryDisconnected(b1, now: 11_500) == [])
        #expect(r.liveBinary(serverID: "srv") == b2)
        // A late pong from the old incumbent is nothing.
        #expect(r.incumbentAnswered(b1, now: 11_600) == [])
    }

    @Test func slotChangedHandsDuringTheWaitGives4409() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.claimBinary(b2, serverID: "srv", now: 1_000)  // probe token 1
        _ = r.claimBinary(b3, serverID: "srv", now: 2_000)  // probe token 2
        // b2's deadline: b2 takes over; b3 was waiting on the same incumbent, which no longer holds it.
        #expect(r.timerFired(.probe(newcomer: b2, token: 1), now: 11_000) == [
            .closeConn(b1, code: CloseCode(1011), reason: "heartbeat timeout"),
            .closeConn(b3, code: CloseCode(4409), reason: "server-id already claimed"),
            .claimRefused(b3, serverID: "srv"),
            .claimed(b2, serverID: "srv", kind: .takeover),
        ])
        #expect(r.timerFired(.probe(newcomer: b3, token: 2), now: 12_000) == [])
        #expect(r.liveBinary(serverID: "srv") == b2)
    }

    @Test func incumbentVanishingDuringProbeHandsOverAtOnce() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        _ = r.claimBinary(b2, serverID: "srv", now: 1_000)
        _ = r.claimBinary(b3, serverID: "srv", now: 1_500)
        #expect(r.binaryDisconnected(b1, now: 2_000) == [
            .closeConn(b3, code: CloseCode(4409), reason: "server-id already claimed"),
            .claimRefused(b3, serverID: "srv"),
            .closeConn(p1, code: CloseCode(4404), reason: "binary reclaimed server-id"),
            .claimed(b2, serverID: "srv", kind: .takeover),
        ])
        #expect(r.connectedBinaries == 1)
    }

    @Test func pendingNewcomerDisconnecting() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.claimBinary(b2, serverID: "srv", now: 1_000)
        #expect(r.binaryDisconnected(b2, now: 2_000) == [])
        #expect(r.timerFired(.probe(newcomer: b2, token: 1), now: 11_000) == [])
        #expect(r.incumbentAnswered(b1, now: 3_000) == [])
        #expect(r.liveBinary(serverID: "srv") == b1)
    }

    // MARK: Grace

    @Test func disconnectArmsGraceAndPhonesStay() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        #expect(r.binaryDisconnected(b1, now: 5_000) == [.armTimer(.grace(serverID: "srv", token: 1), atMs: 35_000)])
        #expect(r.connectedBinaries == 0)  // excluded while in grace…
        #expect(r.connectedPhones == 1)  // …its phones are still counted
        #expect(r.liveBinary(serverID: "srv") == nil)
        // A phone message during grace closes that phone 1000.
        #expect(r.route(phone: p1) == .closePhone(code: CloseCode(1000), reason: ""))
        // …and it leaves without a notice (no binary to send it to).
        #expect(r.phoneLeft(p1, closeCode: nil, closedByBinary: false) == [])
        #expect(r.connectedPhones == 0)
        // A second disconnect report is a no-op.
        #expect(r.binaryDisconnected(b1, now: 6_000) == [])
    }

    @Test func newPhonesMayRegisterDuringGrace() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.binaryDisconnected(b1, now: 1_000)
        #expect(r.registerPhone(p1, serverID: "srv", random: 7) == .registered(suffix: 7))
        #expect(r.connID(ofPhone: p1) == "client-srv-00000007")
        #expect(r.connectedPhones == 1)
    }

    @Test func reclaimEvictsPhonesWith4404AndNoNotices() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        _ = r.binaryDisconnected(b1, now: 1_000)
        register(r, p2, random: 2)  // registered during grace
        #expect(r.claimBinary(b2, serverID: "srv", now: 2_000) == [
            .closeConn(p1, code: CloseCode(4404), reason: "binary reclaimed server-id"),
            .closeConn(p2, code: CloseCode(4404), reason: "binary reclaimed server-id"),
            .claimed(b2, serverID: "srv", kind: .reclaim),
        ])
        #expect(r.connectedPhones == 0)
        #expect(r.connectedBinaries == 1)
        // The evicted phones' departures reach nobody.
        #expect(r.phoneLeft(p1, closeCode: 1000, closedByBinary: false) == [])
        #expect(r.phoneLeft(p2, closeCode: nil, closedByBinary: false) == [])
        // The stale grace timer does nothing.
        #expect(r.timerFired(.grace(serverID: "srv", token: 1), now: 31_000) == [])
        #expect(r.liveBinary(serverID: "srv") == b2)
    }

    @Test func graceExpiryClosesPhones1000AndCounts() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        register(r, p2, random: 2)
        _ = r.binaryDisconnected(b1, now: 1_000)
        #expect(r.timerFired(.grace(serverID: "srv", token: 1), now: 31_000) == [
            .closeConn(p1, code: CloseCode(1000), reason: ""),
            .closeConn(p2, code: CloseCode(1000), reason: ""),
            .graceExpired(serverID: "srv", phonesClosed: 2),
        ])
        #expect(r.connectedPhones == 0)
        #expect(r.phoneLeft(p1, closeCode: nil, closedByBinary: false) == [])
        // The id is free again.
        #expect(r.registerPhone(p3, serverID: "srv", random: 0) == .rejected(code: CloseCode(4404), reason: "no server with that id"))
        #expect(r.claimBinary(b2, serverID: "srv", now: 32_000) == [.claimed(b2, serverID: "srv", kind: .fresh)])
        // Firing the same timer twice does nothing.
        #expect(r.timerFired(.grace(serverID: "srv", token: 1), now: 33_000) == [])
    }

    @Test func staleGraceTimerAfterReclaimAndNewGrace() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.binaryDisconnected(b1, now: 1_000)  // grace token 1
        _ = r.claimBinary(b2, serverID: "srv", now: 2_000)  // reclaim
        #expect(r.binaryDisconnected(b2, now: 3_000) == [.armTimer(.grace(serverID: "srv", token: 2), atMs: 33_000)])
        // The first window's timer fires (the caller failed to cancel it): still a no-op.
        #expect(r.timerFired(.grace(serverID: "srv", token: 1), now: 31_000) == [])
        #expect(r.timerFired(.grace(serverID: "srv", token: 2), now: 33_000) == [.graceExpired(serverID: "srv", phonesClosed: 0)])
    }

    // MARK: Phones

    @Test func phoneRegistrationOrder() {
        let r = makeRegistry(maxPhones: 2)
        #expect(r.registerPhone(p1, serverID: "srv", random: 1) == .rejected(code: CloseCode(4404), reason: "no server with that id"))
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        #expect(r.registerPhone(p1, serverID: "srv", random: 0xAB) == .registered(suffix: 0xAB))
        #expect(r.registerPhone(p2, serverID: "srv", random: 2) == .registered(suffix: 2))
        #expect(r.connID(ofPhone: p2) == "client-srv-00000002")
        #expect(r.registerPhone(p3, serverID: "srv", random: 3) == .rejected(code: CloseCode(4429), reason: "too many phones for server-id"))
        #expect(r.connectedPhones == 2)
        _ = r.phoneLeft(p2, closeCode: 1000, closedByBinary: false)
        #expect(r.registerPhone(p3, serverID: "srv", random: 3) == .registered(suffix: 3))
        #expect(r.connID(ofPhone: p3) == "client-srv-00000003")
    }

    @Test func noCapWhenMaxIsZero() {
        let r = makeRegistry(maxPhones: 0)
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        for k in 0..<40 { register(r, ConnHandle(100 + UInt64(k)), random: UInt32(k)) }
        #expect(r.connectedPhones == 40)
    }

    @Test func collidingRandomsGetDistinctIDs() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        let a = register(r, p1, random: 0xFFFF_FFFF)
        let b = register(r, p2, random: 0xFFFF_FFFF)
        #expect(a == "client-srv-ffffffff")
        #expect(b == "client-srv-00000000")
        #expect(r.phone(connID: a, ofBinary: b1) == p1)
        #expect(r.phone(connID: b, ofBinary: b1) == p2)
    }

    @Test func binaryToPhoneLookup() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.claimBinary(b2, serverID: "other", now: 0)
        let c1 = register(r, p1, "srv", random: 0xDEADBEEF)
        let c2 = register(r, p2, "other", random: 0xDEADBEEF)
        #expect(r.phone(connID: c1, ofBinary: b1) == p1)
        #expect(r.phone(connID: c2, ofBinary: b2) == p2)
        // A conn_id must belong to the binary's own server-id.
        #expect(r.phone(connID: c2, ofBinary: b1) == nil)
        #expect(r.phone(connID: "client-srv-DEADBEEF", ofBinary: b1) == nil)
        #expect(r.phone(connID: "client-srv-00000000", ofBinary: b1) == nil)
        #expect(r.phone(connID: "", ofBinary: b1) == nil)
        #expect(r.phone(connID: c1, ofBinary: ConnHandle(999)) == nil)
        // A binary in grace reaches nobody (it is dead anyway).
        _ = r.binaryDisconnected(b1, now: 1)
        #expect(r.phone(connID: c1, ofBinary: b1) == nil)
    }

    @Test func phoneIDsWithCharactersThatNeedEscaping() {
        let r = makeRegistry()
        let id = "a\"b<c"
        _ = r.claimBinary(b1, serverID: id, now: 0)
        let c = register(r, p1, id, random: 1)
        #expect(c == "client-a\"b<c-00000001")
        // Round trip: wrap escapes it like Go, the binary echoes it, the parser decodes it.
        let wrapped = Envelope.wrap(connID: c, frame: Array("1".utf8))
        let env = Envelope.parseBinaryEnvelope(wrapped)
        let found = wrapped.withUnsafeBytes { buf in
            env?.withConnIDBytes(in: buf) { r.phone(connID: $0, ofBinary: b1) }
        }
        #expect(found == p1)
    }

    // MARK: Close notice (docs/protocol.md §8)

    @Test func closeNoticeWhenPhoneLeavesOnItsOwn() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        let c1 = register(r, p1, random: 1)
        let c2 = register(r, p2, random: 2)
        #expect(r.phoneLeft(p1, closeCode: 4000, closedByBinary: false) == [.sendCloseNotice(binary: b1, phoneConnID: c1, code: 4000)])
        // No close code (dropped, or sent non-JSON) → 1001.
        #expect(r.phoneLeft(p2, closeCode: nil, closedByBinary: false) == [.sendCloseNotice(binary: b1, phoneConnID: c2, code: 1001)])
        #expect(r.connectedPhones == 0)
        #expect(r.phone(connID: c1, ofBinary: b1) == nil)
        // Reported twice: once only.
        #expect(r.phoneLeft(p1, closeCode: 4000, closedByBinary: false) == [])
    }

    @Test func noCloseNoticeWhenTheBinaryAskedForTheClose() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        #expect(r.phoneLeft(p1, closeCode: 4401, closedByBinary: true) == [])
        #expect(r.connectedPhones == 0)
    }

    @Test func noCloseNoticeToABinaryThePhoneDidNotRegisterWith() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        _ = r.binaryDisconnected(b1, now: 1_000)
        register(r, p1, random: 1)  // registered with b1, in grace
        // p1 leaves during grace: nobody to notify.
        #expect(r.phoneLeft(p1, closeCode: 1000, closedByBinary: false) == [])
        // Binary in grace, then phone registered, then reclaim evicts it: covered by
        // reclaimEvictsPhonesWith4404AndNoNotices. Here, a phone registered with the new binary
        // does get its notice.
        _ = r.claimBinary(b2, serverID: "srv", now: 2_000)
        let c2 = register(r, p2, random: 2)
        #expect(r.phoneLeft(p2, closeCode: nil, closedByBinary: false) == [.sendCloseNotice(binary: b2, phoneConnID: c2, code: 1001)])
    }

    @Test func ordinaryLifecycleCounts() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "a", now: 0)
        _ = r.claimBinary(b2, serverID: "b", now: 0)
        register(r, p1, "a", random: 1)
        register(r, p2, "b", random: 1)
        #expect(r.connectedBinaries == 2)
        #expect(r.connectedPhones == 2)
        _ = r.binaryDisconnected(b2, now: 10)
        #expect(r.connectedBinaries == 1)
        #expect(r.connectedPhones == 2)
        #expect(r.route(phone: p1) == .forward(binary: b1))
        #expect(r.route(phone: p2) == .closePhone(code: .normal, reason: ""))
        #expect(r.route(phone: p3) == .unknown)
    }

    /// Binaries and phones share one table: a report of the wrong kind leaves an entry alone.
    @Test func aReportForTheOtherRoleLeavesAnEntryAlone() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        register(r, p1, random: 1)
        #expect(r.binaryDisconnected(p1, now: 1) == [])
        #expect(r.phoneLeft(b1, closeCode: nil, closedByBinary: false) == [])
        #expect(r.route(phone: p1) == .forward(binary: b1))
        #expect(r.connectedBinaries == 1 && r.connectedPhones == 1 && !r.isPending(p1))
    }

    /// Every idle connection has one entry in the registry: a binary's is one reference, a
    /// phone's holds no String (docs/benchmarks.md, M1).
    @Test func perConnectionEntriesStayCompact() {
        #expect(MemoryLayout<Registry.BinaryState>.size == 8)
        #expect(MemoryLayout<Registry.Member?>.stride <= 8)  // one array slot per connection
    }

    @Test func closeNoticeRebuildsThePhonesConnID() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        #expect(r.registerPhone(p1, serverID: "srv", random: 0xabc) == .registered(suffix: 0xabc))
        let id = "client-srv-00000abc"
        #expect(r.connID(ofPhone: p1) == id)
        #expect(r.phoneLeft(p1, closeCode: nil, closedByBinary: false)
            == [.sendCloseNotice(binary: b1, phoneConnID: id, code: CloseCode.goingAway.rawValue)])
    }

    /// A phone's key is found beside its handle in the slot, with several phones on the id too:
    /// each leaving phone's notice names it, and the others stay routable.
    @Test func eachOfSeveralPhonesLeavesWithItsOwnConnID() {
        let r = makeRegistry()
        _ = r.claimBinary(b1, serverID: "srv", now: 0)
        #expect(r.registerPhone(p1, serverID: "srv", random: 7) == .registered(suffix: 7))
        #expect(r.registerPhone(p2, serverID: "srv", random: 7) == .registered(suffix: 8))  // collision: next free
        #expect(r.registerPhone(p3, serverID: "srv", random: 0xfeed) == .registered(suffix: 0xfeed))
        #expect(r.connID(ofPhone: p2) == "client-srv-00000008")
        #expect(r.phoneLeft(p2, closeCode: 4000, closedByBinary: false)
            == [.sendCloseNotice(binary: b1, phoneConnID: "client-srv-00000008", code: 4000)])
        #expect(r.connID(ofPhone: p2) == nil && r.route(phone: p2) == .unknown)
        #expect(r.phoneLeft(p2, closeCode: nil, closedByBinary: false) == [])  // once only
        #expect(r.connID(ofPhone: p1) == "client-srv-00000007" && r.route(phone: p1) == .forward(binary: b1))
        #expect(r.phone(connID: "client-srv-0000feed", ofBinary: b1) == p3)
        #expect(r.phoneLeft(p3, closeCode: nil, closedByBinary: false)
            == [.sendCloseNotice(binary: b1, phoneConnID: "client-srv-0000feed", code: CloseCode.goingAway.rawValue)])
        #expect(r.phoneLeft(p1, closeCode: nil, closedByBinary: true) == [])
        #expect(r.connectedPhones == 0)
    }
}
