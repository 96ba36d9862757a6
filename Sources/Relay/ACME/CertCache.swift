import CEpoll
import RelaySystem
import RelayCodecs
import RelayLog

/// The ACME store under `--cert-cache` (docs/operations.md "ACME"): the account key and, per
/// domain, the certificate chain and its key, each a PEM file of mode 0600 in a 0700 directory.
/// Files are replaced atomically (temp file, fsync, rename, fsync of the directory), so a crash
/// leaves the old file or the new one, never half of one.
package struct CertCache {
    package let directory: String

    package init(directory: String) { self.directory = directory }

    package static let accountKeyFile = "acme_account.key"

    /// Creates the directory (and missing parents) 0700. An existing one we own with group or
    /// other bits is tightened to 0700 and logged; one owned by another user refuses the start.
    /// Returns the refusal text (exit 1), or nil.
    package static func prepare(_ path: String) -> String? {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o700) == 0 { Log.info("cert_cache_created", ["path": prefix]) }
        }
        var st = stat()
        // lstat: a symlink planted where the cache should be (a shared /tmp) is refused rather
        // than followed; the key files would otherwise live wherever it points.
        guard lstat(path, &st) == 0 else {
            return "--cert-cache \(path): \(String(cString: strerror(pyry_errno())))"
        }
        if st.st_mode & UInt32(S_IFMT) == UInt32(S_IFLNK) { return "--cert-cache \(path): is a symbolic link; give the real directory" }
        guard st.st_mode & UInt32(S_IFMT) == UInt32(S_IFDIR) else { return "--cert-cache \(path): not a directory" }
        guard st.st_uid == geteuid() else { return "cert cache dir has insecure permissions: \(path) is owned by uid \(st.st_uid)" }
        if st.st_mode & 0o077 != 0 {
            guard chmod(path, 0o700) == 0 else {
                return "cert cache dir has insecure permissions: \(path): chmod: \(String(cString: strerror(pyry_errno())))"
            }
            Log.warn("cert_cache_permissions_tightened", ["path": path, "from": String(st.st_mode & 0o777, radix: 8), "to": "700"])
        }
        return nil
    }

    package func path(_ name: String) -> String { directory + "/" + name }
    package static func chainFile(_ domain: String) -> String { domain + ".crt" }
    package static func keyFile(_ domain: String) -> String { domain + ".key" }

    /// Renames a staged entry over `name` (atomic within the directory); returns the error text, or nil.
    package func promote(_ staged: String, to name: String) -> String? {
        rename(path(staged), path(name)) == 0 ? nil : "\(name): \(String(cString: strerror(pyry_errno())))"
    }

    /// Whether `name` does not exist (as opposed to existing but unreadable right now).
    package func isMissing(_ name: String) -> Bool {
        var st = stat()
        return lstat(path(name), &st) != 0 && pyry_errno() == ENOENT
    }

    /// The file's bytes, or nil when missing or unreadable (bounded: a cache entry is a few KiB).
    package func read(_ name: String) -> [UInt8]? {
        let file = FileDescriptor(pyry_open(path(name), O_RDONLY | O_CLOEXEC, 0))
        guard file.isOpen else { return nil }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        while out.count <= Limits.acmeMaxCertificateBytes {
            let n = buf.withUnsafeMutableBytes { CEpoll.read(file.raw, $0.baseAddress, $0.count) }
            if n < 0 { return nil }
            if n == 0 { return out }
            out.append(contentsOf: buf[0..<n])
        }
        return nil
    }

    /// Replaces `name` with `bytes` atomically; returns the error text, or nil.
    package func write(_ name: String, _ bytes: [UInt8]) -> String? {
        let final = path(name)
        let temp = final + ".tmp"
        _ = unlink(temp)
        var file = FileDescriptor(pyry_open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600))
        guard file.isOpen else { return "\(temp): \(String(cString: strerror(pyry_errno())))" }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { CEpoll.write(file.raw, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if pyry_errno() == EINTR { continue }
                let e = String(cString: strerror(pyry_errno()))
                file.close()
                _ = unlink(temp)
                return "\(temp): \(e)"
            }
            off += n
        }
        guard fsync(file.raw) == 0 else {
            let e = String(cString: strerror(pyry_errno()))
            file.close()
            _ = unlink(temp)
            return "\(temp): fsync: \(e)"
        }
        file.close()
        guard rename(temp, final) == 0 else {
            let e = String(cString: strerror(pyry_errno()))
            _ = unlink(temp)
            return "\(final): rename: \(e)"
        }
        // The rename itself is durable only once the directory is synced.
        let dir = FileDescriptor(pyry_open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0))
        if dir.isOpen { _ = fsync(dir.raw) }
        return nil
    }
}
