// What every libFuzzer target (Sources/fuzz-*) shares: the driver call that replaces `main`, and
// a sink that keeps results observable. scripts/fuzz.sh builds the targets with
// `-sanitize=fuzzer,address -parse-as-library -DFUZZING`; a plain build gets stubs.

/// The signature libFuzzer calls for each input (compiler-rt FuzzerInterface.h).
public typealias FuzzTestOneInput = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

#if FUZZING
/// libFuzzer's entry point for a custom main (compiler-rt FuzzerInterface.h).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: FuzzTestOneInput
) -> Int32

/// Hands the process to libFuzzer. SwiftPM links an executable with `--defsym main=<target>_main`
/// and -parse-as-library leaves no top-level code to provide that symbol, so each target
/// exports it (`@_cdecl("fuzz_<name>_main")`) and calls this.
public func runLibFuzzer(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                         _ testOneInput: FuzzTestOneInput) -> Int32 {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, testOneInput)
}
#endif

/// Keeps `value` observable so the optimizer cannot drop the work that produced it.
@inline(never) @_optimize(none)
public func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

/// What a target built without libFuzzer prints when started.
public func fuzzStubNotice(_ target: String) {
    print("\(target): a libFuzzer target; build and run it with scripts/fuzz.sh (-DFUZZING)")
}
