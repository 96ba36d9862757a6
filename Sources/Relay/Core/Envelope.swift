import CRelaySIMD

import RelayCodecs

/// The routing envelope between the relay and a binary (docs/protocol.md §7.1, §7.2, §9.5).
public enum Envelope {
    // `{"conn_id":"` … `","frame":` … `}` — exactly these two keys in this order (docs/protocol.md §7.1).
    @usableFromInline package static let wrapHead: StaticString = "{\"conn_id\":\""
    @usableFromInline package static let wrapMiddle: StaticString = "\",\"frame\":"
    @usableFromInline package static let wrapTail: StaticString = "}"

    /// Bytes `wrap` writes for a connection id of `connIDLength` bytes (already JSON-escaped,
    /// see `JSONString.escaped`) and a frame of `frameLength` bytes.
    @inline(__always)
    public static func wrappedLength(connIDLength: Int, frameLength: Int) -> Int {
        wrapHead.utf8CodeUnitCount + connIDLength + wrapMiddle.utf8CodeUnitCount + frameLength
            + wrapTail.utf8CodeUnitCount
    }

    /// Phone → binary (docs/protocol.md §7.1): writes `{"conn_id":"<connID>","frame":<frame>}` into `dst`,
    /// which must hold `wrappedLength(...)` bytes; returns the bytes written.
    /// `connID` must already be the JSON string body (`JSONString.escaped(id)`, computed once per phone;
    /// ids made only of printable ASCII other than `"` `\` `<` `>` `&` are their own escape).
    /// `frame` is copied verbatim: the caller has checked it with `JSON.isValid` (docs/protocol.md §7.1).
    /// Inlinable: every phone message is wrapped, in the service module.
    @inlinable @inline(__always)
    public static func wrap(
        connID: UnsafeRawBufferPointer, frame: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer
    ) -> Int {
        var out = dst
        @inline(__always) func put(_ s: StaticString) {
            out.copyMemory(from: s.utf8Start, byteCount: s.utf8CodeUnitCount)
            out += s.utf8CodeUnitCount
        }
        @inline(__always) func put(_ b: UnsafeRawBufferPointer) {
            if let p = b.baseAddress, b.count > 0 { out.copyMemory(from: p, byteCount: b.count) }
            out += b.count
        }
        put(wrapHead)
        put(connID)
        put(wrapMiddle)
        // The frame is the per-byte part: vector loads and stores (glibc's memcpy moves large
        // buffers with `rep movsb`).
        if let p = frame.baseAddress, frame.count > 0 { pyry_copy(out, p, frame.count) }
        out += frame.count
        put(wrapTail)
        return dst.distance(to: out)
    }

    /// Convenience for tests and cold paths.
    public static func wrap(connID: String, frame: [UInt8]) -> [UInt8] {
        let id = JSONString.escaped(connID)
        let n = wrappedLength(connIDLength: id.count, frameLength: frame.count)
        return [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
            initialized = id.withUnsafeBytes { idb in
                frame.withUnsafeBytes { fb in wrap(connID: idb, frame: fb, into: buf.baseAddress!) }
            }
        }
    }

    /// Close notice (docs/protocol.md §8): `{"conn_id":"<id>","close_code":N}` — two keys, no `frame`.
    public static func closeNotice(connID: String, code: UInt16) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(connID.utf8.count + 40)
        out.append(contentsOf: "{\"conn_id\":\"".utf8)
        out.append(contentsOf: JSONString.escaped(connID))
        out.append(contentsOf: "\",\"close_code\":".utf8)
        out.append(contentsOf: String(code).utf8)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Binary → relay (docs/protocol.md §7.2): one pass over `bytes`, no copies (except a `conn_id` written
    /// with escapes, see `BinaryEnvelope.ConnID`). `nil` = invalid: drop it and log
    /// `binary_forwarder_unmarshal_err`.
    public static func parseBinaryEnvelope(
        _ bytes: UnsafeRawBufferPointer, maxDepth: Int = JSON.defaultMaxDepth
    ) -> BinaryEnvelope? {
        EnvelopeParser.parse(bytes, maxDepth: maxDepth)
    }

    /// Convenience for tests and cold paths.
    public static func parseBinaryEnvelope(_ bytes: [UInt8]) -> BinaryEnvelope? {
        bytes.withUnsafeBytes { parseBinaryEnvelope($0) }
    }
}

/// A valid binary envelope, as byte ranges into the parsed buffer.
public struct BinaryEnvelope: Equatable, Sendable {
    /// The `conn_id` string value.
    public enum ConnID: Equatable, Sendable {
        /// Absent, `null` or `""`: a wake request (only valid with `pushWake` set).
        case none
        /// No escapes: the bytes between the quotes, a range of the parsed buffer (the usual case:
        /// relay ids are `client-<server-id>-<8 hex>`).
        case raw(Range<Int>)
        /// Written with escapes (legal JSON, e.g. `client-\u0061…`): decoded UTF-8, the way Go
        /// unquotes it (a lone surrogate escape becomes U+FFFD). The only allocating path; never
        /// taken for a binary that writes ids the way the relay sent them.
        case decoded([UInt8])
    }

    public var connID: ConnID
    /// The exact bytes of the `frame` value (docs/protocol.md §7.2); `nil` when absent or `null`.
    public var frame: Range<Int>?
    /// The close directive, 1...65535; `nil` when absent, `null` or 0.
    public var closeCode: UInt16?
    /// The exact bytes of the `push_wake` value when present and not `null`. Like Go (a
    /// `json.RawMessage` field) any JSON type is accepted here; the push layer (docs/protocol.md §9) checks
    /// it is an object with `platform` and `token` and logs `binary_forwarder_push_wake_dropped`
    /// when not. Only meaningful when `connID == .none`.
    public var pushWake: Range<Int>?

    public init(connID: ConnID, frame: Range<Int>?, closeCode: UInt16?, pushWake: Range<Int>?) {
        self.connID = connID
        self.frame = frame
        self.closeCode = closeCode
        self.pushWake = pushWake
    }

    /// Calls `body` with the conn_id bytes (empty for `.none`), whichever form they take.
    public func withConnIDBytes<R>(
        in buffer: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        switch connID {
        case .none: return try body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .raw(let r): return try body(UnsafeRawBufferPointer(rebasing: buffer[r]))
        case .decoded(let bytes): return try bytes.withUnsafeBytes(body)
        }
    }
}
