import CEpoll
import CTLS
import Histogram
import RelaySystem
import RelayReactor
import RelayCore

/// What one scenario asks of the generator (the named presets are in `Scenario.swift`).
struct LoadPlan {
    var pairs = 100                 // groups: one binary (server-id) each
    var phonesPerGroup = 1
    var size = 64                   // phone message payload bytes (valid JSON)
    var window = 1                  // messages in flight per phone
    var echo = false                // the binary echoes each message back to its phone
    var messagesPerPhone = 0        // 0 = unlimited; M1 does one exchange
    var openLoopRate: Double = 0    // msgs/s over all phones (L1); 0 = closed loop
    var slowBinaryBytesPerSec = 0   // S8: each binary reads at this rate
    var phoneOutputCap = 0          // S8: stop queueing above this many bytes per phone
    var storm = false               // S7: binaries connect, upgrade and drop, `pairs` at a time
}

/// The connection layer options of a run.
struct Endpoint {
    var target: SocketAddress
    var hostHeader: String
    /// Source IPs: 127.<base>.x.y, a new address every `perSourceIP` connections (docs/protocol.md §3.3 rate
    /// limit: 20 upgrades burst per client IP). nil = connect from the default address.
    var sourceBase: UInt8?
    var perSourceIP = 16
    /// Send a distinct `X-Forwarded-For` per `perSourceIP` connections instead (relay started
    /// with `--trust-x-forwarded-for`).
    var xffBase: UInt8?
    var connectConcurrency = 256
    var runTag: String
    /// S7 against a plain HTTP server: `GET <path>` answered by 200 instead of the upgrade.
    var plainGetPath: String?
}

/// Counters for a measurement window.
struct Counters {
    var completions = 0   // messages that reached their final receiver (binary; phone when echo)
    var forwarded = 0     // messages the target forwarded (echo counts both legs)
    var payloadBytes = 0  // forwarded payload bytes
    var resumed = 0       // S7: TLS handshakes that resumed a session
}

final class Group {
    let index: Int
    let serverID: String
    var binary: ClientConnection!
    var phones: [ClientConnection] = []
    var phonesOpened = 0
    init(index: Int, serverID: String) {
        self.index = index
        self.serverID = serverID
    }
}

/// Drives client connections on one reactor: setup, traffic, counters, latency.
final class LoadRun: ClientDelegate {
    let context: ClientContext
    let endpoint: Endpoint
    var plan: LoadPlan
    var groups: [Group] = []
    var connectQueue: [(Group, ClientConnection.Role, Int)] = []
    var connectHead = 0
    var connecting = 0
    var connectionsMade = 0
    var openConnections = 0
    var failures: [String] = []
    var failureCount = 0
    var counters = Counters()
    var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var recordLatency = true
    var running = false
    var targetIsFloor = false
    var exchangesDone = 0
    /// Groups at or beyond this index stay idle after connecting (S5's idle pairs).
    var activeGroups = Int.max
    /// S7: keep `plan.pairs` connection attempts going while true.
    var storming = false
    /// S7 resumption phase: offer this session (taken from the phase's first connection).
    var stormResume = false
    var savedSession: OpaquePointer?
    private var template: [UInt8] = []
    private var hex: [UInt8] = Array("0123456789abcdef".utf8)

    init(context: ClientContext, endpoint: Endpoint, plan: LoadPlan) {
        self.context = context
        self.endpoint = endpoint
        self.plan = plan
        setPayloadSize(plan.size)
    }

    var reactor: Reactor { context.reactor }

    /// `{"t":"<16 hex ns>","p":"xxx…"}` padded to exactly `size` bytes: valid JSON (docs/protocol.md §7.1),
    /// with the send time at a fixed offset so the receiver finds it without parsing.
    func setPayloadSize(_ size: Int) {
        precondition(size >= 31, "payload size must be at least 31 bytes")
        plan.size = size
        template = Array("{\"t\":\"0000000000000000\",\"p\":\"".utf8)
        template += [UInt8](repeating: UInt8(ascii: "x"), count: size - template.count - 2)
        template += Array("\"}".utf8)
    }

    // MARK: setup

