import Testing
@testable import RelayReactor
@testable import RelayTransport

/// Fair loop: TLS handshake steps are budgeted per loop iteration.
@Suite struct HandshakeBudgetTests {
    @Test func budgetIsSpentWithinAnIterationAndRefilledByTheNext() throws {
        let reactor = try Reactor()
        let context = IOContext(reactor: reactor)
        context.handshakeStepsPerIteration = 2
        reactor.runOnce(timeoutMs: 0)
        #expect(context.takeHandshakeStep())
        #expect(context.takeHandshakeStep())
        #expect(!context.takeHandshakeStep())
        #expect(!context.takeHandshakeStep())
        reactor.runOnce(timeoutMs: 0)
        #expect(context.takeHandshakeStep())
        #expect(context.takeHandshakeStep())
        #expect(!context.takeHandshakeStep())
    }
}
