import CEpoll
import Testing
@testable import RelayCodecs
@testable import RelayACME

/// The pieces of ACME that need no CA: the JSON reader, keys, certificate facts, and the
/// --cert-cache directory (modes, atomic replacement, bounds).
@Suite struct ACMEStorageTests {
    @Test func jsonReadsACMEObjectsAndRefusesMalformedOrDeepInput() {
        let order = JSONValue.parse(Array(#" {"status":"valid","n":1.5e2,"ok":true,"x":null,"a":["https:\/\/ca\/1","\u00e9\n"]} "#.utf8))
        #expect(order?["status"]?.stringValue == "valid")
        #expect(order?["n"] == .number("1.5e2") && order?["ok"] == .bool(true) && order?["x"] == .null)
        #expect(order?["a"]?.arrayValue == [.string("https://ca/1"), .string("é\n")])
        for bad in ["", "{", #"{"a":}"#, #"{"a":1}x"#, #"["a",]"#, "tru", "\"\u{1}\"", #"{"a" 1}"#, #""\q""#] {
            #expect(JSONValue.parse(Array(bad.utf8)) == nil, "\(bad)")
        }
        let deep = String(repeating: "[", count: JSONValue.maxDepth + 1) + String(repeating: "]", count: JSONValue.maxDepth + 1)
        #expect(JSONValue.parse(Array(deep.utf8)) == nil)
        #expect(JSONValue.quote("a\"b\\c\n\u{1}") == #""a\"b\\c\n\u0001""#)
    }

    @Test func base64urlHasNoPaddingAndTheURLAlphabet() {
        #expect(Base64.urlEncode([0xfb, 0xff]) == "-_8")
        #expect(Base64.urlEncode(Array("ab".utf8)) == "YWI")
    }

    @Test func keyRoundTripsThroughPEMAndSignsES256() throws {
        let k = try ACMEKey.generate()
        let pem = k.pem()
        #expect(pem.starts(with: Array("-----BEGIN PRIVATE KEY-----".utf8)))
        let again = try #require(ACMEKey.load(pem: pem))
        #expect(again.thumbprint == k.thumbprint && again.jwk == k.jwk)
        // RFC 7638 §3.2: members in lexicographic order, no whitespace; x and y 32 bytes each.
        #expect(k.jwk.hasPrefix(#"{"crv":"P-256","kty":"EC","x":""#))
        #expect(k.thumbprint.utf8.count == 43)
        #expect(try k.sign(Array("m".utf8)).count == 64)
        #expect(try k.csr(domain: "relay.example.com").first == 0x30)
        #expect(ACMEKey.load(pem: Array("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".utf8)) == nil)
        #expect(ACMEKey.load(pem: []) == nil)
    }

    @Test func certificateFactsComeFromTheLeaf() throws {
        let dir = TestPKI.dir
        let cache = CertCache(directory: dir)
        let leaf = try #require(cache.read("leaf.crt"))
        let info = try #require(CertificateInfo(chainPEM: leaf, domain: "push.test"))
        #expect(info.matchesDomain)
        #expect(info.notAfter > Int64(time(nil)) && info.notAfter < Int64(time(nil)) + 3 * 86_400)
        #expect(!info.serial.isEmpty && info.serial.allSatisfy(\.isHexDigit))
        #expect(CertificateInfo(chainPEM: try #require(cache.read("wronghost.crt")), domain: "push.test")?.matchesDomain == false)
        #expect(CertificateInfo(chainPEM: Array("garbage".utf8), domain: "push.test") == nil)
    }

    @Test func cacheDirectoryIsCreatedPrivateAndTightened() {
        let base = TempDir()
        let dir = base.path + "/a/b/certs"
        #expect(CertCache.prepare(dir) == nil)
        var st = stat()
        #expect(stat(dir, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(chmod(dir, 0o750) == 0)
        #expect(CertCache.prepare(dir) == nil)
        #expect(stat(dir, &st) == 0 && st.st_mode & 0o777 == 0o700)
        let file = base.path + "/file"
        close(pyry_open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600))
        #expect(CertCache.prepare(file) == "--cert-cache \(file): not a directory")
        if geteuid() == 0 {
            let other = base.path + "/other"
            #expect(mkdir(other, 0o700) == 0 && chown(other, 65534, 65534) == 0)
            #expect(CertCache.prepare(other)?.hasPrefix("cert cache dir has insecure permissions: ") == true)
        }
    }

    @Test func aSymlinkedCacheDirectoryIsRefusedNotFollowed() {
        let base = TempDir()
        let real = base.path + "/real"
        #expect(mkdir(real, 0o755) == 0)
        let link = base.path + "/certs"
        #expect(symlink(real, link) == 0)
        #expect(CertCache.prepare(link) == "--cert-cache \(link): is a symbolic link; give the real directory")
        var st = stat()
        #expect(stat(real, &st) == 0 && st.st_mode & 0o777 == 0o755, "the target was not touched")
    }

    @Test func anUnreadableEntryIsNotMistakenForAMissingOne() {
        // The account key is replaced only when missing: unreadable (EISDIR here; EMFILE in a
        // flood) must not count as missing, or the ACME account would be lost.
        let base = TempDir()
        let cache = CertCache(directory: base.path)
        #expect(cache.isMissing(CertCache.accountKeyFile))
        #expect(mkdir(cache.path(CertCache.accountKeyFile), 0o700) == 0)
        #expect(cache.read(CertCache.accountKeyFile) == nil)
        #expect(!cache.isMissing(CertCache.accountKeyFile))
    }

    @Test func writesAreAtomicPrivateAndReadsBounded() {
        let base = TempDir()
        let cache = CertCache(directory: base.path)
        #expect(cache.write("x.crt", Array("one".utf8)) == nil)
        #expect(cache.write("x.crt", Array("two".utf8)) == nil)
        #expect(cache.read("x.crt") == Array("two".utf8))
        var st = stat()
        #expect(stat(cache.path("x.crt"), &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(access(cache.path("x.crt.tmp"), F_OK) != 0, "no temp file left behind")
        #expect(cache.read("missing") == nil)
        #expect(cache.write("big", [UInt8](repeating: 0x41, count: Limits.acmeMaxCertificateBytes + 1)) == nil)
        #expect(cache.read("big") == nil, "an oversized entry is refused, not read whole")
        #expect(cache.write("no/such/dir", [1]) != nil)
    }
}
