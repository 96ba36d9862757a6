import CEpoll
import RelaySystem
import RelayReactor
import RelayCodecs
import RelayTransport
import RelayCore
import Relaying
import RelayOperations

/// A deterministic in-process driver for instruction counting (docs/benchmarks.md § Regression gate:
/// instructions per forwarded 64 B frame, stable enough for CI).
/// `scripts/callgrind-check.sh` runs it under `valgrind --tool=callgrind --toggle-collect=…` so
/// only the measured functions are counted, and divides by the message count.
///
/// Modes:
/// - `service`: the relay's real forwarding path. A `RelayService` on its own reactor listens on
///   127.0.0.1:0; one binary and one phone connect over loopback; each step writes one masked
///   64 B JSON frame to the phone socket and runs one loop iteration (`measuredStep`): epoll,
///   read, parse, unmask, validate, route, wrap, frame, write. Counted: everything inside
///   `measuredStep` (the relay's user-space instructions up to each syscall).
/// - `path`: only the per-message user-space work, no syscalls (`forwardOne`): parse + unmask a
///   masked 64 B frame (or the `payload` of `size`), `JSON.isValid`, header + `Envelope.wrap`
///   into an output buffer.
/// - `service-deflate`: `service` with `--permessage-deflate` and both legs negotiating it: the
///   phone sends deflated frames, the relay inflates, validates, wraps and deflates for the binary
///   (docs/benchmarks.md, "permessage-deflate"). `payload` picks the message: `x` (the gate's
///   filler), `pyry` (JSON around base64 of `size` random ciphertext bytes) or `text` (about
///   `size` bytes of plain JSON text).
/// - `service-reverse`: `service` the other way: each step writes one masked envelope
///   `{"conn_id":…,"frame":<message>}` to the binary socket and runs the loop until the phone has
///   the frame: read, parse, unmask, envelope scan, registry lookup, outbox charge, copy, write.
enum CallgrindDriver {
    static func run(mode: String, messages: Int, size: Int, payload kind: String = "x") -> Int32 {
        guard let message = payload(kind, size: size) else {
            eprint("callgrind-driver: unknown payload \(kind) (x|pyry|text)\n")
            return 2
        }
        switch mode {
        case "path": return runPath(messages: messages, message: message)
        case "service": return runService(messages: messages, message: message, deflate: false)
        case "service-deflate": return runService(messages: messages, message: message, deflate: true)
        case "service-reverse": return runServiceReverse(messages: messages, message: message)
        case "decode-text": return runDecoder(messages: messages, size: size, opcode: .text)
        case "decode-binary": return runDecoder(messages: messages, size: size, opcode: .binary)
        default:
            eprint("callgrind-driver: unknown mode \(mode) (path|service|service-deflate|service-reverse|decode-text|decode-binary)\n")
            return 2
        }
    }

    static func payload(size: Int) -> [UInt8] {
        var p = Array("{\"t\":\"0000000000000000\",\"p\":\"".utf8)
        p += [UInt8](repeating: UInt8(ascii: "x"), count: max(0, size - p.count - 2))
        p += Array("\"}".utf8)
        return p
    }

