import RelayCodecs

/// One request of the outbound HTTPS client (HTTPSClient.swift).
public struct HTTPSRequest: Sendable {
    public var method: String                  // "POST"
    public var url: HTTPSURL
    /// The client adds Host, Content-Length, Connection: keep-alive and User-Agent when absent.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, url: HTTPSURL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    public static let userAgent = "pyrycode-relay"

    /// The HTTP/1.1 message (RFC 9112 §3, §6.2): request line, the caller's headers, then the ones
    /// the client supplies, the body framed by Content-Length. nil when the method is not a token
    /// or a header name/value could split the message (CR, LF, NUL: request smuggling, RFC 9112 §11).
    package func serialized() -> [UInt8]? {
        guard !method.isEmpty, method.utf8.allSatisfy(HTTPGrammar.isTokenChar) else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(256 + body.count)
        out += "\(method) \(url.path) HTTP/1.1\r\n".utf8
        var has = (host: false, connection: false, agent: false)
        for (name, value) in headers {
            guard !name.isEmpty, name.utf8.allSatisfy(HTTPGrammar.isTokenChar),
                  value.utf8.allSatisfy(HTTPGrammar.isFieldValueByte) else { return nil }
            switch name.lowercased() {
            case "host": has.host = true
            case "content-length": return nil  // the client frames the body itself
            case "transfer-encoding": return nil
            case "connection": has.connection = true
            case "user-agent": has.agent = true
            default: break
            }
            out += "\(name): \(value)\r\n".utf8
        }
        if !has.host { out += "Host: \(url.hostHeader)\r\n".utf8 }
        // RFC 9110 §8.6: a body-less GET/HEAD needs no Content-Length; every other request says its length.
        if !(body.isEmpty && (method == "GET" || method == "HEAD")) { out += "Content-Length: \(body.count)\r\n".utf8 }
        if !has.connection { out += "Connection: keep-alive\r\n".utf8 }
        if !has.agent { out += "User-Agent: \(HTTPSRequest.userAgent)\r\n".utf8 }
        out += "\r\n".utf8
        out += body
        return out
    }
}

public struct HTTPSResponse: Equatable, Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]   // names lowercased
    public var body: [UInt8]                             // whole body (Content-Length or chunked), ≤ maxResponseBytes

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (a: HTTPSResponse, b: HTTPSResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.headers.count == b.headers.count
            && zip(a.headers, b.headers).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// The first header of that name (case-insensitive), nil when absent.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }
}

public enum HTTPSFailure: Error, Equatable, Sendable {
    case resolve            // no address for the host (DNS failure or timeout)
    case connect            // every address refused / unreachable / connect timed out
    case tls(String)        // handshake failed, incl. certificate or host-name verification (short fixed text)
    case timeout            // the per-call deadline passed
    case responseTooLarge   // head + body beyond maxResponseBytes
    case malformedResponse
    case closed             // the server closed before a whole response
    case invalidRequest     // a method or header that cannot be sent as is (CR/LF/NUL, Content-Length given)
}

/// The seam the push service uses (tests of the push logic may fake it).
public protocol HTTPSSending: AnyObject {
    /// Completion runs on the reactor thread, exactly once, never synchronously inside send().
    func send(_ request: HTTPSRequest, completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void)
}
