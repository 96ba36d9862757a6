import Testing
@testable import RelayCodecs
@testable import RelayCore

/// The forwarding rules as a pure state machine: admission order (docs/protocol.md §3.3), the
/// outbox charge and water marks (§7.5), shedding (docs/operations.md "Memory") and close
/// notices (§8), each at its boundaries and in the orders that matter.
@Suite struct ForwardingCoreTests {
    static let a = ClientKey(ip: "192.0.2.1")!, b = ClientKey(ip: "192.0.2.2")!, c = ClientKey(ip: "192.0.2.3")!

    static func head(_ endpoint: Endpoint = .client, serverID: String = "srv", method: String = "GET",
                     version: String = "13", token: Bool = true) throws -> HTTPRequestHead {
        let path = endpoint == .server ? "/v1/server" : "/v1/client"
        var raw = "\(method) \(path) HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: \(version)\r\n"
            + "User-Agent: test\r\nX-Pyrycode-Server: \(serverID)\r\nX-Pyrycode-Version: 1\r\n"
        if token { raw += "X-Pyrycode-Token: t\r\n" }
        raw += "\r\n"
        var parser = HTTPRequestParser()
        let bytes = Array(raw.utf8)
        guard case .complete(let head, _) = bytes.withUnsafeBytes({ parser.parse($0) }) else {
            Issue.record("the parser refused the request")
            throw CancellationError()
        }
        return head
    }

    /// The refusal's name, or "101".
    static func outcome(_ a: Admission) -> String {
        switch a {
        case .admit: "101"
        case .refuse(.rateLimited): "429 rate"
        case .refuse(.overCapacity): "503"
        case .refuse(.clientOverCapacity): "429 ip"
        case .refuse(.badHeaders): "400 headers"
        case .refuse(.otherShard): "421"
        case .refuse(.handshake(let status, _)): "\(status.code) handshake"
        }
    }

    // MARK: Admission

