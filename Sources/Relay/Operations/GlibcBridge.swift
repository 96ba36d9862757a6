// libc entry points Swift cannot call directly (variadic open(2), the `environ` global),
// reached through CEpoll's shims. Nothing in Relay imports Glibc next to CEpoll.
import CEpoll

/// open(2) with an explicit mode; returns the fd or -1 with errno set (for the `syscall` funnel).
func openFile(_ path: String, _ flags: Int32, _ mode: UInt32) -> Int32 {
    pyry_open(path, flags, Int32(mode))
}

/// The raw `NAME=value` entries of `environ`, in order.
func environmentEntries() -> [String] {
    var out: [String] = []
    guard var p = pyry_environ() else { return out }
    while let entry = p.pointee {
        out.append(String(cString: entry))
        p += 1
    }
    return out
}
