import CEpoll
import Testing
@testable import RelayReactor
@testable import RelayCodecs
@testable import RelayLog
@testable import RelayCore

/// Log hygiene against hostile peers: escaping of line terminators, clipping of peer-chosen
/// values, budgets for repeatable events, and a stderr writer that never blocks the loop.
/// The built binary under a flood is tested by tests/interop/test_logs.py.
@Suite struct LogEscapingTests {
    @Test func c1ControlsAndUnicodeLineSeparatorsAreEscaped() {
        #expect(Logfmt.quote("a\u{85}b") == "\"a\\u0085b\"")
        #expect(Logfmt.quote("a\u{2028}b") == "\"a\\u2028b\"")
        // Bidirectional overrides and isolates would reorder what a viewer shows after them.
        #expect(Logfmt.quote("id\u{202E}gnp.exe") == "\"id\\u202egnp.exe\"")
        #expect(Logfmt.quote("\u{2066}a\u{2069}\u{200F}\u{61C}") == "\"\\u2066a\\u2069\\u200f\\u061c\"")
        #expect(Logfmt.quote("a\u{2029}b") == "\"a\\u2029b\"")
        #expect(Logfmt.quote("\u{80}\u{9f}\u{7f}") == "\"\\u0080\\u009f\\u007f\"")
        // Printable characters next to the escaped ranges stay as they are, unquoted.
        #expect(Logfmt.quote("\u{a0}é\u{2027}\u{202f}\u{2065}") == "\u{a0}é\u{2027}\u{202f}\u{2065}")
    }

    /// Whatever a device name holds, the line has no raw control or line terminator and every
    /// escaped character reads back as itself.
    @Test func noControlOrLineTerminatorIsEverWrittenRaw() {
        let scalars = (0..<0x100).compactMap(Unicode.Scalar.init) + ["\u{2028}", "\u{2029}"]
        for u in scalars {
            let line = Logfmt.line(level: "info", msg: "m", [("device_name", "x\(u)y")], timestamp: "T")
            let raw = line.unicodeScalars.filter { Logfmt.mustEscape($0) }
            #expect(raw.isEmpty, "U+\(String(u.value, radix: 16)) written raw")
            let expected: String
            switch u {
            case "\n": expected = "\\n"
            case "\r": expected = "\\r"
            case "\t": expected = "\\t"
            case "\\": expected = "\\\\"
            case "\"": expected = "\\\""
            default:
                let hex = String(u.value, radix: 16)
                expected = Logfmt.mustEscape(u) ? "\\u" + String(repeating: "0", count: 4 - hex.count) + hex : String(u)
            }
            #expect(line.hasSuffix("x\(expected)y\"") || line.hasSuffix("device_name=x\(expected)y"), "\(line)")
        }
    }
}

@Suite struct LogClipTests {
    @Test func shortValuesAreUntouched() {
        let v = String(repeating: "a", count: Limits.logValueMaxBytes)
        #expect(Logfmt.clip(v) == v)
        #expect(Logfmt.clip("") == "")
    }

    @Test func longValuesKeepHeadAndTailWithinTheCap() {
        let serverID = String(repeating: "s", count: 16_000)
        let connID = ConnectionID.make(role: .binary, serverID: serverID, random: 0xdead_beef)
        let clipped = Logfmt.clip(connID)
        #expect(clipped.utf8.count == Limits.logValueMaxBytes)
        #expect(clipped.hasPrefix("server-sss"))
        #expect(clipped.hasSuffix("sss-deadbeef"), "the random suffix tells connections apart")
        #expect(clipped.contains("…"))
    }

    @Test func cutsFallOnCodePointBoundaries() {
        for filler in ["é", "€", "😀", "a€"] {
            let v = String(repeating: filler, count: 200)
            let clipped = Logfmt.clip(v, maxBytes: 128)
            #expect(clipped.utf8.count <= 128)
            #expect(clipped.utf8.count > 128 - 8, "at most one code point short on each side")
            let parts = clipped.components(separatedBy: "…")
            #expect(parts.count == 2)
            // Whole code points only: every scalar of each side is one of the filler's.
            for p in parts { #expect(p.unicodeScalars.allSatisfy { filler.unicodeScalars.contains($0) }) }
        }
    }

    @Test func aTinyCapStillMarksTheCut() {
        #expect(Logfmt.clip("abcdef", maxBytes: 4) == "a…")
        #expect(Logfmt.clip("abcdefgh", maxBytes: 5) == "a…h")
    }
}

@Suite struct LogSuppressorTests {
    enum Event: CaseIterable { case a, b }

