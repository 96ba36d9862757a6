// Two libc entry points CEpoll cannot give us: C's variadic open(2) is not importable, and
// CEpoll's `environ` is a mutable C global Swift 6 rejects. The Glibc overlay wraps both.
// This file imports Glibc alone: a file importing Glibc and CEpoll together hits clang
// module redefinition errors (fd_set, __rusage_who).
// (If the lead prefers, a `static inline int pyry_open(const char*, int, mode_t)` in
// CEpoll/shim.h replaces `openFile`.)
import Glibc

/// open(2) with an explicit mode; returns the fd or -1 with errno set (for the `syscall` funnel).
func openFile(_ path: String, _ flags: Int32, _ mode: UInt32) -> Int32 {
    Glibc.open(path, flags, mode_t(mode))
}

/// The raw `NAME=value` entries of `environ`, in order.
func environmentEntries() -> [String] {
    var out: [String] = []
    var p = Glibc.environ
    while let entry = p.pointee {
        out.append(String(cString: entry))
        p += 1
    }
    return out
}