    @Test func admissionOrderGlobalCapBeforePerClientCap() throws {
        let core = ForwardingCore(maxConnections: 2, maxConnectionsPerIP: 1)
        let h = try Self.head()
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.a, now: 0)) == "101")
        // The per-client cap, at its bound.
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.a, now: 0)) == "429 ip")
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.b, now: 0)) == "101")
        #expect(core.liveConnections == 2)
        // Both caps are hit: the global one answers (503 comes before the per-client 429).
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.a, now: 0)) == "503")
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.c, now: 0)) == "503")
        // A closed connection frees its place under both caps.
        core.connectionClosed(key: Self.a)
        #expect(core.liveConnections == 1 && core.perIP[Self.a] == nil)
        #expect(Self.outcome(core.admit(h, endpoint: .client, key: Self.a, now: 0)) == "101")
    }

    @Test func rateLimitComesFirstAndAnUnreadableClientIsRateLimited() throws {
        let core = ForwardingCore(maxConnections: 0)
        core.rateLimiter = RateLimiter(burst: 1, refillMs: 60_000, idleMs: 120_000)
        let bad = try Self.head(method: "POST", token: false)
        // Over the global cap and with bad headers, the first request is still charged to the bucket…
        #expect(Self.outcome(core.admit(bad, endpoint: .client, key: Self.a, now: 0)) == "503")
        // …so the second is refused by the bucket before anything else is looked at.
        #expect(Self.outcome(core.admit(bad, endpoint: .client, key: Self.a, now: 1)) == "429 rate")
        #expect(Self.outcome(core.admit(bad, endpoint: .client, key: nil, now: 1)) == "429 rate")
        // Another client has its own bucket; the bucket refills.
        #expect(Self.outcome(core.admit(bad, endpoint: .client, key: Self.b, now: 1)) == "503")
        #expect(Self.outcome(core.admit(bad, endpoint: .client, key: Self.a, now: 60_000)) == "503")
    }

    @Test func drainingRefusesEveryUpgrade503() throws {
        let core = ForwardingCore()
        core.beginDrain()
        #expect(core.draining)
        #expect(Self.outcome(core.admit(try Self.head(), endpoint: .client, key: Self.a, now: 0)) == "503")
        #expect(core.liveConnections == 0)
    }

    @Test func headerGateThenShardThenHandshake() throws {
        let shard = ShardAssignment(index: 0, count: 2)!
        let mine = (0..<100).map { "srv\($0)" }.first { shard.owns($0) }!
        let theirs = (0..<100).map { "srv\($0)" }.first { !shard.owns($0) }!
        let core = ForwardingCore(shard: shard)
        // Bad headers and a bad method and another shard's id: the header gate answers.
        let h1 = try Self.head(serverID: theirs, method: "POST", token: false)
        #expect(Self.outcome(core.admit(h1, endpoint: .client, key: Self.a, now: 0)) == "400 headers")
        // Headers fine, another shard, bad method: 421 before the RFC 6455 checks.
        let h2 = try Self.head(serverID: theirs, method: "POST")
        #expect(Self.outcome(core.admit(h2, endpoint: .client, key: Self.a, now: 0)) == "421")
        // Our shard: the RFC 6455 checks, in their own order.
        #expect(Self.outcome(core.admit(try Self.head(serverID: mine, method: "POST"), endpoint: .client,
                                        key: Self.a, now: 0)) == "405 handshake")
        #expect(Self.outcome(core.admit(try Self.head(serverID: mine, version: "8"), endpoint: .client,
                                        key: Self.a, now: 0)) == "400 handshake")
        // A binary's request is gated by its own headers (no token needed).
        #expect(Self.outcome(core.admit(try Self.head(.server, serverID: mine, token: false), endpoint: .server,
                                        key: Self.a, now: 0)) == "101")
        // Refusals take no place under the caps.
        #expect(core.liveConnections == 1 && core.perIP[Self.a] == 1)
    }

    // MARK: Water marks (phone → binary)

    @Test func waterMarksCrossEachWayOnceAtTheirBounds() {
        let core = ForwardingCore(highWater: 1_000, lowWater: 200)
        var binary = ForwardingState()
        #expect(core.messageToBinary(&binary, queuedBytes: 999) == .none)
        #expect(core.messageToBinary(&binary, queuedBytes: 1_000) == .pausePhones)
        #expect(binary.phonesPaused)
        // Already paused: no second pause however high it goes.
        #expect(core.messageToBinary(&binary, queuedBytes: 5_000) == .none)
        #expect(core.binaryDrained(&binary, queuedBytes: 201) == .none)
        #expect(core.binaryDrained(&binary, queuedBytes: 200) == .resumePhones)
        #expect(core.binaryDrained(&binary, queuedBytes: 0) == .none)
        // Between the marks nothing happens, either way.
        #expect(core.messageToBinary(&binary, queuedBytes: 600) == .none)
        #expect(core.messageToBinary(&binary, queuedBytes: 1_200) == .pausePhones)
        // A binary that leaves releases its phones only when it had paused them.
        #expect(core.binaryLeaves(&binary) == .resumePhones)
        #expect(core.binaryLeaves(&binary) == .none)
    }

    /// A binary with several phones, as the service drives it: every phone's message goes into
    /// the one binary queue; pausing and resuming apply to all its phones, newcomers included.
    @Test func severalPhonesPauseAndResumeTogether() {
        let core = ForwardingCore(highWater: 300, lowWater: 100)
        var binary = ForwardingState()
        var reading: [String: Bool] = ["p1": true, "p2": true]
        var queued = 0
        func apply(_ action: ForwardingAction) {
            if action == .pausePhones { for k in reading.keys { reading[k] = false } }
            if action == .resumePhones { for k in reading.keys { reading[k] = true } }
        }
        func send(_ phone: String, _ bytes: Int) {
            #expect(reading[phone] == true, "a paused phone is not read")
            queued += bytes
            apply(core.messageToBinary(&binary, queuedBytes: queued))
        }
        send("p1", 150)
        send("p2", 100)
        #expect(reading.values.allSatisfy { $0 })
        send("p2", 50)  // 300: high water
        #expect(reading == ["p1": false, "p2": false])
        // A phone that registers meanwhile starts paused.
        reading["p3"] = !core.phoneJoins(binary)
        #expect(reading["p3"] == false)
        queued = 150
        apply(core.binaryDrained(&binary, queuedBytes: queued))
        #expect(reading.values.allSatisfy { !$0 })
        queued = 0
        apply(core.binaryDrained(&binary, queuedBytes: queued))
        #expect(reading == ["p1": true, "p2": true, "p3": true])
        #expect(core.phoneJoins(binary) == false)
        send("p3", 300)
        #expect(reading.values.allSatisfy { !$0 })
    }

    // MARK: Outbox charge (binary → phone)

    @Test func outboxChargeIsLengthPlus64PerUnwrittenMessage() {
        let core = ForwardingCore(outboxBudget: 1_000, perMessageOverhead: 64)
        var phone = ForwardingState()
        // Empty queue: a frame of budget - 64 fits exactly; one byte more does not.
        #expect(core.messageToPhone(&phone, frameLength: 936, queuedBytes: 0, writtenBytes: 0, directive: nil) == .queue)
        var probe = phone
        #expect(core.messageToPhone(&probe, frameLength: 937, queuedBytes: 0, writtenBytes: 0, directive: nil)
            == .dropBacklog(code: .internalError))
        // Three messages queued, ending at 100, 200, 300 of the stream.
        for end in [100, 200, 300] { core.queuedToPhone(&phone, endingAt: end) }
        // Nothing written: 300 queued + 4 × 64 + frame.
        #expect(core.messageToPhone(&phone, frameLength: 444, queuedBytes: 300, writtenBytes: 0, directive: nil) == .queue)
        probe = phone
        #expect(core.messageToPhone(&probe, frameLength: 445, queuedBytes: 300, writtenBytes: 0, directive: nil)
            != .queue)
        // Two written (the second exactly to its end): only one message and this one are charged.
        #expect(core.messageToPhone(&phone, frameLength: 772, queuedBytes: 100, writtenBytes: 200, directive: nil) == .queue)
        probe = phone
        #expect(core.messageToPhone(&probe, frameLength: 773, queuedBytes: 100, writtenBytes: 200, directive: nil)
            != .queue)
        // All written: the ledger is empty again.
        #expect(core.messageToPhone(&phone, frameLength: 936, queuedBytes: 0, writtenBytes: 300, directive: nil) == .queue)
        #expect(core.closeNoticeNow(phone) == CloseCode.goingAway.rawValue)  // nothing decided yet
    }

    /// The ledger against a plain model, through a long backlog written in uneven steps and a
    /// steady stream written at once; written entries go in batches, so storage stays bounded,
    /// and a phone whose messages are each written before the next needs no entries at all.
    @Test func outboxLedgerCountsUnwrittenMessagesAndStaysBounded() {
        var ledger = OutboxLedger()
        var model: [Int] = []
        var end = 0
        var written = 0
        var most = 0
        func check() {
            model.removeAll { $0 <= written }
            #expect(ledger.unwrittenMessages(written: written) == model.count)
            most = max(most, ledger.storedEntries)
        }
        for _ in 0..<5_000 {
            end += 100
            ledger.messageQueued(endingAt: end)
            model.append(end)
        }
        check()
        while written < end {
            written = min(end, written + 777)
            check()
        }
        #expect(ledger.storedEntries == 0)
        for _ in 0..<1_000 {
            end += 64
            ledger.messageQueued(endingAt: end)
            model.append(end)
            written = end - 10  // the last message is still partly unwritten
            check()
            written = end
            check()
        }
        #expect(ledger.storedEntries == 0)  // each message was written before the next came
        #expect(most <= 5_000)
        // Two unwritten at once need the array; written out, its entries go.
        ledger.messageQueued(endingAt: end + 10)
        ledger.messageQueued(endingAt: end + 20)
        #expect(ledger.unwrittenMessages(written: end + 5) == 2)
        #expect(ledger.storedEntries == 1)
        #expect(ledger.unwrittenMessages(written: end + 15) == 1)
        #expect(ledger.unwrittenMessages(written: end + 20) == 0)
        #expect(ledger.storedEntries == 0)
    }

    @Test func overflowEndsThePhone1011AndItsBinaryHears1011() {
        let core = ForwardingCore(outboxBudget: 100, perMessageOverhead: 64)
        var phone = ForwardingState()
        #expect(core.messageToPhone(&phone, frameLength: 37, queuedBytes: 0, writtenBytes: 0, directive: nil)
            == .dropBacklog(code: .internalError))
        #expect(core.closeNoticeNow(phone) == 1011)
        // Whatever code the socket closes with later, the notice stays 1011.
        #expect(core.closeNotice(phone, peerCode: CloseCode(4000), localCode: nil, closedByPeer: true) == 1011)
    }

    @Test func overflowWithADirectiveUsesItsCodeAndSendsNoNotice() {
        let core = ForwardingCore(outboxBudget: 100, perMessageOverhead: 64)
        var phone = ForwardingState()
        #expect(core.messageToPhone(&phone, frameLength: 37, queuedBytes: 0, writtenBytes: 0, directive: 4001)
            == .dropBacklog(code: CloseCode(4001)))
        #expect(core.closeNoticeNow(phone) == nil)
        // A code that may not go on the wire (RFC 6455 §7.4.1: 1005) becomes 1000.
        var other = ForwardingState()
        #expect(core.messageToPhone(&other, frameLength: 37, queuedBytes: 0, writtenBytes: 0, directive: 1005)
            == .dropBacklog(code: .normal))
        // Under the budget the directive does not matter here: the frame is queued first.
        var fits = ForwardingState()
        #expect(core.messageToPhone(&fits, frameLength: 36, queuedBytes: 0, writtenBytes: 0, directive: 4001) == .queue)
    }

    /// The two directions are independent: a phone that overflows while its binary has paused
    /// the phones is closed at once; the binary's drain resumes the others later.
    @Test func phoneOverBudgetWhileItsBinaryIsPaused() {
        let core = ForwardingCore(outboxBudget: 1_000, perMessageOverhead: 64, highWater: 500, lowWater: 100)
        var binary = ForwardingState()
        var phone = ForwardingState()
        #expect(core.messageToBinary(&binary, queuedBytes: 600) == .pausePhones)
        #expect(core.messageToPhone(&phone, frameLength: 900, queuedBytes: 100, writtenBytes: 0, directive: nil)
            == .dropBacklog(code: .internalError))
        #expect(core.closeNoticeNow(phone) == 1011)
        #expect(binary.phonesPaused)
        #expect(core.binaryDrained(&binary, queuedBytes: 0) == .resumePhones)
    }

    // MARK: Close notices (docs/protocol.md §8)

    @Test func noticeCarriesTheCodeOfTheCloseThatEndedThePhone() {
        let core = ForwardingCore()
        let phone = ForwardingState()
        // The phone closed first: its code.
        #expect(core.closeNotice(phone, peerCode: CloseCode(4000), localCode: .normal, closedByPeer: true) == 4000)
        // …with no code: 1001.
        #expect(core.closeNotice(phone, peerCode: nil, localCode: nil, closedByPeer: true) == 1001)
        // We closed it (heartbeat, write stall): ours.
        #expect(core.closeNotice(phone, peerCode: CloseCode(4000), localCode: .internalError, closedByPeer: false) == 1011)
        // Dropped without a close: 1001.
        #expect(core.closeNotice(phone, peerCode: nil, localCode: nil, closedByPeer: false) == 1001)
    }

    @Test func nonJSONClosesThePhone1000AndTheBinaryHears1001() {
        let core = ForwardingCore()
        var phone = ForwardingState()
        #expect(core.phoneSentNonJSON(&phone) == .normal)
        #expect(core.closeNotice(phone, peerCode: CloseCode(1000), localCode: .normal, closedByPeer: false) == 1001)
        // Shed afterwards for memory: the relay's reason wins.
        core.phoneShed(&phone)
        #expect(core.closeNoticeNow(phone) == 1011)
    }

    @Test func noNoticeWhenTheBinaryAskedForTheClose() {
        let core = ForwardingCore()
        var phone = ForwardingState()
        #expect(core.binaryClosesPhone(&phone, code: 4002) == CloseCode(4002))
        #expect(core.closeNotice(phone, peerCode: CloseCode(4002), localCode: CloseCode(4002), closedByPeer: false) == nil)
        // Shedding it later does not bring the notice back.
        core.phoneShed(&phone)
        #expect(core.closeNoticeNow(phone) == nil)
        var other = ForwardingState()
        #expect(core.binaryClosesPhone(&other, code: 999) == .normal)  // not a close code: 1000
        #expect(core.binaryClosesPhone(&other, code: 1015) == .normal)  // reserved (RFC 6455 §7.4.1)
    }

    @Test func shedPhoneNoticeIs1011() {
        let core = ForwardingCore()
        var phone = ForwardingState()
        core.phoneShed(&phone)
        #expect(core.closeNoticeNow(phone) == 1011)
    }

    // MARK: Shedding (docs/operations.md "Memory")

    static func h(_ n: UInt64, phone: Bool, queued: Int = 0, held: Int = 0) -> ShedCandidate {
        ShedCandidate(handle: ConnHandle(n), isPhone: phone, queuedBytes: queued, heldBytes: held)
    }

    @Test func budgetBoundary() {
        let core = ForwardingCore(maxBufferedBytes: 1_000)
        #expect(!core.overBudget(bufferedBytes: 1_000))
        #expect(core.overBudget(bufferedBytes: 1_001))
        #expect(!core.overBudget(bufferedBytes: 900, extra: 100))
        #expect(core.overBudget(bufferedBytes: 900, extra: 101))
    }

    @Test func theLargestHolderGoesAndABinaryQueueDoesNotCount() {
        let core = ForwardingCore()
        let holders = [
            Self.h(1, phone: false, queued: 10_000, held: 100),  // a binary's queue is not counted
            Self.h(2, phone: true, queued: 300, held: 200),
            Self.h(3, phone: false, held: 400),
        ]
        #expect(core.shedVictim(holders) == ShedVictim(handle: ConnHandle(2), dropBacklog: true))
        // The requester's pending growth counts towards its size.
        #expect(core.shedVictim(holders, requester: ConnHandle(3), extra: 101) == ShedVictim(handle: ConnHandle(3), dropBacklog: false))
        #expect(core.shedVictim(holders, requester: ConnHandle(3), extra: 100) == ShedVictim(handle: ConnHandle(2), dropBacklog: true))
        #expect(core.shedVictim([Self.h(1, phone: false, queued: 5)]) == nil)
        #expect(core.shedVictim([ShedCandidate]()) == nil)
    }

    @Test func aPhoneLosesItsBacklogWhenTheQueueIsAtLeastHalfOfWhatItHolds() {
        let core = ForwardingCore()
        #expect(core.shedVictim([Self.h(1, phone: true, queued: 500, held: 500)])?.dropBacklog == true)
        #expect(core.shedVictim([Self.h(1, phone: true, queued: 499, held: 501)])?.dropBacklog == false)
    }

    /// The service's loop: shed the largest until the budget holds; the order is by size.
    @Test func sheddingOrderIsLargestFirstUntilUnderBudget() {
        let core = ForwardingCore(maxBufferedBytes: 800)
        var holders = [
            Self.h(1, phone: true, queued: 400), Self.h(2, phone: false, held: 700),
            Self.h(3, phone: true, held: 300), Self.h(4, phone: true, queued: 100, held: 100),
        ]
        var shed: [UInt64] = []
        while core.overBudget(bufferedBytes: holders.reduce(0) { $0 + $1.queuedBytes + $1.heldBytes }) {
            guard let v = core.shedVictim(holders) else { break }
            shed.append(v.handle.raw)
            holders.removeAll { $0.handle == v.handle }
        }
        #expect(shed == [2, 1])
    }
}
