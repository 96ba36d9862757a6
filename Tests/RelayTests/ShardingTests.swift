import CEpoll
import Testing
@testable import RelaySystem
@testable import RelayCore
@testable import RelayOperations

/// Sharded mode (docs/architecture.md, "v2 = static shards"): the `i/N` syntax, the map, the
/// flag and variable, the per-shard lock, the production guard and the 421 for a misrouted id.
@Suite struct ShardingTests {
    @Test func parsesOnlyPlainInOrderShardNumbers() {
        #expect(ShardAssignment(parsing: "0/1") == ShardAssignment(index: 0, count: 1))
        #expect(ShardAssignment(parsing: "2/3") == ShardAssignment(index: 2, count: 3))
        #expect(ShardAssignment(parsing: "1023/1024") != nil)
        for bad in ["", "/", "1", "1/", "/3", "3/3", "4/3", "0/0", "-1/3", "+1/3", "01/3", "1/03", " 1/3", "1/3 ",
                    "1/3/5", "0/1025", "0x1/3", "١/3", "1/99999999999999999999"] {
            #expect(ShardAssignment(parsing: bad) == nil, "\(bad) must be refused")
        }
    }

    /// CRC-32/IEEE: the standard check value, and the ids the interop test also asks HAProxy about.
    @Test func theMapIsZlibCRC32ModN() {
        #expect(ShardAssignment.crc32("123456789") == 0xCBF4_3926)
        #expect(ShardAssignment.crc32("a,b c") == 2_197_336_680)
        #expect(ShardAssignment.shard(of: "123456789", count: 3) == 2)  // 3421780262 mod 3
        #expect(ShardAssignment.shard(of: "a,b c", count: 3) == 0)
        let s2 = ShardAssignment(index: 2, count: 3)!
        #expect(s2.owns("123456789") && !s2.owns("a,b c"))
        // Every id has exactly one owner.
        for id in ["x", "srv-000-deadbeef", String(repeating: "z", count: 128)] {
            #expect((0..<5).filter { ShardAssignment(index: $0, count: 5)!.owns(id) }.count == 1)
        }
    }

