/// Just enough of RFC 1035 for one A or AAAA question (RFC 3596) and its answer. Pure: bytes in,
/// bytes out; FlyDNSSignal and AsyncResolver do the I/O.
public enum DNSMessage {
    public static let typeA: UInt16 = 1  // RFC 1035 §3.2.2
    public static let typeAAAA: UInt16 = 28  // RFC 3596 §2.1
    public static let classIN: UInt16 = 1

    public enum QueryError: Error, Equatable { case badName }

    /// A standard query (opcode 0, RD=1) with one question `name` IN AAAA (RFC 1035 §4.1).
    public static func aaaaQuery(id: UInt16, name: String) throws(QueryError) -> [UInt8] {
        try query(id: id, name: name, type: typeAAAA)
    }

    /// A standard query (opcode 0, RD=1) with one question `name` IN `type` (RFC 1035 §4.1).
    public static func query(id: UInt16, name: String, type: UInt16) throws(QueryError) -> [UInt8] {
        var q: [UInt8] = [
            UInt8(id >> 8), UInt8(id & 0xff),
            0x01, 0x00,  // QR=0 opcode=0 AA=0 TC=0 RD=1 | RA=0 Z=0 RCODE=0
            0x00, 0x01,  // QDCOUNT
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // ANCOUNT NSCOUNT ARCOUNT
        ]
        q += try encodeName(name)
        q += [UInt8(type >> 8), UInt8(type & 0xff), UInt8(classIN >> 8), UInt8(classIN & 0xff)]
        return q
    }

    /// RFC 1035 §3.1: length-prefixed labels of 1–63 octets, the whole name ≤ 255 octets.
    /// Labels are restricted to letters, digits, `-` and `_` (hostnames; Fly app names are a subset).
    public static func encodeName(_ name: String) throws(QueryError) -> [UInt8] {
        var out: [UInt8] = []
        let trimmed = name.hasSuffix(".") ? String(name.dropLast()) : name
        for label in trimmed.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count),
                  label.allSatisfy({ b in
                      (b >= 0x30 && b <= 0x39) || (b | 0x20 >= 0x61 && b | 0x20 <= 0x7a) || b == 0x2d || b == 0x5f
                  }) else { throw .badName }
            out.append(UInt8(label.count))
            out += label
        }
        out.append(0)
        guard out.count <= 255 else { throw .badName }
        return out
    }

    public typealias AAAAResponse = AddressResponse

    public struct AddressResponse: Equatable, Sendable {
        public var id: UInt16
        public var rcode: UInt8
        public var truncated: Bool
        /// The question's name, lowercased, dot-separated, no trailing dot.
        public var questionName: String?
        /// Each 16 octets (AAAA) or 4 octets (A), in answer order (duplicates kept).
        public var addresses: [[UInt8]]
    }

    public enum ParseError: Error, Equatable {
        case short          // the message ends inside a field
        case notAResponse   // QR = 0
        case badName        // a label type 01/10, a forward or looping pointer, a name > 255 octets
    }

    /// Parses a response: header, the questions (skipped, the first one's name kept) and the answer
    /// section's IN AAAA records (other types, e.g. CNAME, are skipped). Authority and additional
    /// sections are not read. A truncated (TC) message yields the records that fit.
    public static func parseAAAAResponse(_ m: [UInt8]) throws(ParseError) -> AddressResponse {
        try parseResponse(m, type: typeAAAA)
    }

    /// `parseAAAAResponse` for answers of `type` A (4-octet addresses) or AAAA (16 octets).
    public static func parseResponse(_ m: [UInt8], type wanted: UInt16) throws(ParseError) -> AddressResponse {
        let size = wanted == typeA ? 4 : 16
        guard m.count >= 12 else { throw .short }
        func u16(_ i: Int) throws(ParseError) -> UInt16 {
            guard i + 2 <= m.count else { throw .short }
            return UInt16(m[i]) << 8 | UInt16(m[i + 1])
        }
        guard m[2] & 0x80 != 0 else { throw .notAResponse }
        var r = AddressResponse(id: try u16(0), rcode: m[3] & 0x0f, truncated: m[2] & 0x02 != 0,
                             questionName: nil, addresses: [])
        let qd = Int(try u16(4)), an = Int(try u16(6))
        var i = 12
        for q in 0..<qd {
            let (name, next) = try readName(m, at: i)
            if q == 0 { r.questionName = name }
            i = next + 4  // QTYPE, QCLASS
            guard i <= m.count else { throw .short }
        }
        for _ in 0..<an {
            // A truncated answer may stop mid-record: keep the complete records before it.
            do throws(ParseError) {
                let (_, next) = try readName(m, at: i)
                let type = try u16(next), cls = try u16(next + 2)
                let rdlen = Int(try u16(next + 8))
                let rdata = next + 10
                guard rdata + rdlen <= m.count else { throw .short }
                if type == wanted && cls == classIN && rdlen == size {
                    r.addresses.append(Array(m[rdata..<rdata + size]))
                }
                i = rdata + rdlen
            } catch {
                if r.truncated && error == .short { break }
                throw error
            }
        }
        return r
    }

    /// Reads a possibly compressed name (RFC 1035 §4.1.4) starting at `start`; returns it
    /// (lowercased, dot-joined) and the offset just past it in the message. Each pointer must
    /// point before the previous jump target (targets strictly decrease), so loops are impossible.
    public static func readName(_ m: [UInt8], at start: Int) throws(ParseError) -> (String, Int) {
        var labels: [String] = []
        var i = start
        var end: Int? = nil  // where the name ends at its original position (after the first pointer)
        var total = 1
        var limit = start  // every pointer target must lie below this
        while true {
            guard i < m.count else { throw .short }
            let len = m[i]
            switch len & 0xc0 {
            case 0x00:
                if len == 0 {
                    return (labels.joined(separator: "."), end ?? i + 1)
                }
                let l = Int(len)
                guard i + 1 + l <= m.count else { throw .short }
                total += l + 1
                guard total <= 255 else { throw .badName }
                labels.append(String(decoding: m[(i + 1)...(i + l)].map { $0 >= 0x41 && $0 <= 0x5a ? $0 | 0x20 : $0 },
                                     as: UTF8.self))
                i += 1 + l
            case 0xc0:
                guard i + 1 < m.count else { throw .short }
                let target = Int(len & 0x3f) << 8 | Int(m[i + 1])
                guard target < limit else { throw .badName }
                if end == nil { end = i + 2 }
                limit = target
                i = target
            default:
                throw .badName  // 0x40 / 0x80: extended label types (RFC 6891 §5) are not used here
            }
        }
    }
}
