import Testing
@testable import RelayOperations

/// The boot steps of docs/operations.md § Boot order stop with the documented exit code and text.
@Suite struct BootStepsTests {
    /// Where step 1 stops for `arguments`; nil when it goes on.
    private func flagsStop(_ arguments: [String]) -> BootStop? {
        do throws(BootStop) { _ = try RelayApp.parseFlags(arguments) } catch { return error }
        return nil
    }

    @Test func helpAndVersionStopWithExitZeroOnStdout() throws {
        let version = try #require(flagsStop(["--version"]))
        #expect(version.code == 0 && version.text == RelayConfig.version + "\n")
        let help = try #require(flagsStop(["--help"]))
        #expect(help.code == 0 && help.text.contains("--insecure-listen"))
    }

    @Test func aBadFlagIsRefusedWithExitTwoAndOneLineBeforeTheUsageHint() throws {
        let refused = try #require(flagsStop(["--no-such-flag"]))
        #expect(refused.code == 2)
        let lines = refused.text.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[0].hasPrefix("pyrycode-relay: ") && lines[0].contains("no-such-flag"))
        #expect(lines[1] == "run pyrycode-relay --help for usage" && lines[2].isEmpty)
    }

    @Test func validFlagsGoOnToTheNextStep() throws {
        let config = try RelayApp.parseFlags(["--insecure-listen", "127.0.0.1:8080"])
        #expect(config.insecureListen?.description == "127.0.0.1:8080")
    }

    @Test func refusalsExitTwoAndFailuresExitOneEachOneLine() {
        #expect(BootStop.refused("x").code == 2 && BootStop.refused("x").text == "x\n")
        #expect(BootStop.failed("y").code == 1 && BootStop.failed("y").text == "y\n")
    }
}
