/// One HTTP/1.1 response (RFC 9112) parsed from the bytes received so far: the outbound client
/// keeps the few KiB it allows in one array and parses it again after each read (cheap at that
/// size, and no partial state to get wrong). Pure; the size cap is the caller's.
package enum HTTPResponseParser {
    package struct Parsed {
        package var status: Int
        package var headers: [(name: String, value: String)]  // names lowercased, values trimmed
        package var body: [UInt8]
        /// The connection may carry another request (HTTP/1.1, no `Connection: close`, framed body).
        package var keepAlive: Bool
        /// Bytes of the input that belong to this response (more after it: the server misbehaves).
        package var consumed: Int
    }

    package enum Outcome {
        case needMore
        case complete(Parsed)
        case malformed
    }

    /// `eof`: the peer closed; a body delimited by the close (RFC 9112 §6.3 rule 8) ends here.
    /// `bodyless`: the request was HEAD (RFC 9112 §6.3 rule 1).
    package static func parse(_ m: [UInt8], eof: Bool, bodyless: Bool = false) -> Outcome {
        var start = 0
        while true {
            guard let headEnd = findHeadEnd(m, from: start) else { return .needMore }
            guard var head = parseHead(m[start..<headEnd]) else { return .malformed }
            // RFC 9110 §15.2: interim 1xx responses precede the final one; 101 was never asked for.
            if head.status < 200 {
                guard head.status != 101 else { return .malformed }
                start = headEnd
                continue
            }
            let noBody = bodyless || head.status == 204 || head.status == 304
            let te = values(head.headers, "transfer-encoding")
            let cl = values(head.headers, "content-length")
            if noBody {
                return .complete(Parsed(status: head.status, headers: head.headers, body: [],
                                        keepAlive: head.keepAlive, consumed: headEnd))
            }
            if !te.isEmpty {
                // RFC 9112 §6.3 rule 3: Transfer-Encoding overrides Content-Length, and a message
                // that carries both must not be followed by another on the connection.
                if !cl.isEmpty { head.keepAlive = false }
                let last = te.last!.split(separator: ",").last.map { $0.trimmingASCIISpaces().lowercased() }
                if last == "chunked" {
                    return parseChunked(m, from: headEnd, head: head)
                }
                head.keepAlive = false
                return untilClose(m, from: headEnd, head: head, eof: eof)
            }
            if !cl.isEmpty {
                // RFC 9110 §8.6: repeated or listed values must all be the same number.
                let all = cl.flatMap { $0.split(separator: ",").map { $0.trimmingASCIISpaces() } }
                guard let first = all.first, all.allSatisfy({ $0 == first }),
                      let length = DecimalDigits.value(first.utf8, maxDigits: 15) else { return .malformed }
                guard m.count - headEnd >= length else { return .needMore }
                return .complete(Parsed(status: head.status, headers: head.headers,
                                        body: Array(m[headEnd..<headEnd + length]),
                                        keepAlive: head.keepAlive, consumed: headEnd + length))
            }
            head.keepAlive = false
            return untilClose(m, from: headEnd, head: head, eof: eof)
        }
    }

    private struct Head {
        var status: Int
        var headers: [(name: String, value: String)]
        var keepAlive: Bool
    }

    /// Index just past the blank line ending the head, or nil when it has not arrived yet.
    private static func findHeadEnd(_ m: [UInt8], from start: Int) -> Int? {
        guard m.count - start >= 4 else { return nil }
        var i = start
        while i + 3 < m.count {
            if m[i] == HTTPGrammar.cr && m[i + 1] == HTTPGrammar.lf && m[i + 2] == HTTPGrammar.cr && m[i + 3] == HTTPGrammar.lf {
                return i + 4
            }
            i += 1
        }
        return nil
    }

    /// status-line (RFC 9112 §4) and field lines (§5); obs-fold and bare CR are refused.
    private static func parseHead(_ h: ArraySlice<UInt8>) -> Head? {
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = h.startIndex
        var i = h.startIndex
        while i + 1 < h.endIndex {
            if h[i] == HTTPGrammar.cr {
                guard h[i + 1] == HTTPGrammar.lf else { return nil }
                lines.append(h[lineStart..<i])
                i += 2
                lineStart = i
            } else {
                guard h[i] != HTTPGrammar.lf else { return nil }
                i += 1
            }
        }
        guard let statusLine = lines.first, lines.last?.isEmpty == true else { return nil }
        let sl = Array(statusLine)
        // "HTTP/1.x 200 reason" (the reason phrase may be empty, the space before it too).
        guard sl.count >= 12, Array(sl[0..<7]) == Array("HTTP/1.".utf8), sl[7] == 0x30 || sl[7] == 0x31,
              sl[8] == HTTPGrammar.sp, sl[9...11].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              sl.count == 12 || sl[12] == HTTPGrammar.sp else { return nil }
        let status = Int(sl[9] - 0x30) * 100 + Int(sl[10] - 0x30) * 10 + Int(sl[11] - 0x30)
        guard status >= 100 else { return nil }
        var headers: [(name: String, value: String)] = []
        for line in lines.dropFirst().dropLast() {
            guard let colon = line.firstIndex(of: HTTPGrammar.colon), colon > line.startIndex,
                  line[..<colon].allSatisfy(HTTPGrammar.isTokenChar) else { return nil }
            let value = line[(colon + 1)...]
            guard value.allSatisfy(HTTPGrammar.isFieldValueByte) else { return nil }
            let name = String(decoding: line[..<colon].map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 }, as: UTF8.self)
            headers.append((name, String(Substring(String(decoding: value, as: UTF8.self)).trimmingASCIISpaces())))
        }
        var keepAlive = sl[7] == 0x31  // HTTP/1.0 closes unless told otherwise; we never ask
        for v in values(headers, "connection") {
            if v.split(separator: ",").contains(where: { $0.trimmingASCIISpaces().lowercased() == "close" }) { keepAlive = false }
        }
        return Head(status: status, headers: headers, keepAlive: keepAlive)
    }

    private static func values(_ headers: [(name: String, value: String)], _ name: String) -> [String] {
        headers.filter { $0.name == name }.map(\.value)
    }

    private static func untilClose(_ m: [UInt8], from bodyStart: Int, head: Head, eof: Bool) -> Outcome {
        guard eof else { return .needMore }
        return .complete(Parsed(status: head.status, headers: head.headers, body: Array(m[bodyStart...]),
                                keepAlive: false, consumed: m.count))
    }

    /// RFC 9112 §7.1: chunk-size [chunk-ext] CRLF data CRLF … 0 CRLF trailer-fields CRLF.
    private static func parseChunked(_ m: [UInt8], from bodyStart: Int, head: Head) -> Outcome {
        var body: [UInt8] = []
        var i = bodyStart
        while true {
            guard let lineEnd = findCRLF(m, from: i) else { return .needMore }
            var size = 0
            var digits = 0
            var j = i
            while j < lineEnd, let d = Hex.value(m[j]).map(Int.init) {
                size = size << 4 | d
                digits += 1
                j += 1
                guard digits <= 8 else { return .malformed }
            }
            // After the digits: nothing, or a chunk extension (';' possibly after whitespace).
            guard digits > 0 else { return .malformed }
            while j < lineEnd && (m[j] == HTTPGrammar.sp || m[j] == HTTPGrammar.htab) { j += 1 }
            guard j == lineEnd || m[j] == UInt8(ascii: ";") else { return .malformed }
            i = lineEnd + 2
            if size == 0 {
                // Trailer fields (ignored) up to the empty line.
                while true {
                    guard let end = findCRLF(m, from: i) else { return .needMore }
                    let empty = end == i
                    i = end + 2
                    if empty { break }
                }
                return .complete(Parsed(status: head.status, headers: head.headers, body: body,
                                        keepAlive: head.keepAlive, consumed: i))
            }
            guard m.count - i >= size + 2 else { return .needMore }
            guard m[i + size] == HTTPGrammar.cr && m[i + size + 1] == HTTPGrammar.lf else { return .malformed }
            body += m[i..<i + size]
            i += size + 2
        }
    }

    private static func findCRLF(_ m: [UInt8], from start: Int) -> Int? {
        var i = start
        while i + 1 < m.count {
            if m[i] == HTTPGrammar.cr && m[i + 1] == HTTPGrammar.lf { return i }
            i += 1
        }
        return nil
    }
}
