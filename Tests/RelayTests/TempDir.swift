import CEpoll

/// A fresh directory under /tmp, removed (with its files) when dropped.
final class TempDir {
    let path: String

    init() {
        var template = Array("/tmp/relay-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    deinit {
        if let d = opendir(path) {
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if name != "." && name != ".." { unlink(path + "/" + name) }
            }
            closedir(d)
        }
        rmdir(path)
    }

    func read(_ name: String) -> String? {
        guard let f = fopen(path + "/" + name, "re") else { return nil }
        defer { fclose(f) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = fread(&buf, 1, buf.count, f)
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    func write(_ name: String, _ text: String) {
        guard let f = fopen(path + "/" + name, "we") else { return }
        _ = fputs(text, f)
        fclose(f)
    }
}

func monotonicNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
