import Testing
@testable import RelayTransport

@Suite struct ByteBufferPoolTests {
    @Test func drainedBuffersGoBackToThePoolAndAreReused() {
        let pool = BufferPool(blockSize: 64, maxBlocks: 2)
        var a = ByteBuffer()
        a.append(pool: pool, Array(repeating: 1, count: 10))
        let first = a.base
        a.consume(10)
        a.release(to: pool)
        #expect(a.base == nil && pool.cachedBlocks == 1)
        var b = ByteBuffer()
        b.append(pool: pool, [2, 3])
        #expect(b.base == first && pool.cachedBlocks == 0)
        b.release(to: pool)
    }

    @Test func outgrowingAPoolBlockKeepsTheBytesAndReturnsTheBlock() {
        let pool = BufferPool(blockSize: 16, maxBlocks: 4)
        var a = ByteBuffer()
        a.append(pool: pool, Array(0..<10))
        a.consume(3)
        a.append(pool: pool, Array(10..<30))
        #expect(Array(a.readable) == Array(3..<30).map { UInt8($0) })
        #expect(pool.cachedBlocks == 1)
        #expect(a.capacity > 16)
        a.release(to: pool)
        #expect(pool.cachedBlocks == 1)  // a malloc'd block is freed, not pooled
    }

    @Test func resizeMovesTheUnreadBytesIntoAnExactBlockOrAPoolBlock() {
        let pool = BufferPool(blockSize: 16, maxBlocks: 4)
        var a = ByteBuffer()
        a.resize(to: 100, pool: pool)
        #expect(a.capacity == 100 && a.isEmpty)           // exact, not a doubling
        a.append(pool: pool, Array(0..<40))
        a.consume(30)
        #expect(a.resize(to: 60, pool: pool) == 100)       // the old block went back to malloc
        #expect(a.capacity == 60 && Array(a.readable) == Array(30..<40).map { UInt8($0) })
        #expect(a.resize(to: 10, pool: pool) == 60)        // shrinks into a pool block
        #expect(a.capacity == 16 && Array(a.readable) == Array(30..<40).map { UInt8($0) })
        #expect(a.resize(to: 12, pool: pool) == 0)         // already a pool block: compacted in place
        #expect(a.capacity == 16)
        a.truncate(keeping: 4)
        #expect(Array(a.readable) == [30, 31, 32, 33])
        a.release(to: pool)
        #expect(pool.cachedBlocks == 1)
    }

    @Test func thePoolKeepsAtMostMaxBlocks() {
        let pool = BufferPool(blockSize: 32, maxBlocks: 2)
        var bufs = (0..<5).map { _ in ByteBuffer() }
        for i in bufs.indices { bufs[i].append(pool: pool, [1]) }
        for i in bufs.indices { bufs[i].release(to: pool) }
        #expect(pool.cachedBlocks == 2)
        pool.trim()
        #expect(pool.cachedBlocks == 0)
    }

    /// Every connection holds two buffers for its lifetime (docs/benchmarks.md, M1).
    @Test func bufferStaysCompact() {
        #expect(MemoryLayout<ByteBuffer>.size <= 24)
    }
}
