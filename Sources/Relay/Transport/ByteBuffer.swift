/// A growable byte buffer with read and write indices over one malloc'd block.
/// Owned by exactly one connection, which calls `release()` when done (no ARC per byte).
/// Empty buffers hold no memory: idle connections cost nothing here.
public struct ByteBuffer {
    public private(set) var base: UnsafeMutableRawPointer?
    public private(set) var capacity = 0
    public private(set) var readIndex = 0
    public private(set) var writeIndex = 0

    public init() {}

    public var count: Int { writeIndex - readIndex }
    public var isEmpty: Bool { writeIndex == readIndex }
    public var writableCount: Int { capacity - writeIndex }

    /// The unread bytes, mutable (frames are unmasked in place).
    public var readable: UnsafeMutableRawBufferPointer {
        guard let b = base else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        return UnsafeMutableRawBufferPointer(start: b + readIndex, count: count)
    }

    public var writePointer: UnsafeMutableRawPointer { base! + writeIndex }

    /// Makes room for `n` more bytes at the write end: compacts first, grows (doubling) if needed.
    public mutating func reserve(_ n: Int) {
        if writableCount >= n { return }
        if readIndex > 0 {
            if let b = base, count > 0 { (b).copyMemory(from: b + readIndex, byteCount: count) }
            writeIndex -= readIndex
            readIndex = 0
            if writableCount >= n { return }
        }
        var newCap = max(capacity * 2, 1024)
        while newCap - writeIndex < n { newCap *= 2 }
        let nb = UnsafeMutableRawPointer.allocate(byteCount: newCap, alignment: 16)
        if let b = base {
            nb.copyMemory(from: b, byteCount: writeIndex)
            b.deallocate()
        }
        base = nb
        capacity = newCap
    }

    public mutating func append(_ src: UnsafeRawPointer, _ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base! + writeIndex).copyMemory(from: src, byteCount: n)
        writeIndex += n
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0.baseAddress!, $0.count) }
    }

    /// Marks `n` bytes written directly at `writePointer`.
    public mutating func didWrite(_ n: Int) { writeIndex += n }

    /// Drops `n` bytes from the front; frees the block once empty if it grew large, so a burst does not pin memory.
    public mutating func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
    }

    /// Frees the storage when nothing is buffered.
    public mutating func releaseIfEmpty() {
        if isEmpty { release() }
    }

    public mutating func release() {
        base?.deallocate()
        base = nil
        capacity = 0
        readIndex = 0
        writeIndex = 0
    }
}