    /// Queues `count` more groups for connection (binary first, its phones once it holds the id).
    func addGroups(_ count: Int) {
        for _ in 0..<count {
            let g = Group(index: groups.count, serverID: "bench-\(endpoint.runTag)-\(groups.count)")
            groups.append(g)
            connectQueue.append((g, .binary, 0))
        }
    }

    var allOpen: Bool { connectHead == connectQueue.count && connecting == 0 }

    /// Starts queued connects up to the concurrency limit (the relay's half-open cap, docs/protocol.md §3.3).
    func pumpConnects() {
        while connecting < endpoint.connectConcurrency && connectHead < connectQueue.count {
            let (g, role, member) = connectQueue[connectHead]
            connectHead += 1
            let c = ClientConnection(context: context, role: role, group: g.index, member: member, delegate: self)
            if role == .binary { g.binary = c } else { g.phones.append(c) }
            c.active = g.index < activeGroups
            if plan.storm && stormResume { c.resumeSession = savedSession }
            let k = connectionsMade
            connectionsMade += 1
            let ipIndex = k / endpoint.perSourceIP
            let (hi, lo) = (UInt8(truncatingIfNeeded: ipIndex / 254), UInt8(ipIndex % 254 + 1))
            var source: SocketAddress?
            if let b = endpoint.sourceBase { source = SocketAddress(ip: "127.\(b).\(hi).\(lo)", port: 0) }
            var xff: String?
            if let b = endpoint.xffBase { xff = "10.\(b).\(hi).\(lo)" }
            let head = requestHead(group: g, role: role, member: member, xff: xff)
            do {
                try c.connect(to: endpoint.target, from: source, requestHead: head)
                connecting += 1
            } catch {
                noteFailure("connect \(g.serverID): \(error)")
                c.close()
            }
        }
    }

    func requestHead(group g: Group, role: ClientConnection.Role, member: Int, xff: String?) -> [UInt8] {
        if let path = endpoint.plainGetPath { return Array("GET \(path) HTTP/1.1\r\nHost: \(endpoint.hostHeader)\r\nUser-Agent: relay-bench/1\r\n\r\n".utf8) }
        var s = role == .binary ? "GET /v1/server HTTP/1.1\r\n" : "GET /v1/client HTTP/1.1\r\n"
        s += "Host: \(endpoint.hostHeader)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        s += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        s += "User-Agent: relay-bench/1\r\nX-Pyrycode-Server: \(g.serverID)\r\n"
        if role == .binary {
            s += "X-Pyrycode-Version: bench\r\n"
        } else {
            s += "X-Pyrycode-Token: bench\r\nX-Pyrycode-Device-Name: bench-\(member)\r\n"
        }
        if let xff { s += "X-Forwarded-For: \(xff)\r\n" }
        s += "\r\n"
        return Array(s.utf8)
    }

    func noteFailure(_ s: String) {
        failureCount += 1
        if failures.count < 5 { failures.append(s) }
    }

    // MARK: ClientDelegate

    func clientDidOpen(_ c: ClientConnection) {
        c.opened = true
        connecting -= 1
        openConnections += 1
        targetIsFloor = c.peerIsFloor
        let g = groups[c.group]
        if plan.storm {
            stormDidOpen(c, g)
            return
        }
        if c.role == .binary {
            // A phone may only register once its binary holds the server-id (docs/protocol.md §5: else 4404).
            for m in 0..<plan.phonesPerGroup { connectQueue.append((g, .phone, m)) }
            if plan.slowBinaryBytesPerSec > 0 { c.pauseReading() }
        } else {
            g.phonesOpened += 1
            c.markDirty()
        }
        pumpConnects()
    }

    func clientDidFail(_ c: ClientConnection, reason: String) {
        noteFailure("\(c.role == .binary ? "binary" : "phone") \(groups[c.group].serverID): \(reason)")
        if c.opened { openConnections -= 1 } else { connecting -= 1 }
        if plan.storm { groups[c.group].binary = nil; stormRefill() }
        pumpConnects()
    }

    // MARK: S7 connection storm

