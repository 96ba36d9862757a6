/// WebSocket close status codes (RFC 6455 §7.4) and the relay's application codes (docs/protocol.md §5–§7).
public struct CloseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }

    public static let normal = CloseCode(1000)
    public static let goingAway = CloseCode(1001)
    public static let protocolError = CloseCode(1002)
    public static let unsupportedData = CloseCode(1003)
    public static let noStatus = CloseCode(1005)        // never sent on the wire
    public static let abnormal = CloseCode(1006)        // never sent on the wire
    public static let invalidPayload = CloseCode(1007)
    public static let policyViolation = CloseCode(1008)
    public static let messageTooBig = CloseCode(1009)
    public static let mandatoryExtension = CloseCode(1010)
    public static let internalError = CloseCode(1011)

    // Relay application codes (docs/protocol.md §5).
    public static let noServer = CloseCode(4404)
    public static let alreadyClaimed = CloseCode(4409)
    public static let tooManyPhones = CloseCode(4429)

    /// Whether a peer may send this code in a close frame (RFC 6455 §7.4.1–§7.4.2):
    /// 1000–1003, 1007–1011 (and the IANA-registered 1012–1014), 3000–4999.
    public var isValidOnWire: Bool {
        switch rawValue {
        case 1000...1003, 1007...1014, 3000...4999: return true
        default: return false
        }
    }

    public var description: String { String(rawValue) }
}
