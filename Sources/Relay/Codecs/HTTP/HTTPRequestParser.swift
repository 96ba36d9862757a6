/// Outcome of feeding bytes to `HTTPRequestParser`.
public enum HTTPParseResult: Sendable {
    /// The head is not complete yet and nothing is wrong so far.
    case needMore
    /// The head is complete; it occupies the first `headerLength` bytes of the buffer (bytes after
    /// it belong to whatever follows: a pipelined request, or WebSocket frames after the 101).
    case complete(HTTPRequestHead, headerLength: Int)
    /// The bytes are not an acceptable HTTP/1.x request head: answer with this status and close.
    case failure(HTTPStatus)
}

/// Incremental, bounded parser of an HTTP/1.x request head (RFC 9112 §2–§5), pure (no syscalls).
///
/// The caller accumulates every byte received for the current request and passes all of them on
/// each call; the parser remembers how far it has looked, so the total work over any number of
/// calls is O(head length). Bytes already passed must not change between calls. Every byte is
/// checked as it arrives, so non-HTTP input (a TLS ClientHello, binary garbage) fails with 400 on
/// its first offending byte, and no more than `maxHeaderBytes` bytes are ever examined.
///
/// Choices (docs/protocol.md §3.2):
/// - Request line + headers + the terminating empty line ≤ `maxHeaderBytes`; once more bytes than
///   that are buffered without a complete head → 431. More than `maxHeaderCount` header lines → 431.
/// - Line endings: CRLF, and a bare LF is recognized too (RFC 9112 §2.2 allows it); a bare CR → 400.
/// - Empty lines before the request line are ignored (RFC 9112 §2.2 SHOULD).
/// - Request line is strictly `token SP target SP HTTP/d.d` (one SP each, target visible ASCII);
///   else 400. Major version ≠ 1 → 505; `HTTP/1.x` any digit accepted (RFC 9110 §6.2).
/// - Header lines: obs-fold (a line starting with SP/HTAB) → 400 (RFC 9112 §5.2); whitespace
///   between name and colon → 400 (RFC 9112 §5.1); no colon → 400; control characters (NUL,
///   bare CR, DEL…) in names or values → 400 (RFC 9110 §5.5).
/// - HTTP/1.1 without exactly one Host line, or HTTP/1.0 with several → 400 (RFC 9112 §3.2).
/// - Content-Length that is not digits, lines that disagree, or Content-Length together with
///   Transfer-Encoding → 400 (RFC 9112 §6.1, §6.3). A body itself is reported, not read.
public struct HTTPRequestParser: Sendable {
    public let maxHeaderBytes: Int
    public let maxHeaderCount: Int

    private enum State: UInt8, Sendable {
        case leadingLine, leadingCR
        case method, target, version, requestLineCR
        case fieldStart, fieldName, fieldValue, fieldCR, finalCR
    }

    /// "HTTP/" — the case-sensitive HTTP-name and slash (RFC 9112 §2.3).
    private static let httpSlash: (UInt8, UInt8, UInt8, UInt8, UInt8) = (0x48, 0x54, 0x54, 0x50, 0x2F)

    private var state = State.leadingLine
    private var offset = 0           // next byte to examine
    private var lineStart = 0
    private var methodEnd = 0
    private var targetStart = 0
    private var versionIndex = 0     // position within "HTTP/d.d"
    private var major = 0
    private var minor = 0
    private var colon = 0            // index of the current header line's colon
    private var crAt = 0             // index of the CR that ends the current line
    private var method = ""
    private var target = ""
    private var headers: [(name: String, value: String)] = []
    private var finished: HTTPParseResult?

