import CEpoll

import RelaySystem

/// Says in words what is wrong with a `--tls-cert`/`--tls-key` file OpenSSL refused: missing or
/// unreadable, not PEM, the two files swapped, a key that does not match the certificate.
/// OpenSSL's own reason stays in the message after these words (`TLSError.description`).
/// Runs only after a load failed, so the files are read a second time only on that path.
package enum TLSFileCheck {
    /// Read at most this much of a file to find its PEM labels (RFC 7468 §2); a certificate
    /// chain is a few KiB.
    package static let maxBytes = 1 << 20

    /// What a file holds, as far as the diagnosis needs to know.
    package enum Content: Equatable {
        case unreadable(String)  // strerror text
        case empty
        case notPEM
        /// The labels of its `-----BEGIN <label>-----` lines, in order.
        case pem([String])

        package var hasCertificate: Bool { labels.contains("CERTIFICATE") }
        package var hasPrivateKey: Bool { labels.contains { $0.hasSuffix("PRIVATE KEY") } }
        package var labels: [String] { if case .pem(let l) = self { l } else { [] } }
    }

    /// Why `SSL_CTX_use_certificate_chain_file(certFile)` failed, or nil when the file looks right.
    package static func explainCertificate(certFile: String, keyFile: String) -> String? {
        let cert = contents(of: certFile)
        if let common = explainUnusable(cert, role: "certificate") { return common }
        if !cert.hasCertificate && cert.hasPrivateKey {
            let key = contents(of: keyFile)
            if key.hasCertificate && !key.hasPrivateKey {
                return "--tls-cert and --tls-key look swapped: this file holds a private key and \(keyFile) a certificate"
            }
            return "holds a private key, not a certificate (--tls-cert wants the certificate chain, e.g. fullchain.pem)"
        }
        if !cert.hasCertificate {
            return "holds no certificate (PEM blocks: \(cert.labels.joined(separator: ", ")))"
        }
        return "the certificate does not parse"
    }

    /// Why loading or checking `keyFile` failed. `reason` is OpenSSL's: a mismatch with the
    /// certificate is reported by the X509 library whichever call noticed it.
    package static func explainKey(keyFile: String, certFile: String, reason: String) -> String? {
        if reason.hasSuffix("key values mismatch") || reason.hasSuffix("key type mismatch") {
            return "the private key does not match the certificate in \(certFile)"
        }
        let key = contents(of: keyFile)
        if let common = explainUnusable(key, role: "key") { return common }
        if !key.hasPrivateKey && key.hasCertificate {
            return "holds a certificate, not a private key (--tls-key wants the key, e.g. privkey.pem)"
        }
        if key.labels.contains("ENCRYPTED PRIVATE KEY") {
            return "the private key is encrypted; give an unencrypted key (openssl pkey -in FILE -out NEWFILE)"
        }
        if !key.hasPrivateKey {
            return "holds no private key (PEM blocks: \(key.labels.joined(separator: ", ")))"
        }
        return "the private key does not parse"
    }

    private static func explainUnusable(_ content: Content, role: String) -> String? {
        switch content {
        case .unreadable(let why): "cannot read the \(role) file: \(why)"
        case .empty: "the \(role) file is empty"
        case .notPEM: "not a PEM file (no -----BEGIN line)"
        case .pem: nil
        }
    }

    package static func contents(of path: String) -> Content {
        let file = FileDescriptor(pyry_open(path, O_RDONLY | O_CLOEXEC, 0))
        guard file.isOpen else { return .unreadable(String(cString: strerror(pyry_errno()))) }
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16_384)
        while bytes.count < maxBytes {
            let n = buf.withUnsafeMutableBytes { read(file.raw, $0.baseAddress, min($0.count, maxBytes - bytes.count)) }
            if n < 0 {
                let e = pyry_errno()
                if e == EINTR { continue }
                return .unreadable(String(cString: strerror(e)))  // e.g. EISDIR
            }
            if n == 0 { break }
            bytes.append(contentsOf: buf[0..<n])
        }
        return classify(bytes)
    }

    /// RFC 7468 §2: `-----BEGIN label-----`; the label is what tells a key from a certificate.
    package static func classify(_ bytes: [UInt8]) -> Content {
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) { return .empty }
        let begin = Array("-----BEGIN ".utf8), dashes = Array("-----".utf8)
        var labels: [String] = []
        var i = 0
        while i + begin.count <= bytes.count {
            guard bytes[i..<(i + begin.count)].elementsEqual(begin) else {
                i += 1
                continue
            }
            let start = i + begin.count
            var end = start
            while end < bytes.count, bytes[end] != 0x0A, !bytes[end..<min(end + 5, bytes.count)].elementsEqual(dashes) {
                end += 1
            }
            labels.append(String(decoding: bytes[start..<end], as: UTF8.self))
            i = end
        }
        return labels.isEmpty ? .notPEM : .pem(labels)
    }
}
