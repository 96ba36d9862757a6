import CEpoll

/// Opens `/dev/null` on any of fds 0, 1, 2 that the parent left closed. Without this the first
/// socket the relay accepts could become fd 2, and log lines would be written to a client.
/// `open` returns the lowest free descriptor, so filling the gaps in order lands each on its number.
public func reserveStandardDescriptors() {
    for fd: Int32 in 0...2 where pyry_fcntl_int(fd, F_GETFD, 0) == -1 {
        let opened = pyry_open("/dev/null", O_RDWR, 0)
        if opened < 0 { return }  // nothing better to do this early; the relay still runs
        if opened != fd {  // a lower gap was filled by an earlier pass: should not happen, but never leak
            _ = CEpoll.close(opened)
            return
        }
    }
}