    /// One upgrade completed (TCP + TLS handshake + HTTP 101): count it, drop the connection
    /// (RST: no TIME_WAIT), start the next one.
    private func stormDidOpen(_ c: ClientConnection, _ g: Group) {
        counters.completions += 1
        counters.forwarded += 1
        if c.tlsResumed { counters.resumed += 1 }
        if stormResume && savedSession == nil { savedSession = c.copySession() }
        c.close()
        openConnections -= 1
        g.binary = nil
        stormRefill()
        pumpConnects()
    }

    /// Tops the attempts in flight up to `plan.pairs`.
    func stormRefill() {
        guard storming else { return }
        if connectHead == connectQueue.count {
            connectQueue.removeAll(keepingCapacity: true)
            connectHead = 0
        }
        let queued = connectQueue.count - connectHead
        if connecting + queued < plan.pairs { addGroups(plan.pairs - connecting - queued) }
    }

    func clearSavedSession() {
        if let s = savedSession { SSL_SESSION_free(s) }
        savedSession = nil
    }

    /// Window refill for phones (one write per tick carries every frame queued in it).
    func clientFill(_ c: ClientConnection) {
        guard c.role == .phone, running, c.active else { return }
        if plan.openLoopRate > 0 { return }  // sent by `openLoopTick`
        var budget = plan.window - c.inflight
        if plan.messagesPerPhone > 0 { budget = min(budget, plan.messagesPerPhone - c.sent) }
        if plan.phoneOutputCap > 0 && c.output.count > plan.phoneOutputCap { return }
        while budget > 0 {
            sendOne(c)
            budget -= 1
            if plan.phoneOutputCap > 0 && c.output.count > plan.phoneOutputCap { break }
        }
    }

    @inline(__always)
    func sendOne(_ c: ClientConnection) {
        let now = monotonicNs()
        template.withUnsafeBytes { t in
            c.queueFrame(opcode: .text, length: t.count) { dst in
                dst.copyMemory(from: t.baseAddress!, byteCount: t.count)
                var v = now
                for i in stride(from: 21, through: 6, by: -1) {
                    dst.storeBytes(of: hex[Int(v & 0xF)], toByteOffset: i, as: UInt8.self)
                    v >>= 4
                }
            }
        }
        c.inflight += 1
        c.sent += 1
    }

    func client(_ c: ClientConnection, message: UnsafeRawBufferPointer) {
        c.received += 1
        let g = groups[c.group]
        if c.role == .binary {
            // A relay wraps (docs/protocol.md §7.1): parse the envelope as a real binary does. The floor
            // delivers the phone's frame as it was sent.
            var frame = message
            var env: BinaryEnvelope?
            if !targetIsFloor {
                guard let e = Envelope.parseBinaryEnvelope(message), let r = e.frame else {
                    noteFailure("binary \(g.serverID): bad envelope")
                    return
                }
                env = e
                frame = UnsafeRawBufferPointer(rebasing: message[r])
            }
            counters.forwarded += 1
            counters.payloadBytes += frame.count
            if plan.echo {
                echo(from: c, frame: frame, envelope: env, message: message)
                return
            }
            let phone = g.phones[0]
            complete(phone, frame)
        } else {
            var frame = message
            if targetIsFloor {
                // The floor copies the binary's envelope unchanged.
                guard let e = Envelope.parseBinaryEnvelope(message), let r = e.frame else {
                    noteFailure("phone: bad echo"); return
                }
                frame = UnsafeRawBufferPointer(rebasing: message[r])
            }
            counters.forwarded += 1
            counters.payloadBytes += frame.count
            complete(c, frame)
        }
    }

    @inline(__always)
    private func complete(_ phone: ClientConnection, _ frame: UnsafeRawBufferPointer) {
        phone.inflight -= 1
        counters.completions += 1
        if plan.messagesPerPhone > 0 && phone.inflight == 0 && phone.sent >= plan.messagesPerPhone { exchangesDone += 1 }
        if recordLatency && frame.count >= 22 {
            var t: UInt64 = 0
            for i in 6..<22 {
                let b = frame[i]
                t = t << 4 | UInt64(b >= 0x61 ? b - 0x61 + 10 : b - 0x30)
            }
            let now = monotonicNs()
            if now > t { _ = latency.record(now - t) }
        }
        phone.markDirty()
    }

