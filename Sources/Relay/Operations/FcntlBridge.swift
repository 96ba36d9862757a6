import CEpoll

/// Sets O_NONBLOCK and FD_CLOEXEC on an inherited descriptor (sd_listen_fds(3) sets FD_CLOEXEC;
/// the loop needs non-blocking accept). Returns false, errno set, on failure.
func makeNonBlockingCloseOnExec(_ fd: Int32) -> Bool {
    let fl = pyry_fcntl_int(fd, F_GETFL, 0)
    guard fl >= 0, pyry_fcntl_int(fd, F_SETFL, fl | O_NONBLOCK) >= 0 else { return false }
    let fdfl = pyry_fcntl_int(fd, F_GETFD, 0)
    guard fdfl >= 0, pyry_fcntl_int(fd, F_SETFD, fdfl | FD_CLOEXEC) >= 0 else { return false }
    return true
}

/// The descriptor flags and status flags, for tests.
func descriptorFlags(_ fd: Int32) -> (status: Int32, descriptor: Int32) {
    (pyry_fcntl_int(fd, F_GETFL, 0), pyry_fcntl_int(fd, F_GETFD, 0))
}
