import Testing
@testable import RelayCodecs
@testable import RelayTransport
@testable import RelayPush
@testable import RelayOperations
@testable import Relaying

/// `PushService` admission, token cache and outcomes (docs/protocol.md §9), driven through a fake
/// client whose answers the test releases one by one, with a clock the test moves.
@Suite struct PushServiceTests {
    final class FakeSender: HTTPSSending {
        var calls: [(request: HTTPSRequest, completion: (Result<HTTPSResponse, HTTPSFailure>) -> Void)] = []
        func send(_ request: HTTPSRequest, completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void) {
            calls.append((request, completion))
        }
        var tokenCalls: [Int] { calls.indices.filter { calls[$0].request.url.path == "/token" } }
        var sendCalls: [Int] { calls.indices.filter { calls[$0].request.url.path.hasSuffix("messages:send") } }
        func answer(_ i: Int, _ status: Int, _ body: String) {
            calls[i].completion(.success(HTTPSResponse(status: status, headers: [], body: Array(body.utf8))))
        }
    }

    final class Clock { var ms: Int64 = 1_000_000 }

    static let tokenBody = "{\"access_token\":\"ya29.cached\",\"expires_in\":3600}"

    static func make() throws -> (PushService, FakeSender, Clock) {
        let key = try ServiceAccountKey.parse(PushTests.keyJSON(tokenURI: "https://oauth.test/token")).get()
        let fake = FakeSender()
        let clock = Clock()
        let push = try #require(PushService(key: key, baseURL: "https://fcm.test:8443/", client: fake,
                                            now: { clock.ms }, wallSeconds: { 1_700_000_000 }))
        return (push, fake, clock)
    }

    static func wake(_ p: PushService, _ server: String, token: String = "tok") -> PushService.Drop? {
        Array("{\"platform\":\"fcm\",\"token\":\"\(token)\"}".utf8).withUnsafeBytes { p.wake(serverID: server, $0) }
    }

    func count(_ p: PushService, _ o: PushService.Outcome) -> Int { p.counts[o.rawValue] }

    @Test func oneTokenFetchServesConcurrentAndLaterWakesUntilShortlyBeforeExpiry() throws {
        let (push, fake, clock) = try Self.make()
        for i in 0..<5 { #expect(Self.wake(push, "srv-\(i)", token: "t\(i)") == nil) }
        // Five wakes, one fetch in flight, nothing sent before the token.
        #expect(fake.tokenCalls.count == 1 && fake.sendCalls.isEmpty && push.inFlight == 5)
        fake.answer(fake.tokenCalls[0], 200, Self.tokenBody)
        #expect(fake.sendCalls.count == 5)
        let first = fake.calls[fake.sendCalls[0]].request
        #expect(first.url == HTTPSURL("https://fcm.test:8443/v1/projects/pyrycode-mobile/messages:send"))
        #expect(first.headers.first { $0.name == "Authorization" }?.value == "Bearer ya29.cached")
        for i in fake.sendCalls { fake.answer(i, 200, "{\"name\":\"projects/pyrycode-mobile/messages/1\"}") }
        #expect(count(push, .sent) == 5 && push.inFlight == 0)
        // Cached: a later wake goes straight to FCM.
        clock.ms += 3_600_000 - Limits.pushTokenRefreshMarginMs - 1
        #expect(Self.wake(push, "srv-later") == nil)
        #expect(fake.tokenCalls.count == 1 && fake.sendCalls.count == 6)
        // Within the refresh margin: a new fetch.
        clock.ms += 1
        #expect(Self.wake(push, "srv-later2") == nil)
        #expect(fake.tokenCalls.count == 2 && fake.sendCalls.count == 6)
    }

    @Test func failedTokenFetchFailsTheWaitingWakesAndTheNextWakeRetries() throws {
        for answer in [(500, "{}"), (200, "garbage"), (200, "{\"access_token\":\"x\"}")] {
            let (push, fake, _) = try Self.make()
            #expect(Self.wake(push, "a") == nil)
            #expect(Self.wake(push, "b") == nil)
            fake.answer(fake.tokenCalls[0], answer.0, answer.1)
            #expect(count(push, .tokenFetchFailed) == 2 && push.inFlight == 0 && fake.sendCalls.isEmpty)
            #expect(Self.wake(push, "a") == nil)
            #expect(fake.tokenCalls.count == 2)
        }
        let (push, fake, _) = try Self.make()
        #expect(Self.wake(push, "a") == nil)
        fake.calls[0].completion(.failure(.timeout))
        #expect(count(push, .tokenFetchFailed) == 1 && push.inFlight == 0)
    }

    @Test func eachOutcomeIsCountedOnce() throws {
        let (push, fake, _) = try Self.make()
        for s in ["a", "b", "c", "d"] { #expect(Self.wake(push, s) == nil) }
        fake.answer(fake.tokenCalls[0], 200, Self.tokenBody)
        let sends = fake.sendCalls
        fake.answer(sends[0], 200, "{}")
        fake.answer(sends[1], 404, "{\"error\":{\"status\":\"NOT_FOUND\",\"details\":[{\"errorCode\":\"UNREGISTERED\"}]}}")
        fake.answer(sends[2], 500, "{\"error\":{\"status\":\"INTERNAL\"}}")
        fake.calls[sends[3]].completion(.failure(.timeout))
        #expect(push.counts == [1, 1, 2, 0, 0])
        #expect(push.inFlight == 0)
    }

    @Test func unauthenticatedAnswerDropsTheCachedToken() throws {
        let (push, fake, _) = try Self.make()
        #expect(Self.wake(push, "a") == nil)
        fake.answer(fake.tokenCalls[0], 200, Self.tokenBody)
        fake.answer(fake.sendCalls[0], 401, "{\"error\":{\"status\":\"UNAUTHENTICATED\"}}")
        #expect(Self.wake(push, "b") == nil)
        #expect(fake.tokenCalls.count == 2)
    }

    @Test func perServerBucketIsSixThenOnePerTenSeconds() throws {
        let (push, _, clock) = try Self.make()
        for _ in 0..<6 { #expect(Self.wake(push, "srv") == nil) }
        #expect(Self.wake(push, "srv") == .rateLimited)
        #expect(Self.wake(push, "other") == nil)  // another server-id has its own bucket
        clock.ms += Limits.pushRefillMs - 1
        #expect(Self.wake(push, "srv") == .rateLimited)
        clock.ms += 1
        #expect(Self.wake(push, "srv") == nil)
        #expect(Self.wake(push, "srv") == .rateLimited)
        #expect(count(push, .dropped) == 3)
    }

    @Test func invalidWakesAreDroppedBeforeTheBucket() throws {
        let (push, fake, _) = try Self.make()
        for _ in 0..<10 {
            let d = Array("{\"platform\":\"apns\",\"token\":\"t\"}".utf8).withUnsafeBytes { push.wake(serverID: "srv", $0) }
            #expect(d == .invalid)
        }
        #expect(Self.wake(push, "srv") == nil)  // the bucket is untouched
        #expect(fake.calls.count == 1 && count(push, .dropped) == 10)
    }

    @Test func atMost32InFlightAndABurstOf1000IsDroppedAndCounted() throws {
        let (push, fake, _) = try Self.make()
        var admitted = 0, tooMany = 0, limited = 0
        for i in 0..<1_000 {
            switch Self.wake(push, "srv-\(i / 6)") {  // 6 per server-id: the bucket admits all of them
            case nil: admitted += 1
            case .tooManyInFlight?: tooMany += 1
            case .rateLimited?: limited += 1
            default: Issue.record("unexpected drop")
            }
        }
        #expect(admitted == Limits.pushMaxInFlight && tooMany == 1_000 - admitted && limited == 0)
        #expect(push.inFlight == 32 && count(push, .dropped) == 968)
        // Waiting for the token, they hold one fetch and no sends.
        #expect(fake.calls.count == 1)
        fake.answer(0, 200, Self.tokenBody)
        #expect(fake.sendCalls.count == 32)
        fake.answer(fake.sendCalls[0], 200, "{}")
        #expect(push.inFlight == 31)
        #expect(Self.wake(push, "fresh") == nil)  // a finished wake frees its slot
        #expect(Self.wake(push, "fresh") == .tooManyInFlight)
    }

    @Test func idleBucketsAreSwept() throws {
        let (push, _, clock) = try Self.make()
        #expect(Self.wake(push, "srv") == nil)
        #expect(push.buckets.bucketCount == 1)
        clock.ms += Limits.pushBucketIdleMs
        push.sweep(now: clock.ms)
        #expect(push.buckets.bucketCount == 0)
    }

    @Test func metricsExportThePushSeriesOnlyWhenPushIsOn() {
        let m = Metrics(relay: RelayCounters())
        var g = Metrics.Gauges()
        #expect(!String(decoding: m.render(g), as: UTF8.self).contains("push_wakes"))
        g.pushWakes = [1, 2, 3, 4, 5]
        let text = String(decoding: m.render(g), as: UTF8.self)
        for (label, n) in [("sent", 1), ("unregistered", 2), ("send_failed", 3), ("token_fetch_failed", 4), ("dropped", 5)] {
            #expect(text.contains("pyrycode_relay_push_wakes_total{outcome=\"\(label)\"} \(n)\n"))
        }
    }
}
