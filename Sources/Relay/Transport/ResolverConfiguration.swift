import RelaySystem

/// What the outbound client's resolver needs from the system: the nameservers of
/// `/etc/resolv.conf` and the entries of `/etc/hosts` (consulted first, as glibc's default
/// `hosts: files dns` does). Both files are read again for each lookup — a few µs from the page
/// cache — so an edited file applies without a restart, as it does for every other program.
package struct ResolverConfiguration {
    package var nameservers: [SocketAddress]
    /// Lowercased name → its addresses, in file order.
    package var hosts: [String: [String]]

    /// resolv.conf(5) allows three nameservers (MAXNS); with none, the local one (127.0.0.1).
    package static let maxNameservers = 3

    package static func system() -> ResolverConfiguration {
        ResolverConfiguration(nameservers: parseResolvConf(readSmallFile("/etc/resolv.conf") ?? ""),
                              hosts: parseHosts(readSmallFile("/etc/hosts") ?? ""))
    }

    /// `nameserver IP` lines, port 53. A scoped IPv6 address (`fe80::1%eth0`) is skipped.
    package static func parseResolvConf(_ text: String) -> [SocketAddress] {
        var out: [SocketAddress] = []
        for line in text.split(whereSeparator: { $0 == "\n" }) {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 2, words[0] == "nameserver", out.count < maxNameservers,
                  let a = SocketAddress(ip: String(words[1]), port: 53) else { continue }
            out.append(a)
        }
        return out.isEmpty ? [SocketAddress(ip: "127.0.0.1", port: 53)!] : out
    }

    /// hosts(5): an address, then its names and aliases; `#` starts a comment.
    package static func parseHosts(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        for rawLine in text.split(whereSeparator: { $0 == "\n" }) {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard words.count >= 2, SocketAddress(ip: String(words[0]), port: 1) != nil else { continue }
            for name in words.dropFirst() {
                let key = name.lowercased()
                if out[key, default: []].contains(String(words[0])) { continue }
                out[key, default: []].append(String(words[0]))
            }
        }
        return out
    }
}