    /// docs/protocol.md §7.2: `{"conn_id":"<phone>","frame":<frame>}` back to the relay, which delivers the
    /// frame bytes to that phone.
    private func echo(from b: ClientConnection, frame: UnsafeRawBufferPointer, envelope: BinaryEnvelope?,
                      message: UnsafeRawBufferPointer) {
        let head: StaticString = "{\"conn_id\":\""
        let mid: StaticString = "\",\"frame\":"
        func emit(_ id: UnsafeRawBufferPointer) {
            let length = head.utf8CodeUnitCount + id.count + mid.utf8CodeUnitCount + frame.count + 1
            b.queueFrame(opcode: .text, length: length) { dst in
                var p = dst
                p.copyMemory(from: head.utf8Start, byteCount: head.utf8CodeUnitCount); p += head.utf8CodeUnitCount
                if id.count > 0 { p.copyMemory(from: id.baseAddress!, byteCount: id.count) }; p += id.count
                p.copyMemory(from: mid.utf8Start, byteCount: mid.utf8CodeUnitCount); p += mid.utf8CodeUnitCount
                p.copyMemory(from: frame.baseAddress!, byteCount: frame.count); p += frame.count
                p.storeBytes(of: UInt8(ascii: "}"), as: UInt8.self)
            }
        }
        if let env = envelope {
            env.withConnIDBytes(in: message) { emit($0) }
        } else {
            let floorID: StaticString = "floor"
            emit(UnsafeRawBufferPointer(start: floorID.utf8Start, count: floorID.utf8CodeUnitCount))
        }
    }

    // MARK: traffic control

    func startTraffic() {
        running = true
        for g in groups { for p in g.phones { p.markDirty() } }
    }

    func stopTraffic() { running = false }

    /// Open-loop sender (L1): every phone sends on its own schedule regardless of replies.
    func openLoopTick(now: UInt64) {
        guard running, plan.openLoopRate > 0 else { return }
        let phones = groups.reduce(0) { $0 + $1.phones.count }
        let interval = UInt64(Double(phones) / plan.openLoopRate * 1e9)
        for g in groups {
            for p in g.phones where p.state == .open {
                if p.nextSendNs == 0 { p.nextSendNs = now + UInt64(g.index) * interval / UInt64(max(phones, 1)) }
                var n = 0
                while p.nextSendNs <= now && n < 64 {
                    sendOne(p)
                    p.nextSendNs += interval
                    n += 1
                }
                // Fell behind by more than a burst: skip ahead instead of bursting later.
                if p.nextSendNs <= now { p.nextSendNs = now + interval }
            }
        }
    }

    /// S8: each binary reads at most its byte budget per tick.
    func slowBinaryTick(elapsedNs: UInt64) {
        guard plan.slowBinaryBytesPerSec > 0 else { return }
        let budget = max(1, Int(Double(plan.slowBinaryBytesPerSec) * Double(elapsedNs) / 1e9))
        for g in groups where g.binary.state == .open {
            g.binary.readLimit = budget
            g.binary.readFrames()
        }
    }

    /// Runs the loop until `until` (monotonic ns) or `stop()` returns true, calling `tick` about
    /// every `tickMs` ms.
    func loop(until: UInt64, busy: Bool = false, tickNs: UInt64 = 1_000_000_000,
              tick: (UInt64) -> Void = { _ in }, stop: () -> Bool = { false }) {
        var nextTick = monotonicNs() + tickNs
        var lastSlow = monotonicNs()
        while true {
            let now = monotonicNs()
            if now >= until || stop() { return }
            if now >= nextTick {
                tick(now)
                nextTick = now + tickNs
            }
            let wait: Int32 = busy || plan.openLoopRate > 0 ? 0 : (plan.slowBinaryBytesPerSec > 0 ? 10 : 50)
            reactor.runOnce(timeoutMs: wait)
            if plan.openLoopRate > 0 { openLoopTick(now: monotonicNs()) }
            if plan.slowBinaryBytesPerSec > 0 {
                let t = monotonicNs()
                if t - lastSlow >= 10_000_000 {
                    slowBinaryTick(elapsedNs: t - lastSlow)
                    lastSlow = t
                }
            }
        }
    }
}
