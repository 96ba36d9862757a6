// libFuzzer entry points (scripts/fuzz.sh). Build with:
//   swift build -c release --product fuzz-frame --scratch-path .build-fuzz \
//     -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -DFUZZING
// Run: .build-fuzz/release/fuzz-frame fuzz/corpus/fuzz-frame -max_total_time=60
#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzFrame(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links executables with `--defsym main=fuzz_frame_main`; this is that symbol.
@_cdecl("fuzz_frame_main")
public func fuzzFrameMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzFrameTestOneInput(data, size) }
}
#else
// Normal builds compile main.swift in script mode, where this global initializer runs as
// top-level code; a bare statement would not parse under -parse-as-library even in an
// inactive branch, and @main is refused in a file named main.swift.
let fuzzFrameHint: Void = print(
    "fuzz-frame: a libFuzzer target; build it with -Xswiftc -sanitize=fuzzer,address "
        + "-Xswiftc -parse-as-library -Xswiftc -DFUZZING (see Sources/fuzz-frame/main.swift)")
#endif
