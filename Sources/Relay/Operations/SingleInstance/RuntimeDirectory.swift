import CEpoll
import RelayLog

/// The directory named by `--runtime-dir` holds `instance.lock`. A missing one is created
/// (mode 0700, as systemd's `RuntimeDirectoryMode=` in the shipped unit) so a typo cannot start
/// a relay that silently skips the same-host check; what cannot be created refuses the start.
package enum RuntimeDirectory {
    /// nil when `path` is a directory now (made here or already there), else the refusal text.
    package static func prepare(_ path: String) -> String? {
        if mkdir(path, 0o700) == 0 {
            Log.info("runtime_dir_created", ["path": path])
            return nil
        }
        let created = pyry_errno()
        guard created == EEXIST else {
            return "--runtime-dir \(path): cannot create it: \(String(cString: strerror(created)))"
        }
        if let d = opendir(path) {
            closedir(d)
            return nil
        }
        let opened = pyry_errno()
        // A directory we may not list can still take the lock (open needs search and write
        // permission only); the check reports anything else it runs into.
        guard opened == ENOTDIR else { return nil }
        return "--runtime-dir \(path): exists and is not a directory"
    }
}
