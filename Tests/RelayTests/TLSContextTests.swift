import Foundation  // Process: the test CA and leaf are made with the openssl CLI, as an operator would.
import Testing
@testable import RelayTransport

/// docs/operations.md: a bad file is refused naming the file and OpenSSL's reason; a good pair loads.
@Suite struct TLSContextTests {
    /// A temp dir holding an ECDSA P-256 leaf (`leaf.crt`, `leaf.key`) signed by a throwaway CA,
    /// a second unrelated key (`other.key`) and a non-PEM file (`garbage.pem`).
    final class Material {
        let dir = TempDir()
        func path(_ name: String) -> String { dir.path + "/" + name }

        init() throws {
            let script = """
                set -e
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca
                openssl ecparam -name prime256v1 -genkey -noout -out leaf.key
                openssl req -new -key leaf.key -subj /CN=localhost -out leaf.csr
                printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > ext
                openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out leaf.crt
                openssl ecparam -name prime256v1 -genkey -noout -out other.key
                echo 'not a certificate' > garbage.pem
                rm -f leaf.csr ext ca.srl
                """
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script]
            p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationStatus == 0, "openssl CLI failed")
        }
    }

    func loadError(cert: String, key: String) -> TLSError? {
        do {
            _ = try TLSContext(certFile: cert, keyFile: key)
            return nil
        } catch {
            return error
        }
    }

    @Test func goodPairLoadsAndRotatesTicketKeys() throws {
        let m = try Material()
        let ctx = try TLSContext(certFile: m.path("leaf.crt"), keyFile: m.path("leaf.key"))
        #expect(ctx.certFile == m.path("leaf.crt"))
        try ctx.rotateTicketKeys()
    }

    @Test func missingCertificateNamesTheFile() throws {
        let m = try Material()
        let e = loadError(cert: m.path("missing.crt"), key: m.path("leaf.key"))
        #expect(e?.subject == m.path("missing.crt"))
        #expect(e?.reason.contains("No such file or directory") == true, "\(String(describing: e))")
        #expect(e?.explanation == "cannot read the certificate file: No such file or directory")
    }

    @Test func nonPEMCertificateGivesOpenSSLReason() throws {
        let m = try Material()
        let e = loadError(cert: m.path("garbage.pem"), key: m.path("leaf.key"))
        #expect(e?.subject == m.path("garbage.pem"))
        #expect(e?.reason == "PEM routines::no start line", "\(String(describing: e))")
        #expect(e?.description == m.path("garbage.pem") + ": not a PEM file (no -----BEGIN line) (OpenSSL: PEM routines::no start line)")
    }

    @Test func missingKeyNamesTheKeyFile() throws {
        let m = try Material()
        let e = loadError(cert: m.path("leaf.crt"), key: m.path("missing.key"))
        #expect(e?.subject == m.path("missing.key"))
        #expect(e?.reason.contains("No such file or directory") == true, "\(String(describing: e))")
        #expect(e?.explanation == "cannot read the key file: No such file or directory")
    }

    @Test func keyOfAnotherCertificateIsRefused() throws {
        let m = try Material()
        let e = loadError(cert: m.path("leaf.crt"), key: m.path("other.key"))
        #expect(e?.subject == m.path("other.key"))
        #expect(e?.reason.contains("key values mismatch") == true, "\(String(describing: e))")
        #expect(e?.explanation == "the private key does not match the certificate in \(m.path("leaf.crt"))")
    }

    @Test func aKeyIsNotACertificate() throws {
        let m = try Material()
        let e = loadError(cert: m.path("leaf.key"), key: m.path("leaf.key"))
        #expect(e?.subject == m.path("leaf.key"))
        #expect(e?.reason == "PEM routines::no start line", "\(String(describing: e))")
        #expect(e?.explanation == "holds a private key, not a certificate (--tls-cert wants the certificate chain, e.g. fullchain.pem)")
    }

    @Test func swappedCertificateAndKeyAreNamedAsSuch() throws {
        let m = try Material()
        let e = loadError(cert: m.path("leaf.key"), key: m.path("leaf.crt"))
        #expect(e?.subject == m.path("leaf.key"))
        #expect(e?.description == m.path("leaf.key") + ": --tls-cert and --tls-key look swapped: this file holds a private key and "
            + m.path("leaf.crt") + " a certificate (OpenSSL: PEM routines::no start line)")
    }

    @Test func aCertificateIsNotAKey() throws {
        let m = try Material()
        let e = loadError(cert: m.path("leaf.crt"), key: m.path("ca.crt"))
        #expect(e?.subject == m.path("ca.crt"))
        #expect(e?.explanation == "holds a certificate, not a private key (--tls-key wants the key, e.g. privkey.pem)")
    }

    @Test func pemLabelsAreReadFromTheBeginLines() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\n"
        #expect(TLSFileCheck.classify(Array(text.utf8)) == .pem(["CERTIFICATE", "EC PRIVATE KEY"]))
        #expect(TLSFileCheck.classify(Array(" \n\t".utf8)) == .empty)
        #expect(TLSFileCheck.classify(Array("-----BEGIN".utf8)) == .notPEM)
        #expect(TLSFileCheck.classify(Array("-----BEGIN CERTIFICATE".utf8)) == .pem(["CERTIFICATE"]))  // cut short
    }

    @Test func errorQueueIsEmptyAfterAFailure() throws {
        // A failure must not leave entries behind for the next OpenSSL call.
        let m = try Material()
        _ = loadError(cert: m.path("garbage.pem"), key: m.path("leaf.key"))
        #expect(TLSError.drain("probe", fallback: "empty").reason == "empty")
    }
}
