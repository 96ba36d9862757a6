import CEpoll
import RelaySystem
import RelayCodecs

/// The PROXY protocol version 2 header (haproxy `proxy-protocol.txt` §2.2), as a pure parser.
/// docs/protocol.md §3.3: with `--https-proxy-protocol` every TLS-listener connection starts with one; only
/// the `PROXY` command over TCP4/TCP6 is accepted, and its source address becomes the client IP.
/// Everything else — v1 text headers, `LOCAL`, `UNSPEC`, UDP, UNIX, malformed — is refused.
///
/// The parser never asks for more bytes than the header holds (`needMore(total:)` names the
/// exact total), so the caller can read exactly that much and leave the ClientHello in the
/// kernel for OpenSSL.
public enum ProxyProtocolV2 {
    /// The 12-byte signature (§2.2): `\r\n\r\n\0\r\nQUIT\n`.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// Signature, version/command, family/protocol, 2-byte length.
    public static let fixedLength = 16

    public enum Refusal: Equatable, Sendable {
        case badSignature      // not v2 (a v1 `PROXY TCP4 …` line, a ClientHello, garbage)
        case badVersion        // v2 signature, version nibble ≠ 2
        case local             // LOCAL command: no client address to use
        case badCommand        // neither LOCAL nor PROXY
        case unsupportedFamily // UNSPEC, UNIX, or an unknown family/transport (only TCP4/TCP6)
        case shortAddress      // length too small for the family's address block
        case tooLong           // header longer than the caller's bound
    }

    public enum Result: Equatable {
        /// Read until `total` bytes are buffered, then parse again.
        case needMore(total: Int)
        /// A valid `PROXY` header of `length` bytes whose source is `source`.
        case proxied(source: SocketAddress, length: Int)
        case refused(Refusal)
    }

    /// Parses the header at the start of `bytes`, refusing as soon as the bytes seen rule it out.
    /// A header longer than `maxLength` in total is refused from its 16 fixed bytes, before any
    /// of its TLVs is buffered.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxLength: Int = Limits.maxProxyHeaderBytes) -> Result {
        let n = bytes.count
        // §2.2: a receiver must refuse anything whose first bytes differ from the signature;
        // checking the prefix we have lets a v1 line or a ClientHello be refused at byte 0.
        for i in 0..<min(n, signature.count) where bytes[i] != signature[i] {
            return .refused(.badSignature)
        }
        if n < 13 { return .needMore(total: fixedLength) }
        let verCmd = bytes[12]
        guard verCmd >> 4 == 2 else { return .refused(.badVersion) }
        switch verCmd & 0x0F {
        case 0x0: return .refused(.local)
        case 0x1: break
        default: return .refused(.badCommand)
        }
        if n < 14 { return .needMore(total: fixedLength) }
        // High nibble: address family (1 = INET, 2 = INET6); low nibble: transport (1 = STREAM).
        let famProto = bytes[13]
        let addressBlock: Int
        switch famProto {
        case 0x11: addressBlock = 12   // src4, dst4, sport, dport
        case 0x21: addressBlock = 36   // src6, dst6, sport, dport
        default: return .refused(.unsupportedFamily)
        }
        if n < fixedLength { return .needMore(total: fixedLength) }
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        guard length >= addressBlock else { return .refused(.shortAddress) }
        let total = fixedLength + length
        guard total <= maxLength else { return .refused(.tooLong) }
        if n < total { return .needMore(total: total) }
        // TLVs after the address block are allowed and ignored (§2.2.7).
        let a = UnsafeRawBufferPointer(rebasing: bytes[fixedLength..<total])
        return .proxied(source: famProto == 0x11 ? ipv4Source(a) : ipv6Source(a), length: total)
    }

    /// src4, dst4, sport, dport: the source address and port, big-endian on the wire.
    private static func ipv4Source(_ a: UnsafeRawBufferPointer) -> SocketAddress {
        SocketAddress(address: UnsafeRawBufferPointer(rebasing: a[0..<4]), port: UInt16(a[8]) << 8 | UInt16(a[9]))
    }

    /// src6, dst6, sport, dport.
    private static func ipv6Source(_ a: UnsafeRawBufferPointer) -> SocketAddress {
        SocketAddress(address: UnsafeRawBufferPointer(rebasing: a[0..<16]), port: UInt16(a[32]) << 8 | UInt16(a[33])).unmappingIPv4
    }
}
