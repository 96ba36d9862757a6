import RelayTransport
import FuzzSupport

// libFuzzer target for the DNS message code (RFC 1035 §4.1) behind the Fly single-instance
// check: a response comes from the network, so every byte of it is hostile input.
// Built by scripts/fuzz.sh with `-sanitize=fuzzer,address -parse-as-library -DFUZZING`;
// a plain build gets the stub at the bottom.
#if FUZZING

/// Input: a whole response message (as one UDP datagram delivers it).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDNSTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let m = size > 0 ? Array(UnsafeBufferPointer(start: data, count: size)) : []

    // 1. A response parses or is refused; what it yields lies within the message.
    do throws(DNSMessage.ParseError) {
        let r = try DNSMessage.parseAAAAResponse(m)
        precondition(m.count >= 12 && m[2] & 0x80 != 0, "parsed a non-response")
        precondition(r.id == UInt16(m[0]) << 8 | UInt16(m[1]) && r.rcode == m[3] & 0x0f, "header fields")
        precondition(r.addresses.allSatisfy { $0.count == 16 }, "an address is not 16 octets")
        // Every AAAA record takes at least 1 (root name) + 10 (fixed fields) + 16 octets.
        precondition(r.addresses.count * 27 <= m.count - 12, "more addresses than the message holds")
        // Octets that are not UTF-8 read as U+FFFD (3 bytes in UTF-8): count scalars, not bytes.
        if let q = r.questionName { precondition(q.unicodeScalars.count <= 255, "question name > 255 octets") }
    } catch {
        sink(error)
    }

    // 2. A name read from any offset ends inside the message and stays within RFC 1035's bound.
    for start in stride(from: 0, to: min(m.count, 64), by: 1) {
        do throws(DNSMessage.ParseError) {
            let (name, next) = try DNSMessage.readName(m, at: start)
            precondition(next > start && next <= m.count, "name at \(start) ends at \(next) of \(m.count)")
            precondition(name.unicodeScalars.count <= 255, "name > 255 octets")
        } catch {
            sink(error)
        }
    }

    // 3. A name the encoder accepts round-trips through a query echoed back as a response.
    let text = String(decoding: m, as: UTF8.self)
    if let query = try? DNSMessage.aaaaQuery(id: 0x5eed, name: text) {
        var response = query
        response[2] |= 0x80  // QR = 1: the query echoed back with no answers
        guard let r = try? DNSMessage.parseAAAAResponse(response) else {
            preconditionFailure("an encoded query does not parse back")
        }
        let expected = (text.hasSuffix(".") ? String(text.dropLast()) : text).lowercased()
        precondition(r.id == 0x5eed && r.questionName == expected && r.addresses.isEmpty, "round trip")
    }
    return 0
}

// SwiftPM links this executable with `--defsym main=fuzz_dns_main` (FuzzSupport.runLibFuzzer).
@_cdecl("fuzz_dns_main")
public func fuzzDNSMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzDNSTestOneInput)
}
#else
// A declaration, not a statement: -parse-as-library rejects top-level expressions even in an
// inactive #if branch. As top-level code of main.swift this runs when the stub starts.
let stub: Void = fuzzStubNotice("fuzz-dns")
#endif