    static func payload(_ kind: String, size: Int) -> [UInt8]? {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            return seed
        }
        switch kind {
        case "x":
            return payload(size: size)
        case "pyry":
            // A pyrycode frame: ciphertext (incompressible) in base64 inside a small JSON object.
            let ct = (0..<size).map { _ in UInt8(truncatingIfNeeded: next()) }
            return Array("{\"type\":\"msg\",\"session\":\"5f1c2a9e\",\"seq\":4711,\"nonce\":\"q83vEjRWeJA=\",\"ct\":\"\(Base64.encode(ct[...]))\"}".utf8)
        case "text":
            // Plain JSON text: terminal output lines of ordinary words.
            let words = ["the", "build", "test", "passed", "failed", "error", "warning", "file", "line", "compiling",
                         "module", "relay", "message", "connection", "server", "client", "in", "of", "to", "with"]
            var lines: [String] = []
            var bytes = 40
            while bytes < size {
                let n = 4 + Int(next() % 8)
                let line = (0..<n).map { _ in words[Int(next() % UInt64(words.count))] }.joined(separator: " ")
                lines.append("\"\(line) (\(next() % 1000))\"")
                bytes += line.count + 10
            }
            return Array("{\"type\":\"output\",\"stream\":\"stdout\",\"lines\":[\(lines.joined(separator: ","))]}".utf8)
        default:
            return nil
        }
    }

    // MARK: decoder

    /// The WebSocket decoder alone on one masked frame of `size` bytes (issue #2's figure):
    /// header, unmask in place, UTF-8 validation for text. Counted: `relay_bench_decode_one`.
    static func runDecoder(messages: Int, size: Int, opcode: Opcode) -> Int32 {
        let frame = FrameEncoder.maskedFrame(opcode: opcode, payload: payload(size: size), maskKey: 0x1122_3344)
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 16)
        defer { input.deallocate() }
        var parser = WebSocketParser()
        var total = 0
        for _ in 0..<messages {
            frame.withUnsafeBytes { input.copyMemory(from: $0) }  // restore the masked bytes (not counted)
            total &+= decodeOne(&parser, input)
        }
        guard total == messages * size else {
            eprint("callgrind-driver: decoder produced \(total) bytes, expected \(messages * size)\n")
            return 1
        }
        print("callgrind-driver decode: \(messages) frames of \(size) B")
        return 0
    }

    @inline(never) @_silgen_name("relay_bench_decode_one")
    static func decodeOne(_ parser: inout WebSocketParser, _ input: UnsafeMutableRawBufferPointer) -> Int {
        guard case .message(_, let payload, _) = parser.next(input) else { return 0 }
        return payload.count
    }

    // MARK: path

    static func runPath(messages: Int, message: [UInt8]) -> Int32 {
        let size = message.count
        let frame = FrameEncoder.maskedFrame(opcode: .text, payload: message, maskKey: 0x1234_5678)
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 16)
        let output = UnsafeMutableRawPointer.allocate(byteCount: size + 1024, alignment: 16)
        defer { input.deallocate(); output.deallocate() }
        let connID = Array("client-bench-0-0123abcd".utf8)
        var parser = WebSocketParser()
        var total = 0
        for _ in 0..<messages {
            // The parser unmasks in place: restore the wire bytes (not counted: outside forwardOne).
            frame.withUnsafeBytes { input.copyMemory(from: $0) }
            total &+= forwardOne(&parser, input, connID, output)
        }
        let wrapped = Envelope.wrappedLength(connIDLength: connID.count, frameLength: size)
        guard total == messages * (FrameEncoder.headerLength(payloadLength: wrapped) + wrapped) else {
            eprint("callgrind-driver: path produced \(total) bytes, expected more\n")
            return 1
        }
        print("callgrind-driver path: \(messages) messages of \(size) B")
        return 0
    }

    /// One message through the relay's user-space per-message path; returns bytes written.
    @inline(never) @_silgen_name("relay_bench_forward_one")
    static func forwardOne(_ parser: inout WebSocketParser, _ input: UnsafeMutableRawBufferPointer,
                           _ connID: [UInt8], _ output: UnsafeMutableRawPointer) -> Int {
        guard case .message(_, let payload, _) = parser.next(input) else { return 0 }
        guard JSON.isValid(payload) else { return 0 }
        let length = Envelope.wrappedLength(connIDLength: connID.count, frameLength: payload.count)
        let h = FrameEncoder.writeHeader(opcode: .text, payloadLength: length, into: output)
        return connID.withUnsafeBytes { id in h + Envelope.wrap(connID: id, frame: payload, into: output + h) }
    }

    // MARK: service

    static func runService(messages: Int, message: [UInt8], deflate: Bool) -> Int32 {
        do {
            let reactor = try Reactor()
            let context = IOContext(reactor: reactor)
            var settings = RelaySettings()
            settings.permessageDeflate = deflate
            // No heartbeat ping may land among the forwarded frames of a run longer than 30 s
            // (valgrind, large messages).
            settings.connection.heartbeatIntervalMs = 24 * 3_600_000
            let relay = RelayService(settings: settings, context: context)
            let listener = try Listener(socket: try Socket.listen(on: SocketAddress(ip: "127.0.0.1", port: 0)!),
                                        reactor: reactor) { fd, remote in relay.accept(fd: fd, remote: remote) }
            let target = listener.address
            let binary = try blockingClient(target)
            let phone = try blockingClient(target)
            defer { _ = close(binary); _ = close(phone) }
            let offer = deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : ""
            try handshake(binary, path: "/v1/server", extra: "X-Pyrycode-Version: cg\r\n" + offer, reactor: reactor)
            try handshake(phone, path: "/v1/client", extra: "X-Pyrycode-Token: t\r\n" + offer, reactor: reactor)
            let frame = deflate ? compressedFrame(message) : FrameEncoder.maskedFrame(opcode: .text, payload: message, maskKey: 0x1234_5678)
            let sink = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { sink.deallocate() }
            // Warm up (not counted): first-message allocations, dictionary growth.
            // Each step forwards one message: read the binary's side until its one frame is whole.
            var toBinary = 0
            for i in 0..<(messages + 100) {
                frame.withUnsafeBytes { f in _ = write(phone, f.baseAddress, f.count) }
                var got = 0
                var want = Int.max
                repeat {
                    if i < 100 { setupStep(reactor) } else { measuredStep(reactor) }
                    let n = read(binary, sink + got, (1 << 20) - got)
                    if n > 0 { got += n }
                    if let length = FrameEncoder.frameLength(UnsafeRawBufferPointer(start: sink, count: got)) { want = length }
                } while got < want
                if got != want {
                    eprint("callgrind-driver: binary got \(got) bytes, one frame is \(want)\n")
                    return 1
                }
                if i >= 100 { toBinary += got }
            }
            withExtendedLifetime(listener) {}
            print("callgrind-driver \(deflate ? "service-deflate" : "service"): \(messages) messages of \(message.count) B, "
                  + "\(frame.count) B each from the phone, \(toBinary / messages) B each to the binary (mean)")
            return 0
        } catch {
            eprint("callgrind-driver: \(error)\n")
            return 1
        }
    }

    static func runServiceReverse(messages: Int, message: [UInt8]) -> Int32 {
        do {
            let reactor = try Reactor()
            let context = IOContext(reactor: reactor)
            var settings = RelaySettings()
            settings.connection.heartbeatIntervalMs = 24 * 3_600_000
            let relay = RelayService(settings: settings, context: context)
            let listener = try Listener(socket: try Socket.listen(on: SocketAddress(ip: "127.0.0.1", port: 0)!),
                                        reactor: reactor) { fd, remote in relay.accept(fd: fd, remote: remote) }
            let binary = try blockingClient(listener.address)
            let phone = try blockingClient(listener.address)
            defer { _ = close(binary); _ = close(phone) }
            try handshake(binary, path: "/v1/server", extra: "X-Pyrycode-Version: cg\r\n", reactor: reactor)
            try handshake(phone, path: "/v1/client", extra: "X-Pyrycode-Token: t\r\n", reactor: reactor)
            let sink = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { sink.deallocate() }
            /// Runs loop steps until `fd` holds one whole server frame; returns its length.
            func receiveFrame(_ fd: Int32, measured: Bool) -> Int {
                var got = 0
                var want = Int.max
                repeat {
                    if measured { measuredStep(reactor) } else { setupStep(reactor) }
                    let n = read(fd, sink + got, (1 << 20) - got)
                    if n > 0 { got += n }
                    if let length = FrameEncoder.frameLength(UnsafeRawBufferPointer(start: sink, count: got)) { want = length }
                } while got < want
                return got == want ? got : -1
            }
            // The phone's conn id, from the wrapper of one message it sends.
            let probe = FrameEncoder.maskedFrame(opcode: .text, payload: message, maskKey: 0x1234_5678)
            probe.withUnsafeBytes { f in _ = write(phone, f.baseAddress, f.count) }
            let wrapped = receiveFrame(binary, measured: false)
            let text = String(decoding: UnsafeRawBufferPointer(start: sink, count: max(0, wrapped)), as: UTF8.self)
            guard let start = text.firstRange(of: "\"conn_id\":\"")?.upperBound,
                let end = text[start...].firstIndex(of: "\"")
            else {
                eprint("callgrind-driver: no conn_id in the binary's first message\n")
                return 1
            }
            let envelope = Array("{\"conn_id\":\"\(text[start..<end])\",\"frame\":".utf8) + message + [UInt8(ascii: "}")]
            let frame = FrameEncoder.maskedFrame(opcode: .text, payload: envelope, maskKey: 0x1234_5678)
            var toPhone = 0
            for i in 0..<(messages + 100) {
                frame.withUnsafeBytes { f in _ = write(binary, f.baseAddress, f.count) }
                let got = receiveFrame(phone, measured: i >= 100)
                if got < 0 {
                    eprint("callgrind-driver: the phone got more than one frame\n")
                    return 1
                }
                if i >= 100 { toPhone += got }
            }
            withExtendedLifetime(listener) {}
            print("callgrind-driver service-reverse: \(messages) messages of \(message.count) B, "
                  + "\(frame.count) B each from the binary, \(toPhone / messages) B each to the phone")
            return 0
        } catch {
            eprint("callgrind-driver: \(error)\n")
            return 1
        }
    }

    /// What a compressing phone sends (RFC 7692 §7.2.1): the message deflated, RSV1 set, when
    /// that is smaller; else as is.
    static func compressedFrame(_ message: [UInt8]) -> [UInt8] {
        let codec = DeflateCodec()
        guard let (p, n) = message.withUnsafeBytes({ codec.deflate($0, windowBits: 15) }) else {
            return FrameEncoder.maskedFrame(opcode: .text, payload: message, maskKey: 0x1234_5678)
        }
        defer { p.deallocate() }
        var frame = FrameEncoder.maskedFrame(opcode: .text, payload: Array(UnsafeRawBufferPointer(start: p, count: n)), maskKey: 0x1234_5678)
        frame[0] |= 0x40
        return frame
    }

    /// The counted region (`--toggle-collect=relay_bench_measured_step`): a fixed C symbol, not
    /// optimised away or folded with `setupStep` (its own overhead is a handful of instructions).
    @inline(never) @_optimize(none) @_silgen_name("relay_bench_measured_step")
    static func measuredStep(_ reactor: Reactor) { reactor.runOnce(timeoutMs: 1000) }

    @inline(never) @_optimize(none) @_silgen_name("relay_bench_setup_step")
    static func setupStep(_ reactor: Reactor) { reactor.runOnce(timeoutMs: 999) }

    /// A connected socket whose reads do not block (the driver polls it between loop steps).
    static func blockingClient(_ target: SocketAddress) throws(Errno) -> Int32 {
        let fd = try syscallChecked("socket") {
            socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        }
        let r = (try? target.withSockAddr { sa, len in pyry_connect(fd, sa, len) }) ?? -1
        if r < 0 && pyry_errno() != EINPROGRESS { throw Errno(pyry_errno(), call: "connect") }
        // Loopback connects complete in the kernel (the listener's backlog), before any accept.
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        _ = poll(&p, 1, 1000)
        Socket.setNoDelay(fd)
        return fd
    }

    static func handshake(_ fd: Int32, path: String, extra: String, reactor: Reactor) throws(Errno) {
        let req = "GET \(path) HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + "User-Agent: cg\r\nX-Pyrycode-Server: cg\r\n" + extra + "\r\n"
        var r = req
        _ = r.withUTF8 { write(fd, $0.baseAddress, $0.count) }
        var head: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        for _ in 0..<100 {
            setupStep(reactor)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n > 0 { head += buf[0..<n] }
            if head.count >= 4 && head.suffix(4) == [13, 10, 13, 10] { break }
        }
        guard String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101") else {
            throw Errno(EPROTO, call: "handshake")
        }
    }
}
