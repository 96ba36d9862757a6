import CEpoll
import RelaySystem
import RelayLog

/// docs/operations.md: production mode refuses `--insecure-listen` and euid 0; any effective capability
/// other than CAP_NET_BIND_SERVICE refuses in production and warns otherwise. A sharded relay
/// (docs/architecture.md, "v2 = static shards") sits behind the proxy that terminates TLS, so in
/// production it may listen in plain text, but only on a loopback or private address.
public enum ProductionGuards {
    package static let capNetBindService = 10
    package static let capabilityNames = [
        "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
        "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
        "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module",
        "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot",
        "cap_sys_nice", "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
        "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
        "cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
    ]

    /// Returns the refusal text, or nil to go on (after logging any warning).
    public static func check(env: EnvironmentConfig, config: RelayConfig,
                             effectiveCaps: UInt64? = readEffectiveCapabilities(), euid: UInt32 = geteuid()) -> String? {
        if env.production, let plain = config.insecureListen {
            guard let shard = config.shard else {
                return "PYRYCODE_RELAY_PRODUCTION=1 refuses --insecure-listen"
            }
            guard isLoopbackOrPrivate(plain) else {
                return "PYRYCODE_RELAY_PRODUCTION=1 refuses --insecure-listen \(plain) for shard \(shard): "
                    + "a shard listens in plain text only on a loopback or private address (127.0.0.0/8, ::1, "
                    + "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7)"
            }
        }
        if let shard = config.shard, config.insecureListen != nil, !config.trustXForwardedFor {
            // Behind the proxy every connection comes from the proxy's address: without the
            // client's address every client shares one rate limit (docs/architecture.md, "v2 = static shards").
            Log.warn("shard_without_client_address", [
                "shard": shard.description,
                "reason": "plain listener without --trust-x-forwarded-for: behind a proxy all clients share one address's limits",
            ])
        }
        if env.production && euid == 0 {
            return "PYRYCODE_RELAY_PRODUCTION=1 refuses to run as root (euid 0)"
        }
        let extra = extraCapabilities(effectiveCaps ?? 0)
        if !extra.isEmpty {
            if env.production {
                return "PYRYCODE_RELAY_PRODUCTION=1 refuses extra capabilities: \(extra.joined(separator: ","))"
            }
            Log.warn("extra_capabilities", ["capabilities": extra.joined(separator: ",")])
        }
        return nil
    }

    /// Loopback (127.0.0.0/8, ::1) or private (RFC 1918; RFC 4193 unique local fc00::/7):
    /// addresses the public internet cannot route to. A wildcard (`:port`, 0.0.0.0, ::) is neither.
    public static func isLoopbackOrPrivate(_ a: SocketAddress) -> Bool {
        guard !a.anyFamily, let (high, low) = a.ipv6Bytes else { return false }
        if high == 0 && low == 1 { return true }  // ::1
        if high == 0 && low >> 32 == 0xffff {  // IPv4 (as ::ffff:a.b.c.d)
            let v4 = UInt32(truncatingIfNeeded: low)
            return v4 >> 24 == 127 || v4 >> 24 == 10 || v4 >> 20 == 0xac1 || v4 >> 16 == 0xc0a8
        }
        return high >> 57 == 0x7e  // fc00::/7
    }

    public static func extraCapabilities(_ mask: UInt64) -> [String] {
        var out: [String] = []
        for bit in 0..<64 where bit != capNetBindService && mask & (1 << UInt64(bit)) != 0 {
            out.append(bit < capabilityNames.count ? capabilityNames[bit] : "cap_\(bit)")
        }
        return out
    }

    /// `CapEff` of /proc/self/status.
    public static func readEffectiveCapabilities() -> UInt64? {
        guard let text = readSmallFile("/proc/self/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst(7).trimmingASCIISpaces(), radix: 16)
        }
        return nil
    }
}
