extension Array {
    /// Tables of one entry per connection (the reactor's registrations, the registry's members,
    /// the service's records, the timer heap) grow by a quarter once past this many entries,
    /// where `append` doubles: doubling leaves up to half the storage unused for as long as the
    /// connections stay, a quarter at most a fifth (docs/benchmarks.md, M1). Go's slices do the
    /// same past 256 entries.
    @inlinable package static var gentleGrowthFrom: Int { 1024 }

    /// The capacity a full table of `count` entries grows to.
    @inlinable package static func gentlyGrownCapacity(_ count: Int) -> Int {
        count < gentleGrowthFrom ? Swift.max(2 * count, 16) : count + count / 4
    }

    /// `append`, growing a full storage by `gentlyGrownCapacity`: amortised O(1) still (a copy of
    /// n entries comes after n/4 appends at least).
    @inlinable @inline(__always)
    package mutating func appendGrowingGently(_ element: Element) {
        if count == capacity { reserveCapacity(Self.gentlyGrownCapacity(count)) }
        append(element)
    }
}
