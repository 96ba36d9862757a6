// libFuzzer entry points (scripts/fuzz.sh). Build with:
//   swift build -c release --product fuzz-frame --scratch-path .build-fuzz \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
// Run: .build-fuzz/release/fuzz-frame fuzz/corpus/fuzz-frame -max_total_time=60
import FuzzSupport

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzFrame(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links this executable with `--defsym main=fuzz_frame_main` (FuzzSupport.runLibFuzzer).
@_cdecl("fuzz_frame_main")
public func fuzzFrameMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    runLibFuzzer(argc, argv, fuzzFrameTestOneInput)
}
#else
// A declaration, not a statement: -parse-as-library rejects top-level expressions even in an
// inactive #if branch. As top-level code of main.swift this runs when the stub starts.
let stub: Void = fuzzStubNotice("fuzz-frame")
#endif
