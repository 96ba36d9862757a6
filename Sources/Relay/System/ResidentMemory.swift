import CEpoll

/// VmRSS of this process in bytes: the second field of /proc/self/statm (pages, proc(5)) × the
/// page size. One small read into a stack buffer: no String, no allocation.
public func residentMemoryBytes() -> Int {
    let file = FileDescriptor(pyry_open("/proc/self/statm", O_RDONLY | O_CLOEXEC, 0))
    guard file.isOpen else { return 0 }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { buf -> Int in
        let n = read(file.raw, buf.baseAddress, buf.count)
        guard n > 0 else { return 0 }
        var i = 0
        while i < n && buf[i] != 0x20 { i += 1 }  // skip the first field (size)
        i += 1
        var pages = 0
        while i < n, buf[i] >= 0x30, buf[i] <= 0x39 {
            pages = pages * 10 + Int(buf[i] - 0x30)
            i += 1
        }
        return pages * pageSize
    }
}

private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
