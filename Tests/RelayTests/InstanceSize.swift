/// The bytes an instance of `type` asks malloc for, from its class metadata: on a platform
/// without Objective-C interop the metadata is the isa-like kind word, the superclass, 32-bit
/// flags and instance address point, then the 32-bit instance size (the Swift ABI's
/// `TargetClassMetadata`). What footprint tests assert; `malloc_usable_size` of one object can
/// be larger when malloc hands out a bigger free chunk whole.
func instanceSize(of type: AnyClass) -> Int {
    let metadata = unsafeBitCast(type, to: UnsafeRawPointer.self)
    return Int(metadata.load(fromByteOffset: 24, as: UInt32.self))
}

/// Classes of known sizes, to check `instanceSize` reads what it says it reads.
final class OneWordObject { var word = 0 }
final class ThreeWordObject { var a = 0, b = 0, c = 0 }
