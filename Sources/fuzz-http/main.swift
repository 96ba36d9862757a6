import RelayCodecs
import FuzzSupport

// libFuzzer target for the HTTP request parser and the WebSocket handshake checks.
// Built by scripts/fuzz.sh with `-sanitize=fuzzer,address -parse-as-library -DFUZZING`
// (scripts/fuzz.sh); a plain build gets the stub at the bottom.
#if FUZZING

/// Input layout: byte 0 chooses how the rest is split into arrivals (0 = all at once, else chunks
/// of pseudo-random sizes 1…64 seeded by it); bytes 1… are what a client sent.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data, size > 0 else { return 0 }
    let all = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    var seed = UInt32(data[0]) | 0x100

    // Reference: everything in one call.
    var whole = HTTPRequestParser()
    let reference = whole.parse(all)

    // The caller's pattern: accumulate, call again with everything received so far.
    var parser = HTTPRequestParser()
    var received = 0
    var chunked = HTTPParseResult.needMore
    repeat {
        var step = all.count
        if data[0] != 0 {
            seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5
            step = Int(seed % 64) + 1
        }
        received = min(received + step, all.count)
        chunked = parser.parse(UnsafeRawBufferPointer(rebasing: all[0..<received]))
        sink(chunked)
        if case .needMore = chunked { continue }
        break
    } while received < all.count

    // Invariant: how the bytes arrive never changes the outcome.
    switch (reference, chunked) {
    case (.needMore, .needMore):
        precondition(all.count <= Limits.maxHeaderBytes, "needMore past the header limit")
    case (.failure(let a), .failure(let b)):
        precondition(a == b, "status differs: \(a) vs \(b)")
        sink(HTTPResponse.error(a, close: true))
    case (.complete(let a, let la), .complete(let b, let lb)):
        precondition(la == lb && la <= all.count && la <= Limits.maxHeaderBytes, "head length")
        precondition(a.method == b.method && a.target == b.target && a.path == b.path, "request line")
        precondition(a.versionMinor == b.versionMinor && a.keepAlive == b.keepAlive, "version")
        precondition(a.headers.map(\.name) == b.headers.map(\.name), "header names")
        precondition(a.headers.map(\.value) == b.headers.map(\.value), "header values")
        precondition(a.contentLength == b.contentLength && a.hasTransferEncoding == b.hasTransferEncoding)
        switch WebSocketHandshake.validate(a) {
        case .accept(let key):
            precondition(key.utf8.count == 28, "accept key length")
            sink(HTTPResponse.switchingProtocols(accept: key))
        case .reject(let status, let headers):
            sink(HTTPResponse.error(status, close: true, extraHeaders: headers))
        }
    default:
        preconditionFailure("one-shot \(reference) vs chunked \(chunked)")
    }
    return 0
}

// SwiftPM links this executable with `--defsym main=fuzz_http_main` (FuzzSupport.runLibFuzzer).
@_cdecl("fuzz_http_main")
public func fuzzHTTPMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzHTTPTestOneInput)
}
#else
// A declaration, not a statement: -parse-as-library rejects top-level expressions even in an
// inactive #if branch. As top-level code of main.swift this runs when the stub starts.
let stub: Void = fuzzStubNotice("fuzz-http")
#endif