    @Test func firstBurstPerScopeThenOneSummaryWithTheCount() {
        var s = LogSuppressor<Event>(perScopeBurst: 3, globalBurst: 100)
        let written = (0..<1_000).filter { _ in s.admit(.a, scope: 7) }.count
        #expect(written == 3)
        // Another connection and another event have budgets of their own.
        let otherScope = s.admit(.a, scope: 8), otherEvent = s.admit(.b, scope: 7)
        #expect(otherScope && otherEvent)
        let first = s.endInterval()
        #expect(first == [.init(event: .a, scope: 7, count: 997)])
        // A new interval starts with a full budget and no state.
        let again = s.admit(.a, scope: 7)
        #expect(again)
        let second = s.endInterval()
        #expect(second == [])
    }

    @Test func globalBudgetCapsAllScopesTogether() {
        var s = LogSuppressor<Event>(perScopeBurst: 5, globalBurst: 10)
        var written = 0
        for scope in 0..<100 as Range<UInt64> {
            for _ in 0..<5 where s.admit(.a, scope: scope) { written += 1 }
        }
        for _ in 0..<50 where s.admit(.b) { written += 1 }  // unscoped (refused requests)
        #expect(written == 20)
        let summaries = s.endInterval()
        // No scope was over its own budget: everything beyond 10 per event is in the global summary.
        #expect(summaries.count == 2)
        #expect(summaries.contains(.init(event: .a, scope: nil, count: 490)))
        #expect(summaries.contains(.init(event: .b, scope: nil, count: 40)))
    }

    @Test func closingScopeReportsAtOnceAndFreesItsState() {
        var s = LogSuppressor<Event>(perScopeBurst: 2, globalBurst: 100)
        for _ in 0..<10 { _ = s.admit(.a, scope: 1) }
        for _ in 0..<4 { _ = s.admit(.b, scope: 1) }
        for _ in 0..<3 { _ = s.admit(.a, scope: 2) }
        let closed = s.endScope(1)
        #expect(closed.count == 2)
        #expect(closed.contains(.init(event: .a, scope: 1, count: 8)))
        #expect(closed.contains(.init(event: .b, scope: 1, count: 2)))
        let closedAgain = s.endScope(1)
        #expect(closedAgain == [])
        let rest = s.endInterval()
        #expect(rest == [.init(event: .a, scope: 2, count: 1)])
    }

    /// The bounds the operations guide states, and exact accounting, under a random mix.
    @Test func linesStayWithinBothBoundsAndEverySuppressedLineIsCounted() {
        let perScope = 4, global = 30
        var s = LogSuppressor<Event>(perScopeBurst: perScope, globalBurst: global)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20 {
            var lines: [Event: Int] = [:], perKey: [String: Int] = [:]
            var occurred = 0, written = 0, counted = 0
            for _ in 0..<2_000 {
                let e = Bool.random(using: &rng) ? Event.a : .b
                let scope: UInt64? = Int.random(in: 0..<10, using: &rng) == 0 ? nil : UInt64.random(in: 0..<40, using: &rng)
                occurred += 1
                if s.admit(e, scope: scope) {
                    written += 1
                    lines[e, default: 0] += 1
                    if let scope { perKey["\(scope)\(e)", default: 0] += 1 }
                }
                if Int.random(in: 0..<200, using: &rng) == 0 {
                    let victim = UInt64.random(in: 0..<40, using: &rng)
                    for sum in s.endScope(victim) {
                        lines[sum.event, default: 0] += 1
                        perKey["\(victim)\(sum.event)", default: 0] += 1
                        counted += sum.count
                    }
                }
            }
            for sum in s.endInterval() {
                lines[sum.event, default: 0] += 1
                if let scope = sum.scope { perKey["\(scope)\(sum.event)", default: 0] += 1 }
                counted += sum.count
            }
            #expect(written + counted == occurred)
            #expect(lines.values.allSatisfy { $0 <= global + 1 }, "\(lines)")
            #expect(perKey.values.allSatisfy { $0 <= perScope + 1 }, "\(perKey)")
        }
    }
}

/// `LogOutput` on a pipe nobody reads for a while: writes return at once, the buffer stays
/// within its capacity, the overflow is counted, and once the reader drains the pipe every
/// kept line arrives whole and in order, followed by the dropped-lines summary.
@Suite struct LogOutputTests {
    private func makePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        for fd in fds { _ = pyry_fcntl_int(fd, F_SETFL, pyry_fcntl_int(fd, F_GETFL, 0) | O_NONBLOCK) }
        return (fds[0], fds[1])
    }

