import Testing
@testable import Relay

@Suite struct SocketAddressTests {
    @Test func parsesGoListenSyntax() throws {
        #expect(try SocketAddress(parsing: "127.0.0.1:8080").description == "127.0.0.1:8080")
        #expect(try SocketAddress(parsing: ":443").description == "0.0.0.0:443")
        #expect(try SocketAddress(parsing: "[::1]:9090").description == "[::1]:9090")
        #expect(try SocketAddress(parsing: "localhost:1").port == 1)
    }

    @Test func rejectsBadAddresses() {
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:0") }
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:65536") }
        #expect(throws: SocketAddress.ParseError.badPort) { try SocketAddress(parsing: "127.0.0.1:http") }
        #expect(throws: SocketAddress.ParseError.malformed) { try SocketAddress(parsing: "garbage") }
        #expect(throws: SocketAddress.ParseError.malformed) { try SocketAddress(parsing: "::1:80") }
        #expect(throws: SocketAddress.ParseError.badHost) { try SocketAddress(parsing: "example.com:80") }
    }
}