    @Test func flagAndVariableDeclareTheShard() throws {
        guard case .success(.run(let c)) = RelayConfig.parse(["--insecure-listen", "127.0.0.1:8100", "--shard", "1/4"]) else {
            Issue.record("--shard 1/4 refused"); return
        }
        #expect(c.shard == ShardAssignment(index: 1, count: 4))
        guard case .failure(let r) = RelayConfig.parse(["--insecure-listen", "127.0.0.1:8100", "--shard", "4/4"]) else {
            Issue.record("--shard 4/4 accepted"); return
        }
        #expect(r.description == "invalid value \"4/4\" for --shard: \(ShardAssignment.expected)")
        guard case .success(.run(let unsharded)) = RelayConfig.parse(["--insecure-listen", "127.0.0.1:8100"]) else {
            Issue.record("plain start refused"); return
        }
        #expect(unsharded.shard == nil)

        #expect(try EnvironmentConfig.parse(["PYRYCODE_RELAY_SHARD": "0/2"]).get().shard == ShardAssignment(index: 0, count: 2))
        for (value, reason) in [("", "empty value; "), ("2/2", "malformed value; "), ("1 / 2", "malformed value; ")] {
            #expect(EnvironmentConfig.parse(["PYRYCODE_RELAY_SHARD": value])
                == .failure(EnvironmentError(variable: "PYRYCODE_RELAY_SHARD", reason: reason + ShardAssignment.expected + " or unset")))
        }
        let a = ShardAssignment(index: 0, count: 2), b = ShardAssignment(index: 1, count: 2)
        #expect(try ShardAssignment.resolve(flag: a, environment: nil).get() == a)
        #expect(try ShardAssignment.resolve(flag: nil, environment: b).get() == b)
        #expect(try ShardAssignment.resolve(flag: a, environment: a).get() == a)
        #expect(try ShardAssignment.resolve(flag: nil, environment: nil).get() == nil)
        guard case .failure(let conflict) = ShardAssignment.resolve(flag: a, environment: b) else {
            Issue.record("conflict accepted"); return
        }
        #expect(conflict.description == "--shard 0/2 and PYRYCODE_RELAY_SHARD name different shards; give one of them")
    }

    // Every shard would order the certificate, and the CA's challenge reaches any of them.
    @Test func aShardRefusesACMEButTakesACertificate() throws {
        let shard = ShardAssignment(index: 1, count: 3)
        #expect(ShardAssignment.refusal(shard, acme: true)?.description.hasPrefix(
            "shard 1/3 cannot run ACME (--domain without --tls-cert): ") == true)
        #expect(ShardAssignment.refusal(shard, acme: false) == nil)
        #expect(ShardAssignment.refusal(nil, acme: true) == nil)
        // What the boot step reads: ACME mode is --domain without a certificate.
        guard case .success(.run(let acme)) = RelayConfig.parse(["--domain", "relay.example.com", "--shard", "1/3"]),
              case .success(.run(let files)) = RelayConfig.parse(["--domain", "relay.example.com", "--shard", "1/3",
                                                                  "--tls-cert", "c.pem", "--tls-key", "k.pem"]) else {
            Issue.record("flags refused"); return
        }
        #expect(ShardAssignment.refusal(acme.shard, acme: acme.acmeDirectory != nil) != nil)
        #expect(ShardAssignment.refusal(files.shard, acme: files.acmeDirectory != nil) == nil)
    }

    @Test func theSameHostLockIsPerShard() {
        let dir = TempDir()
        let one = ShardAssignment(index: 1, count: 3)!
        let first = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:], shard: one)
        #expect(first.probe() == .single(evidence: "lock \(dir.path)/instance-1-of-3.lock held by this process, pid \(getpid())"))
        // Another shard, and the unsharded lock, are other locks.
        let other = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:], shard: ShardAssignment(index: 2, count: 3))
        guard case .single = other.probe() else { Issue.record("shard 2/3 blocked by shard 1/3"); return }
        // The same shard again: refused, and the evidence names the shard.
        let again = SameHostLockSignal(runtimeDirFlag: dir.path, env: [:], shard: one)
        #expect(again.probe() == .multiple(
            evidence: "lock \(dir.path)/instance-1-of-3.lock is held by another relay for shard 1/3, pid \(getpid())"))
        withExtendedLifetime((first, other)) {}
    }

    @Test func theRefusalKeepsItsHeadlineAndNamesTheShard() {
        let dir = TempDir()
        let shard = ShardAssignment(index: 0, count: 2)!
        let env = EnvironmentConfig()
        guard case .success(let held) = runSingleInstanceCheck(env: env, rawEnv: [:], runtimeDirFlag: dir.path, shard: shard) else {
            Issue.record("first shard refused"); return
        }
        #expect(held.logLines.first?.contains("shard=0/2") == true)
        guard case .failure(let refusal) = runSingleInstanceCheck(env: env, rawEnv: [:], runtimeDirFlag: dir.path, shard: shard) else {
            Issue.record("second process for the shard started"); return
        }
        let lines = refusal.message.split(separator: "\n").map(String.init)
        #expect(lines[0] == SingleInstanceRefusal.headline)
        #expect(lines[1] == "  reason: same_host signal saw another replica (sharded mode: this relay claims shard 0/2)")
        #expect(lines[2].contains("instance-0-of-2.lock is held by another relay for shard 0/2"))
        #expect(lines.last == "  " + SingleInstanceRefusal.shardedPointer)
        #expect(SingleInstanceRefusal.shardedPointer.hasSuffix("section \"v2 = static shards\""))
        withExtendedLifetime(held) {}
    }

    @Test func productionAcceptsAPlainShardListenerOnlyOnLoopbackOrPrivate() throws {
        var env = EnvironmentConfig()
        env.production = true
        func refusal(_ listen: String, shard: Bool = true) throws -> String? {
            var c = RelayConfig()
            c.insecureListen = try SocketAddress(parsing: listen)
            c.shard = shard ? ShardAssignment(index: 0, count: 2) : nil
            return ProductionGuards.check(env: env, config: c, effectiveCaps: 0, euid: 1000)
        }
        for ok in ["127.0.0.1:8100", "127.3.2.1:8100", "[::1]:8100", "10.1.2.3:8100", "172.16.0.1:8100",
                   "172.31.255.255:8100", "192.168.7.1:8100", "[fd12:3456::1]:8100", "[fc00::1]:8100"] {
            #expect(try refusal(ok) == nil, "\(ok) must be accepted")
        }
        for bad in [":8100", "0.0.0.0:8100", "[::]:8100", "172.32.0.1:8100", "172.15.255.255:8100", "192.169.0.1:8100",
                    "11.0.0.1:8100", "8.8.8.8:8100", "[2001:db8::1]:8100", "[fe80::1]:8100"] {
            #expect(try refusal(bad)?.hasPrefix("PYRYCODE_RELAY_PRODUCTION=1 refuses --insecure-listen") == true,
                    "\(bad) must be refused")
        }
        // Unsharded production refuses every plain listener, loopback included.
        #expect(try refusal("127.0.0.1:8100", shard: false) == "PYRYCODE_RELAY_PRODUCTION=1 refuses --insecure-listen")
    }

    @Test func anUpgradeForAnotherShardGets421AndIsCounted() throws {
        let shard = ShardAssignment(index: 2, count: 3)!
        let server = try LoopbackRelay { $0.shard = shard }
        let misdirected = Array(("HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: 0\r\nConnection: close\r\n\r\n").utf8)
        // "b,c" is shard 0 of 3: refused on both routes, before the handshake and the registry.
        #expect(ShardAssignment.shard(of: "b,c", count: 3) == 0)
        for path in ["/v1/server", "/v1/client"] {
            #expect(UpgradeGateLoopbackTests.answer(server, UpgradeGateLoopbackTests.request(path, serverID: Array("b,c".utf8)))
                == misdirected)
        }
        #expect(server.relay.metrics.misroutedUpgrades == 2)
        #expect(server.relay.metrics.httpRejects[421] == 2)
        #expect(String(decoding: Metrics(relay: server.relay.metrics).render(Metrics.Gauges()), as: UTF8.self)
            .contains("\npyrycode_relay_misrouted_upgrades_total 2\n"))
        // "123456789" is shard 2 of 3: the binary gets its 101.
        var keep: [RawSocket] = []
        let ok = UpgradeGateLoopbackTests.head(server, UpgradeGateLoopbackTests.request(serverID: Array("123456789".utf8)), keep: &keep)
        #expect(ok.hasPrefix("HTTP/1.1 101 "))
        #expect(server.relay.connectedBinaries == 1 && server.relay.metrics.misroutedUpgrades == 2)
    }
}
