import Testing
@testable import RelaySystem
@testable import RelayCore

/// The per-client key of the admission limits (docs/operations.md, "Admission limits").
@Suite struct ClientKeyTests {
    func key(_ ip: String) -> ClientKey? { ClientKey(ip: ip) }

    @Test func ipv4IsKeyedByTheWholeAddress() {
        #expect(key("203.0.113.7") == key("203.0.113.7"))
        #expect(key("203.0.113.7") != key("203.0.113.8"))
        #expect(key("203.0.113.7")?.description == "203.0.113.7")
        #expect(key("0.0.0.0") != nil)
    }

    @Test func ipv6IsKeyedByItsSlash64() {
        let a = key("2001:db8:1:2::1"), b = key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        #expect(a != nil && a == b)
        #expect(a?.description == "2001:db8:1:2::/64")
        // Bit 64 (the first of the interface identifier) is inside; bit 63 (the last of the
        // prefix: 2001:db8:1:3) is outside.
        #expect(key("2001:db8:1:2:8000::") == a)
        #expect(key("2001:db8:1:3::1") != a)
        #expect(key("2001:db8:0:0:1::1") == key("2001:db8::"))
        #expect(key("::1")?.description == "::/64")
    }

    /// What a connection's record keeps (8 bytes and a flag) gives back the same key, for IPv4,
    /// IPv6, IPv4-mapped and the ::/64 keys, and the halves never mix.
    @Test func aKeySurvivesItsOneWordForm() {
        for ip in ["203.0.113.7", "0.0.0.0", "255.255.255.255", "2001:db8:1:2::1", "::1", "::203.0.113.7",
                   "::ffff:198.51.100.1", "ffff:ffff:ffff:ffff::"] {
            let k = key(ip)!
            #expect(ClientKey(word: k.word, wordIsHigh: k.wordIsHigh) == k, "\(ip)")
        }
        #expect(key("203.0.113.7")!.word != key("2001:db8:1:2::1")!.word)
        #expect(!key("203.0.113.7")!.wordIsHigh && key("2001:db8:1:2::1")!.wordIsHigh)
        // An IPv4 key and the IPv6 /64 whose prefix has the same 64 bits stay apart.
        let v4 = key("203.0.113.7")!
        #expect(ClientKey(word: v4.word, wordIsHigh: true) != v4)
    }

    @Test func ipv4MappedIsTheIPv4Address() {
        #expect(key("::ffff:203.0.113.7") == key("203.0.113.7"))
        #expect(key("::ffff:203.0.113.7")?.description == "203.0.113.7")
        // The same 32 bits outside the mapped prefix are an IPv6 address, in ::/64.
        #expect(key("::203.0.113.7") != key("203.0.113.7"))
        #expect(key("::203.0.113.7") == key("::1"))
    }

    @Test func socketAddressesKeyAsTheirIP() {
        #expect(ClientKey(SocketAddress(ip: "2001:db8::5", port: 443)!) == key("2001:db8::9"))
        #expect(ClientKey(SocketAddress(ip: "::ffff:10.1.2.3", port: 9)!) == key("10.1.2.3"))
        #expect(ClientKey(SocketAddress()) == nil)
        #expect(key("not-an-ip") == nil)
    }

    @Test func noAddressIsUnattributed() {
        for ip in ["255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::", "::ffff:255.255.255.255"] {
            #expect(key(ip) != ClientKey.unattributed)
        }
    }

    @Test func rateLimiterSharesOneBucketPerSlash64() {
        var limiter = RateLimiter(burst: 3, refillMs: 1_000_000)
        let sameSlash64 = ["2001:db8:a:b::1", "2001:db8:a:b::2", "2001:db8:a:b::3", "2001:db8:a:b:1:2:3:4"]
            .map { limiter.allow(key($0)!, now: 0) }
        #expect(sameSlash64 == [true, true, true, false])
        let otherSlash64 = limiter.allow(key("2001:db8:a:c::1")!, now: 0)
        #expect(otherSlash64)
        #expect(limiter.bucketCount == 2)
    }
}
