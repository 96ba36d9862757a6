/// The outbound HTTPS client's interface (docs/architecture.md). The implementation lands with
/// the client's own branch; this file holds the fixed types the push service codes against.

public struct HTTPSRequest: Sendable {
    public var method: String
    public var url: HTTPSURL
    /// The client adds Host, Content-Length, Connection: keep-alive, User-Agent if absent.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public init(method: String, url: HTTPSURL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }
}

public struct HTTPSResponse: Sendable {
    public var status: Int
    /// Names lowercased.
    public var headers: [(name: String, value: String)]
    /// The whole body (Content-Length or chunked), ≤ maxResponseBytes.
    public var body: [UInt8]
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

public enum HTTPSFailure: Error, Equatable, Sendable {
    case resolve
    case connect
    case tls(String)
    case timeout
    case responseTooLarge
    case malformedResponse
    case closed
}

/// The seam the push service uses (tests of the push logic may fake it).
public protocol HTTPSSending: AnyObject {
    /// Completion runs on the reactor thread, exactly once, never synchronously inside send().
    func send(_ request: HTTPSRequest, completion: @escaping (Result<HTTPSResponse, HTTPSFailure>) -> Void)
}
