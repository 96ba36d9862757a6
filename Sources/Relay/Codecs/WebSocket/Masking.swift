import CRelaySIMD

/// Client-to-server masking (RFC 6455 §5.3): payload byte `i` is XORed with mask key byte `i mod 4`.
public enum Masking {
    /// XORs `p` in place with `key`.
    ///
    /// - Parameters:
    ///   - key: the 4 mask-key bytes as they appear on the wire, loaded little-endian
    ///     (wire byte 0 is bits 0–7).
    ///   - offset: the position of `p[0]` within the frame's payload, so a payload can be unmasked
    ///     in pieces as it arrives (only `offset mod 4` matters).
    ///
    /// XOR is its own inverse, so this both masks and unmasks. 16 or 32 bytes per step in the
    /// CRelaySIMD kernel of the CPU's level.
    ///
    /// - Returns: whether every byte of `p` is ASCII (< 0x80) once unmasked, found in the same
    ///   pass: such a text payload is valid UTF-8 without a second pass (RFC 3629 §4).
    @inline(__always) @discardableResult
    public static func unmask(_ p: UnsafeMutableRawBufferPointer, key: UInt32, offset: Int = 0) -> Bool {
        guard let base = p.baseAddress else { return true }
        return pyry_unmask(base.assumingMemoryBound(to: UInt8.self), p.count, rotated(key, offset: offset))
    }

    /// `key` rotated so that its low byte (little-endian) is the key byte for payload byte `offset`.
    @inline(__always)
    package static func rotated(_ key: UInt32, offset: Int) -> UInt32 {
        let shift = UInt32(truncatingIfNeeded: (offset & 3) &* 8)
        return shift == 0 ? key : (key >> shift) | (key << (32 &- shift))
    }

    /// The reference `unmask` the fuzzers and tests check the kernels against: 8-byte words,
    /// then the tail byte by byte.
    public static func unmaskReference(_ p: UnsafeMutableRawBufferPointer, key: UInt32, offset: Int = 0) {
        guard let base = p.baseAddress else { return }
        let n = p.count
        let k32 = rotated(key, offset: offset)
        let k64 = UInt64(k32) | (UInt64(k32) << 32)
        var i = 0
        // Unaligned 8-byte loads/stores are fine on x86-64 and arm64 (SE-0349 storeBytes).
        while i &+ 32 <= n {
            let w0 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            let w1 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self))
            let w2 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self))
            let w3 = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self))
            base.storeBytes(of: (w0 ^ k64).littleEndian, toByteOffset: i, as: UInt64.self)
            base.storeBytes(of: (w1 ^ k64).littleEndian, toByteOffset: i &+ 8, as: UInt64.self)
            base.storeBytes(of: (w2 ^ k64).littleEndian, toByteOffset: i &+ 16, as: UInt64.self)
            base.storeBytes(of: (w3 ^ k64).littleEndian, toByteOffset: i &+ 24, as: UInt64.self)
            i &+= 32
        }
        while i &+ 8 <= n {
            let w = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt64.self))
            base.storeBytes(of: (w ^ k64).littleEndian, toByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        // `i` is a multiple of 8, so the key phase is back at byte 0 of `k32`.
        var k = k32
        while i < n {
            let b = base.load(fromByteOffset: i, as: UInt8.self)
            base.storeBytes(of: b ^ UInt8(truncatingIfNeeded: k), toByteOffset: i, as: UInt8.self)
            k = (k >> 8) | (k << 24)
            i &+= 1
        }
    }
}