    private func readAll(_ fd: Int32, into out: inout [UInt8]) {
        var buf = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            out += buf[0..<n]
        }
    }

    private func line(_ i: Int) -> [UInt8] {
        Array((Logfmt.line(level: "warn", msg: "flood", [("count", String(i))], timestamp: "T") + "\n").utf8)
    }

    @Test func aStalledReaderNeverBlocksAndLosesOnlyCountedWholeLines() throws {
        let reactor = try Reactor()
        let (r, w) = makePipe()
        defer { _ = close(r) }
        let capacity = 16 * 1024
        let output = LogOutput(fd: w, kind: .stream, reactor: reactor, capacity: capacity, ownsFD: true)
        let baseline = reactor.registrationCount
        let total = 5_000  // ~200 KB: more than the pipe (64 KiB) and the buffer together
        for i in 0..<total {
            line(i).withUnsafeBytes { output.write($0) }
            #expect(output.pendingBytes <= capacity)
            if i % 100 == 99 { reactor.runOnce(timeoutMs: 0) }  // iterations end; the pipe fills up
        }
        #expect(output.linesDropped > 0)
        #expect(reactor.registrationCount == baseline + 1, "armed for EPOLLOUT while bytes wait")

        var received: [UInt8] = []
        let end = monotonicMs() + 5_000
        while (output.pendingBytes > 0 || !String(decoding: received, as: UTF8.self).contains("log_lines_dropped"))
            && monotonicMs() < end {
            readAll(r, into: &received)
            reactor.runOnce(timeoutMs: 5)
        }
        readAll(r, into: &received)
        #expect(reactor.registrationCount == baseline, "disarmed once drained")

        let lines = String(decoding: received, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.last == "", "ends with a whole line")
        let kept = lines.dropLast().filter { $0.contains("msg=flood") }
        let numbers = kept.compactMap { Int($0.split(separator: "=").last!) }
        #expect(numbers.count == kept.count && numbers == numbers.sorted(), "whole lines, in order")
        #expect(Set(numbers).count == numbers.count)
        #expect(kept.count + output.linesDropped == total)
        let summary = try #require(lines.last(where: { $0.contains("msg=log_lines_dropped") }))
        #expect(summary.hasSuffix("count=\(output.linesDropped)"))
        #expect(lines.dropLast().last.map(String.init) == String(summary), "the summary comes after the kept lines")
        output.finish(timeoutMs: 0)
    }

    @Test func aVanishedReaderCountsLinesAndLeavesNothingArmed() throws {
        pyry_ignore_sigpipe()  // as the relay does (Signals.swift): EPIPE, not a signal
        let reactor = try Reactor()
        let (r, w) = makePipe()
        let output = LogOutput(fd: w, kind: .stream, reactor: reactor, capacity: 1 << 20, ownsFD: true)
        let baseline = reactor.registrationCount
        for i in 0..<2_000 { line(i).withUnsafeBytes { output.write($0) } }  // fills the pipe
        #expect(output.pendingBytes > 0)
        _ = close(r)  // EPOLLERR on the write end; the next write fails with EPIPE
        for _ in 0..<3 { reactor.runOnce(timeoutMs: 10) }
        #expect(output.pendingBytes == 0)
        #expect(reactor.registrationCount == baseline)
        let dropped = output.linesDropped
        #expect(dropped > 0)
        line(0).withUnsafeBytes { output.write($0) }
        reactor.runOnce(timeoutMs: 0)  // the iteration's end tries, and counts the loss
        #expect(output.linesDropped == dropped + 1)
        #expect(output.pendingBytes == 0)
        output.finish(timeoutMs: 0)
    }

    @Test func linesOfOneIterationLeaveTogetherAtItsEnd() throws {
        let reactor = try Reactor()
        let (r, w) = makePipe()
        defer { _ = close(r) }
        let output = LogOutput(fd: w, kind: .stream, reactor: reactor, capacity: 1 << 20, ownsFD: true)
        let baseline = reactor.registrationCount
        for i in 0..<3 { line(i).withUnsafeBytes { output.write($0) } }
        var received: [UInt8] = []
        readAll(r, into: &received)
        #expect(received.isEmpty, "nothing is written before the iteration ends")
        #expect(output.pendingBytes == 3 * line(0).count)
        reactor.runOnce(timeoutMs: 0)
        readAll(r, into: &received)
        #expect(received == line(0) + line(1) + line(2))
        #expect(output.pendingBytes == 0)
        #expect(reactor.registrationCount == baseline, "a reader that keeps up never arms EPOLLOUT")
        // The next iteration's lines are batched again.
        line(3).withUnsafeBytes { output.write($0) }
        reactor.runOnce(timeoutMs: 0)
        readAll(r, into: &received)
        #expect(received.suffix(line(3).count) == line(3)[...])
        output.finish(timeoutMs: 0)
    }

    @Test func finishWaitsBoundedForTheLastLines() throws {
        let reactor = try Reactor()
        let (r, w) = makePipe()
        defer { _ = close(r) }
        let output = LogOutput(fd: w, kind: .stream, reactor: reactor, capacity: 1 << 20, ownsFD: true)
        for i in 0..<2_000 { line(i).withUnsafeBytes { output.write($0) } }
        #expect(output.pendingBytes > 0)
        // Nobody reads: finish gives up at its deadline and counts what it could not write.
        let start = monotonicMs()
        output.finish(timeoutMs: 200)
        let waited = monotonicMs() - start
        #expect(waited >= 200 && waited < 5_000)
        #expect(output.pendingBytes == 0)
        #expect(output.linesDropped > 0)
    }
}
