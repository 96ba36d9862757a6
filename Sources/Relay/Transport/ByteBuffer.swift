/// A growable byte buffer with read and write indices over one malloc'd block.
/// Owned by exactly one connection, which calls `release()` when done (no ARC per byte).
/// A new or released buffer holds no memory; an emptied one keeps its block (`consume`), so
/// the owner gives it back (`release(to:)`) when it drains and idle connections cost nothing here.
public struct ByteBuffer {
    public private(set) var base: UnsafeMutableRawPointer?
    // The capacity and indices are stored in 32 bits: every connection holds two buffers for
    // its lifetime, and they make each 20 bytes instead of 32 (docs/benchmarks.md, M1).
    private var capacity32: UInt32 = 0
    private var read32: UInt32 = 0
    private var write32: UInt32 = 0
    /// Bytes of the block; setting more than `maxCapacity` traps.
    public private(set) var capacity: Int {
        @inline(__always) get { Int(capacity32) }
        @inline(__always) set { capacity32 = UInt32(newValue) }
    }
    public private(set) var readIndex: Int {
        @inline(__always) get { Int(read32) }
        @inline(__always) set { read32 = UInt32(truncatingIfNeeded: newValue) }
    }
    public private(set) var writeIndex: Int {
        @inline(__always) get { Int(write32) }
        @inline(__always) set { write32 = UInt32(truncatingIfNeeded: newValue) }
    }
    /// What 32-bit indices can address; far above any buffer the limits allow
    /// (`Limits.maxMessageBytes`, the output budgets).
    public static let maxCapacity = Int(UInt32.max)

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
            compact()
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

    /// Moves the unread bytes to the start of the block.
    public mutating func compact() {
        guard readIndex > 0 else { return }
        if let b = base, count > 0 { b.copyMemory(from: b + readIndex, byteCount: count) }
        writeIndex -= readIndex
        readIndex = 0
    }

    /// Drops `n` bytes from the front (the indices rewind once it is empty; the block stays).
    public mutating func consume(_ n: Int) {
        readIndex += n
        if readIndex == writeIndex {
            readIndex = 0
            writeIndex = 0
        }
    }

    /// Keeps the first `n` unread bytes and forgets the rest.
    public mutating func truncate(keeping n: Int) {
        precondition(n >= 0 && n <= count)
        writeIndex = readIndex + n
    }

    /// Takes `block` (of `capacity` bytes, holding `count` bytes at its start) as storage.
    package mutating func adopt(_ block: UnsafeMutableRawPointer, capacity: Int, count: Int = 0) {
        precondition(base == nil || count > 0)
        base = block
        self.capacity = capacity
        readIndex = 0
        writeIndex = count
    }

    /// Drops the storage without freeing it (it went back to a pool).
    package mutating func forget() {
        base = nil
        capacity = 0
        readIndex = 0
        writeIndex = 0
    }

    public mutating func release() {
        base?.deallocate()
        base = nil
        capacity = 0
        readIndex = 0
        writeIndex = 0
    }
}

/// A small free list of equal-sized blocks shared by the loop's connections, so a connection
/// can give its buffer back the moment it drains (idle connections hold nothing) without a
/// malloc/free pair per message: in steady state every buffer comes from here.
public final class BufferPool {
    public let blockSize: Int
    public let maxBlocks: Int
    // A fixed stack of raw pointers: no Array uniqueness checks or ARC on the per-message path.
    private let stack: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var depth = 0

    public init(blockSize: Int = 4096, maxBlocks: Int = 64) {
        self.blockSize = blockSize
        self.maxBlocks = maxBlocks
        stack = .allocate(capacity: maxBlocks)
    }

    public var cachedBlocks: Int { depth }

    @inline(__always)
    package func take() -> UnsafeMutableRawPointer {
        if depth > 0 {
            depth -= 1
            return stack[depth]
        }
        return UnsafeMutableRawPointer.allocate(byteCount: blockSize, alignment: 16)
    }

    @inline(__always)
    package func give(_ block: UnsafeMutableRawPointer) {
        if depth < maxBlocks {
            stack[depth] = block
            depth += 1
        } else {
            block.deallocate()
        }
    }

    /// Returns every cached block to malloc (housekeeping, so a past burst does not pin memory).
    public func trim() {
        while depth > 0 {
            depth -= 1
            stack[depth].deallocate()
        }
    }

    deinit {
        trim()
        stack.deallocate()
    }
}

extension ByteBuffer {
    /// `reserve`, taking a pool block when the buffer is empty and `n` fits in one.
    /// The common cases (room left, or an empty buffer taking a block) are inlined: the pool is
    /// only read, never passed, so the per-message path retains nothing.
    @inline(__always)
    public mutating func reserve(_ n: Int, pool: BufferPool) {
        if writableCount >= n { return }
        if base == nil && n <= pool.blockSize {
            adopt(pool.take(), capacity: pool.blockSize)
            return
        }
        grow(n, pool: pool)
    }

    @inline(never)
    package mutating func grow(_ n: Int, pool: BufferPool) {
        if capacity == pool.blockSize && writableCount < n && (count + n > capacity) {
            // Outgrowing a pool block: move to a malloc'd block and give the pool block back.
            let old = base!
            let oldCount = count
            var newCap = capacity * 2
            while newCap < oldCount + n { newCap *= 2 }
            let nb = UnsafeMutableRawPointer.allocate(byteCount: newCap, alignment: 16)
            nb.copyMemory(from: old + readIndex, byteCount: oldCount)
            pool.give(old)
            adopt(nb, capacity: newCap, count: oldCount)
            return
        }
        reserve(n)
    }

    /// Moves the unread bytes to the start of a block of exactly `newCapacity` bytes (a pool
    /// block when that is enough) and gives the old block back: to grow by what is needed rather
    /// than by doubling, or to shrink a block that outgrew what it holds. Returns the bytes
    /// handed back to malloc (0 when the old block went to the pool or there was none).
    @discardableResult
    public mutating func resize(to newCapacity: Int, pool: BufferPool) -> Int {
        precondition(newCapacity >= count)
        let fitsPool = newCapacity <= pool.blockSize
        if base != nil && capacity == (fitsPool ? pool.blockSize : newCapacity) {
            compact()
            return 0
        }
        if newCapacity == 0 {
            let freed = capacity == pool.blockSize ? 0 : capacity
            release(to: pool)
            return freed
        }
        let n = count
        let fresh = fitsPool ? pool.take() : UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
        var freed = 0
        if let old = base {
            if n > 0 { fresh.copyMemory(from: old + readIndex, byteCount: n) }
            if capacity == pool.blockSize {
                pool.give(old)
            } else {
                old.deallocate()
                freed = capacity
            }
        }
        base = fresh
        capacity = fitsPool ? pool.blockSize : newCapacity
        readIndex = 0
        writeIndex = n
        return freed
    }

    /// `release`, giving a pool-sized block back to the pool.
    @inline(__always)
    public mutating func release(to pool: BufferPool) {
        if let b = base, capacity == pool.blockSize {
            pool.give(b)
            forget()
        } else {
            release()
        }
    }
}

extension ByteBuffer {
    public mutating func append(pool: BufferPool, _ src: UnsafeRawPointer, _ n: Int) {
        guard n > 0 else { return }
        reserve(n, pool: pool)
        append(src, n)
    }

    public mutating func append(pool: BufferPool, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append(pool: pool, $0.baseAddress!, $0.count) }
    }
}
