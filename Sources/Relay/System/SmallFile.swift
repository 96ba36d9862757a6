import CEpoll

/// The whole content of a small file (`/proc` entries, a lock file) as text; nil when it cannot
/// be opened. Reads until end of file, so a `/proc` file is never cut at a fixed size.
public func readSmallFile(_ path: String) -> String? {
    let fd = pyry_open(path, O_RDONLY | O_CLOEXEC, 0)
    guard fd >= 0 else { return nil }
    defer { _ = close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 8192)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}
