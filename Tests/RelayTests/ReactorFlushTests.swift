import CEpoll
import Testing
@testable import RelayReactor

/// When the reactor flushes coalesced writes (`markDirty` → `flushTick`): right after the event
/// that queued them in a small epoll batch (a message does not wait behind the batch's other
/// reads), once at the end of the iteration in a large one (one write per destination).
@Suite struct ReactorFlushTests {
    /// Reads its pipe's byte, asks for a flush and records both calls in a shared log.
    final class Queuer: EventHandler {
        let name: Int
        let fd: Int32
        let reactor: Reactor
        let log: Log
        init(name: Int, fd: Int32, reactor: Reactor, log: Log) {
            self.name = name
            self.fd = fd
            self.reactor = reactor
            self.log = log
        }
        override func handleEvent(_ events: UInt32) {
            var byte: UInt8 = 0
            _ = read(fd, &byte, 1)
            log.entries.append("event \(name)")
            reactor.markDirty(fd: fd)
        }
        override func flushTick() { log.entries.append("flush \(name)") }
    }

    final class Log { var entries: [String] = [] }

    /// `count` pipes made readable together, one loop iteration; returns the call log.
    func oneBatch(of count: Int) throws -> [String] {
        let reactor = try Reactor()
        let log = Log()
        var pipes: [[Int32]] = []
        var handlers: [Queuer] = []
        defer { for p in pipes { _ = close(p[0]); _ = close(p[1]) } }
        for i in 0..<count {
            var fds: [Int32] = [0, 0]
            #expect(pipe(&fds) == 0)
            pipes.append(fds)
            let h = Queuer(name: i, fd: fds[0], reactor: reactor, log: log)
            _ = try reactor.register(fd: fds[0], events: Reactor.readable, handler: h)
            handlers.append(h)
        }
        var one: UInt8 = 1
        for p in pipes { #expect(write(p[1], &one, 1) == 1) }
        reactor.runOnce(timeoutMs: 1000)
        return log.entries
    }

    @Test func aSmallBatchFlushesEachHandlerRightAfterItsEvent() throws {
        let n = Reactor.flushPerEventMaxBatch
        let log = try oneBatch(of: n)
        #expect(log.count == 2 * n)
        for i in stride(from: 0, to: log.count - 1, by: 2) {
            let name = log[i].dropFirst("event ".count)
            #expect(log[i].hasPrefix("event "))
            #expect(log[i + 1] == "flush \(name)", "\(log)")
        }
    }

    @Test func aLargeBatchFlushesOnceAtTheEnd() throws {
        let n = Reactor.flushPerEventMaxBatch + 1
        let log = try oneBatch(of: n)
        #expect(log.count == 2 * n)
        #expect(log.prefix(n).allSatisfy { $0.hasPrefix("event ") }, "\(log)")
        #expect(log.suffix(n).allSatisfy { $0.hasPrefix("flush ") }, "\(log)")
    }
}
