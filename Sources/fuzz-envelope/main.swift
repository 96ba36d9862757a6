import RelayCodecs
import RelayCore
import FuzzSupport

// libFuzzer target for the JSON validator and the envelope code (docs/protocol.md §7): what phones and
// binaries send is hostile input. Built by scripts/fuzz.sh with `-sanitize=fuzzer,address
// -parse-as-library -DFUZZING`; a plain build gets the stub at the bottom.
#if FUZZING

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvelopeTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    // The vector kernels under the JSON scan and UTF-8 check agree with the Swift reference.
    SIMDDifferential.check(bytes)
    let valid = JSON.isValid(bytes)

    // The text-frame shortcut (UTF-8 already checked) must never change a verdict.
    var utf8 = UTF8Validator()
    if utf8.feed(bytes) && utf8.isComplete {
        precondition(JSON.isValid(bytes, utf8Validated: true) == valid, "utf8Validated changed the verdict")
    }

    // Phone → binary: a valid message wraps into a valid envelope that parses back to it.
    if valid {
        let connID = Array("client-fuzz-0123abcd".utf8)
        let wrapped = Envelope.wrap(connID: "client-fuzz-0123abcd", frame: Array(bytes))
        precondition(wrapped.count == Envelope.wrappedLength(connIDLength: connID.count, frameLength: size))
        precondition(JSON.isValid(wrapped), "wrapped envelope is not JSON")
        let value = Array(bytes).trimmingJSONWhitespace()
        // `"frame":null` reads as "no frame" in the binary's direction (docs/protocol.md §7.2), by design.
        if value != Array("null".utf8) {
            guard let env = Envelope.parseBinaryEnvelope(wrapped), let frame = env.frame else {
                preconditionFailure("wrapped envelope does not parse")
            }
            precondition(Array(wrapped[frame]) == value, "frame bytes differ")
        }
    }

    // Binary → phone: any input parses or is refused, with ranges inside the input.
    if let env = Envelope.parseBinaryEnvelope(bytes) {
        precondition(valid, "parsed an envelope that is not JSON")
        if let f = env.frame {
            precondition(f.lowerBound >= 0 && f.upperBound <= size, "frame out of bounds")
            precondition(JSON.isValid(UnsafeRawBufferPointer(rebasing: bytes[f])), "frame is not one JSON value")
        }
        if let p = env.pushWake { precondition(p.upperBound <= size) }
        sink(env.withConnIDBytes(in: bytes) { Array($0) })
    }
    return 0
}

extension Array where Element == UInt8 {
    /// The value without surrounding JSON whitespace (RFC 8259 §2), as it sits inside the envelope.
    func trimmingJSONWhitespace() -> [UInt8] {
        let ws: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0D]
        var a = self[...]
        while let f = a.first, ws.contains(f) { a = a.dropFirst() }
        while let l = a.last, ws.contains(l) { a = a.dropLast() }
        return Array(a)
    }
}

// SwiftPM links this executable with `--defsym main=fuzz_envelope_main` (FuzzSupport.runLibFuzzer).
@_cdecl("fuzz_envelope_main")
public func fuzzEnvelopeMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzEnvelopeTestOneInput)
}
#else
// A declaration, not a statement: -parse-as-library rejects top-level expressions even in an
// inactive #if branch. As top-level code of main.swift this runs when the stub starts.
let stub: Void = fuzzStubNotice("fuzz-envelope")
#endif
