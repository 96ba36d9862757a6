internal import CTLS

/// The loop's one deflate and one inflate stream (zlib, raw deflate) for permessage-deflate
/// (RFC 7692 §7.2). Both are reset before every message: the negotiation (`PerMessageDeflate`)
/// forbids context takeover in both directions, so no connection owns compression state and
/// messages of different connections may use the streams one after the other. Single-threaded:
/// it belongs to one `IOContext`, created on the first compressed message.
public final class DeflateCodec {
    /// zlib's fastest level: relay payloads are mostly base64 ciphertext, where any level only
    /// saves what Huffman coding of the base64 alphabet saves (about a quarter); on plain JSON
    /// text it keeps most of level 6's gain (2,080 → 709 B vs 661 B for 2 KiB of log lines) at a
    /// fraction of the CPU (docs/benchmarks.md, "permessage-deflate").
    package static let compressionLevel: Int32 = 1
    /// A 2^13-entry hash table: `deflateReset` clears it for every message, so zlib's default
    /// (memLevel 8, 64 KiB cleared) would cost more than compressing a small message; 6 gives
    /// the same ratio on relay-sized messages (up to 256 KiB) with a quarter of the clearing.
    package static let memoryLevel: Int32 = 6
    /// §7.2.1/§7.2.2: a sender strips this empty stored block (the tail of a sync flush); the
    /// receiver appends it before inflating.
    package static let tail: [UInt8] = [0x00, 0x00, 0xFF, 0xFF]

    private let deflater: UnsafeMutablePointer<z_stream>
    private let inflater: UnsafeMutablePointer<z_stream>
    private var deflaterWindowBits: Int32 = 0  // 0: not initialized
    /// Where the one byte past the limit goes when probing a full buffer for more output.
    private let probe = UnsafeMutablePointer<Bytef>.allocate(capacity: 1)

    public init() {
        deflater = .allocate(capacity: 1)
        deflater.initialize(to: z_stream())
        inflater = .allocate(capacity: 1)
        inflater.initialize(to: z_stream())
        // Window 15 inflates any window the client chose (§7.1.2.2: client_max_window_bits limits
        // the client only). Fails only when malloc does: nothing can be served then.
        let r = pyry_inflate_init2(inflater, -15)
        precondition(r == Z_OK, "inflateInit2 failed: \(r)")
    }

    deinit {
        if deflaterWindowBits != 0 { deflateEnd(deflater) }
        inflateEnd(inflater)
        deflater.deallocate()
        inflater.deallocate()
        probe.deallocate()
    }

    // MARK: inflate

    public enum InflateResult {
        /// The whole message, in a buffer of `capacity` bytes the caller must deallocate.
        case message(UnsafeMutableRawPointer?, count: Int, capacity: Int)
        /// It inflates to more than the limit (closed 1009); at most `limit` + 1 bytes were produced.
        case tooBig
        /// Not a valid deflate stream (closed 1007).
        case corrupt
        /// `grow` refused more memory (the buffer budget shed the connection).
        case refused
    }

    /// Inflates one message (RFC 7692 §7.2.2: payload + 00 00 FF FF) into a buffer that grows in
    /// steps, each asked of `grow(extra)` first, never past `limit`. A decompression bomb stops at
    /// the limit: once the buffer is full, one more byte of output is tried in a 1-byte scratch.
    public func inflate(_ payload: UnsafeRawBufferPointer, limit: Int, grow: (Int) -> Bool) -> InflateResult {
        let s = inflater
        inflateReset(s)
        var buffer: UnsafeMutableRawPointer? = nil
        var capacity = 0
        var count = 0
        func fail(_ r: InflateResult) -> InflateResult {
            buffer?.deallocate()
            return r
        }
        return DeflateCodec.tail.withUnsafeBytes { tail in
            for segment in [payload, tail] {
                s.pointee.next_in = UnsafeMutablePointer(mutating: segment.baseAddress?.assumingMemoryBound(to: Bytef.self))
                s.pointee.avail_in = uInt(segment.count)
                while true {
                    let r: Int32
                    let roomLeft: Bool
                    if count == capacity && capacity == limit {
                        // Full at the limit: is there more output? One byte answers it.
                        s.pointee.next_out = probe
                        s.pointee.avail_out = 1
                        r = CTLS.inflate(s, Z_SYNC_FLUSH)
                        if s.pointee.avail_out == 0 { return fail(.tooBig) }
                        roomLeft = true
                    } else {
                        if count == capacity {
                            let next = min(limit, max(4096, capacity * 2, segment.count * 4))
                            guard grow(next - capacity) else { return fail(.refused) }
                            let fresh = UnsafeMutableRawPointer.allocate(byteCount: next, alignment: 16)
                            if let old = buffer {
                                fresh.copyMemory(from: old, byteCount: count)
                                old.deallocate()
                            }
                            buffer = fresh
                            capacity = next
                        }
                        s.pointee.next_out = (buffer! + count).assumingMemoryBound(to: Bytef.self)
                        s.pointee.avail_out = uInt(capacity - count)
                        r = CTLS.inflate(s, Z_SYNC_FLUSH)
                        count = capacity - Int(s.pointee.avail_out)
                        roomLeft = count < capacity
                    }
                    // A final block (BFINAL) ends the message; the appended tail is then not needed.
                    if r == Z_STREAM_END { return .message(buffer, count: count, capacity: capacity) }
                    guard r == Z_OK || r == Z_BUF_ERROR else { return fail(.corrupt) }
                    // All input taken and room left over: inflate has written all it can.
                    if s.pointee.avail_in == 0 && roomLeft { break }
                }
            }
            return .message(buffer, count: count, capacity: capacity)
        }
    }

    // MARK: deflate

    /// Compresses one message (§7.2.1) with the window `windowBits` into a new buffer the caller
    /// deallocates. Returns nil when the result would not be smaller than the input, so the
    /// message goes out uncompressed (RSV1 clear).
    public func deflate(_ payload: UnsafeRawBufferPointer, windowBits: Int32) -> (UnsafeMutableRawPointer, count: Int)? {
        let s = deflater
        if deflaterWindowBits != windowBits {
            if deflaterWindowBits != 0 { deflateEnd(s) }
            s.initialize(to: z_stream())
            let r = pyry_deflate_init2(s, DeflateCodec.compressionLevel, -windowBits, DeflateCodec.memoryLevel)
            precondition(r == Z_OK, "deflateInit2 failed: \(r)")
            deflaterWindowBits = windowBits
        } else {
            deflateReset(s)
        }
        // A sync flush of n bytes fits in deflateBound(n) + its 5-byte empty block; one byte
        // more tells "did not fit" apart from "exactly fits".
        let capacity = Int(deflateBound(s, uLong(payload.count))) + 6
        let out = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
        s.pointee.next_in = UnsafeMutablePointer(mutating: payload.baseAddress?.assumingMemoryBound(to: Bytef.self))
        s.pointee.avail_in = uInt(payload.count)
        s.pointee.next_out = out.assumingMemoryBound(to: Bytef.self)
        s.pointee.avail_out = uInt(capacity)
        let r = CTLS.deflate(s, Z_SYNC_FLUSH)
        let produced = capacity - Int(s.pointee.avail_out)
        // §7.2.1: drop the 00 00 FF FF that ends the sync flush.
        guard r == Z_OK, s.pointee.avail_in == 0, s.pointee.avail_out > 0, produced >= 4,
              produced - 4 < payload.count else {
            out.deallocate()
            return nil
        }
        return (out, produced - 4)
    }
}
