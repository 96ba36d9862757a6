import CEpoll

/// The whole content of a small file (`/proc` entries, a lock file) as text; nil when it cannot
/// be opened or read. Reads until end of file, so a `/proc` file is never cut at a fixed size;
/// a signal (EINTR) does not cut it either.
public func readSmallFile(_ path: String) -> String? {
    guard case .done(let raw)? = try? syscall("open", { pyry_open(path, O_RDONLY | O_CLOEXEC, 0) }) else { return nil }
    let file = FileDescriptor(raw)
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while true {
        // `syscall` retries EINTR; a regular file or /proc entry never would-block.
        guard case .done(let n)? = try? syscall("read", { buf.withUnsafeMutableBytes { read(file.raw, $0.baseAddress, $0.count) } })
        else { return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}
