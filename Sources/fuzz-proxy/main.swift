import FuzzSupport

// libFuzzer target for the PROXY protocol v2 header parser (docs/protocol.md §3.3): with
// `--https-proxy-protocol` its input is the first bytes of every TLS-listener connection.
// Built by scripts/fuzz.sh with `-sanitize=fuzzer,address -parse-as-library -DFUZZING`;
// a plain build gets the stub at the bottom.
#if FUZZING
import CEpoll
import RelayCodecs
import RelayTransport

/// Input layout: byte 0 chooses the caller's bound (0 = the default `Limits.maxProxyHeaderBytes`,
/// else 16 + 4·byte); bytes 1… are what arrived on the connection.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProxyTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let maxLength = data[0] == 0 ? Limits.maxProxyHeaderBytes : ProxyProtocolV2.fixedLength + 4 * Int(data[0])
    let full = ProxyProtocolV2.parse(bytes, maxLength: maxLength)

    switch full {
    case .needMore(let total):
        // The caller reads exactly `total` bytes: more than it has, never past the bound.
        precondition(total > bytes.count && total >= ProxyProtocolV2.fixedLength && total <= maxLength,
                     "needMore(\(total)) with \(bytes.count) buffered, bound \(maxLength)")
    case .proxied(let source, let length):
        precondition(length >= ProxyProtocolV2.fixedLength && length <= bytes.count && length <= maxLength, "length")
        let fam = bytes[13]
        precondition(fam == 0x11 || fam == 0x21, "proxied from family \(fam)")
        // The source port is the first port field, already in network order on the wire.
        let portAt = ProxyProtocolV2.fixedLength + (fam == 0x11 ? 8 : 32)
        precondition(source.port == UInt16(bytes[portAt]) << 8 | UInt16(bytes[portAt + 1]), "source port")
        if fam == 0x11 { precondition(source.family == AF_INET, "TCP4 source is not AF_INET") }
        sink(source.description)
    case .refused:
        break
    }

    // Arrival in pieces: every prefix must be "need more" (never past what the whole needs) or the
    // same verdict as the whole — a header is never refused on bytes it has not seen yet.
    for k in 0..<bytes.count {
        let part = ProxyProtocolV2.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<k]), maxLength: maxLength)
        switch (part, full) {
        case (.needMore(let t), .needMore(let total)):
            precondition(t <= total, "prefix \(k) needs \(t) > \(total)")
        case (.needMore(let t), .proxied(_, let length)):
            precondition(k < length && t <= length, "prefix \(k) needs \(t), header is \(length)")
        case (.needMore, .refused):
            break
        case (.refused(let a), .refused(let b)):
            precondition(a == b, "prefix \(k) refused \(a), whole \(b)")
        case (.proxied(let s, let l), .proxied(let fs, let fl)):
            precondition(s == fs && l == fl, "prefix \(k) parsed differently")
        default:
            preconditionFailure("prefix \(k): \(part) vs whole \(full)")
        }
    }
    return 0
}

// SwiftPM links this executable with `--defsym main=fuzz_proxy_main` (FuzzSupport.runLibFuzzer).
@_cdecl("fuzz_proxy_main")
public func fuzzProxyMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzProxyTestOneInput)
}
#else
// A declaration, not a statement: -parse-as-library rejects top-level expressions even in an
// inactive #if branch. As top-level code of main.swift this runs when the stub starts.
let stub: Void = fuzzStubNotice("fuzz-proxy")
#endif