    public init(maxHeaderBytes: Int = Limits.maxHeaderBytes, maxHeaderCount: Int = 100) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }

    /// Forget the previous request (keep-alive: the caller drops the previous head's bytes first).
    public mutating func reset() {
        self = HTTPRequestParser(maxHeaderBytes: maxHeaderBytes, maxHeaderCount: maxHeaderCount)
    }

    /// `buffered` holds ALL bytes received so far for this request. After `.complete` or
    /// `.failure` the same result is returned until `reset()`.
    public mutating func parse(_ buffered: UnsafeRawBufferPointer) -> HTTPParseResult {
        if let finished { return finished }
        // Only the first maxHeaderBytes bytes can belong to an acceptable head.
        let end = min(buffered.count, maxHeaderBytes)
        var i = offset
        while i < end {
            let b = buffered[i]
            switch state {
            case .leadingLine:
                if b == HTTPGrammar.lf {
                    // empty line before the request line: ignored (RFC 9112 §2.2)
                } else if b == HTTPGrammar.cr {
                    state = .leadingCR
                } else if HTTPGrammar.isTokenChar(b) {
                    lineStart = i
                    state = .method
                } else {
                    return fail(.badRequest)
                }
            case .leadingCR:
                guard b == HTTPGrammar.lf else { return fail(.badRequest) }
                state = .leadingLine
            case .method:
                if b == HTTPGrammar.sp {
                    methodEnd = i
                    targetStart = i + 1
                    state = .target
                } else if !HTTPGrammar.isTokenChar(b) {
                    return fail(.badRequest)
                }
            case .target:
                if b == HTTPGrammar.sp {
                    guard i > targetStart else { return fail(.badRequest) }  // empty target
                    method = Self.string(buffered, lineStart, methodEnd)
                    target = Self.string(buffered, targetStart, i)
                    versionIndex = 0
                    state = .version
                } else if !HTTPGrammar.isVisible(b) {
                    return fail(.badRequest)
                }
            case .version where versionIndex == 8:
                if b == HTTPGrammar.cr {
                    state = .requestLineCR
                } else if b == HTTPGrammar.lf {
                    if let status = requestLineEnded() { return fail(status) }
                } else {
                    return fail(.badRequest)
                }
            case .version:
                guard acceptVersionByte(b) else { return fail(.badRequest) }
            case .requestLineCR:
                guard b == HTTPGrammar.lf else { return fail(.badRequest) }
                if let status = requestLineEnded() { return fail(status) }
            case .fieldStart:
                if b == HTTPGrammar.cr {
                    state = .finalCR
                } else if b == HTTPGrammar.lf {
                    return headEnded(length: i + 1)
                } else if HTTPGrammar.isTokenChar(b) {
                    // A new line: refuse the one past the cap now rather than at its end.
                    guard headers.count < maxHeaderCount else { return fail(.headersTooLarge) }
                    lineStart = i
                    state = .fieldName
                } else {
                    // SP/HTAB here is obs-fold, or whitespace before the first field (RFC 9112
                    // §5.2, §2.2); anything else is not a field name.
                    return fail(.badRequest)
                }
            case .fieldName:
                if b == HTTPGrammar.colon {
                    colon = i
                    state = .fieldValue
                } else if !HTTPGrammar.isTokenChar(b) {
                    // Covers whitespace before the colon (RFC 9112 §5.1) and lines without one.
                    return fail(.badRequest)
                }
            case .fieldValue:
                if b == HTTPGrammar.cr {
                    crAt = i
                    state = .fieldCR
                } else if b == HTTPGrammar.lf {
                    fieldEnded(valueEnd: i, buffered)
                } else if !HTTPGrammar.isFieldValueByte(b) {
                    return fail(.badRequest)
                }
            case .fieldCR:
                guard b == HTTPGrammar.lf else { return fail(.badRequest) }
                fieldEnded(valueEnd: crAt, buffered)
            case .finalCR:
                guard b == HTTPGrammar.lf else { return fail(.badRequest) }
                return headEnded(length: i + 1)
            }
            i += 1
        }
        offset = i
        if buffered.count > maxHeaderBytes { return fail(.headersTooLarge) }
        return .needMore
    }

    /// One byte of `HTTP/d.d` (positions 0…7).
    private mutating func acceptVersionByte(_ b: UInt8) -> Bool {
        let k = versionIndex
        versionIndex += 1
        switch k {
        case 0: return b == Self.httpSlash.0
        case 1: return b == Self.httpSlash.1
        case 2: return b == Self.httpSlash.2
        case 3: return b == Self.httpSlash.3
        case 4: return b == Self.httpSlash.4
        case 6: return b == UInt8(ascii: ".")
        default:
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return false }
            if k == 5 { major = Int(b - UInt8(ascii: "0")) } else { minor = Int(b - UInt8(ascii: "0")) }
            return true
        }
    }

    /// The request line is complete and well-formed; returns a status to fail with, or nil.
    private mutating func requestLineEnded() -> HTTPStatus? {
        // RFC 9110 §6.2: a different major version is a different protocol.
        if major != 1 { return .versionNotSupported }
        state = .fieldStart
        return nil
    }

    private mutating func fieldEnded(valueEnd: Int, _ buffered: UnsafeRawBufferPointer) {
        // Lowercased straight into the String's storage (a name of up to 15 bytes, as most are,
        // is stored inline: no allocation). Token characters only (checked before): ASCII.
        let name = String(unsafeUninitializedCapacity: colon - lineStart) { out in
            for j in lineStart..<colon { out[j - lineStart] = HTTPGrammar.lowercased(buffered[j]) }
            return colon - lineStart
        }
        var vs = colon + 1
        var ve = valueEnd
        while vs < ve, HTTPGrammar.isOWS(buffered[vs]) { vs += 1 }
        while ve > vs, HTTPGrammar.isOWS(buffered[ve - 1]) { ve -= 1 }
        headers.append((name: name, value: Self.string(buffered, vs, ve)))
        state = .fieldStart
    }

    private mutating func headEnded(length: Int) -> HTTPParseResult {
        var head = HTTPRequestHead(method: method, target: target, versionMinor: minor, headers: headers)
        // RFC 9112 §3.2: 400 for an HTTP/1.1 request without exactly one Host line, and for any
        // request with more than one.
        let hosts = head.count("host")
        if hosts > 1 || (minor >= 1 && hosts == 0) { return fail(.badRequest) }
        // RFC 9112 §6.3: invalid or disagreeing Content-Length is unrecoverable; with
        // Transfer-Encoding as well it is a smuggling attempt (§6.1) — we read no body either way.
        head.hasTransferEncoding = head.count("transfer-encoding") > 0
        let lengths = head.values("content-length")
        if let first = lengths.first {
            guard let n = DecimalDigits.value(first.utf8), lengths.allSatisfy({ DecimalDigits.value($0.utf8) == n }),
                !head.hasTransferEncoding
            else { return fail(.badRequest) }
            head.contentLength = n
        }
        let result = HTTPParseResult.complete(head, headerLength: length)
        finished = result
        return result
    }

    private mutating func fail(_ status: HTTPStatus) -> HTTPParseResult {
        let result = HTTPParseResult.failure(status)
        finished = result
        return result
    }

    private static func string(_ buffered: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buffered[from..<to]), as: UTF8.self)
    }
}
