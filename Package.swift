// swift-tools-version:6.0
import PackageDescription

/// A layer of the relay library: the folder `Sources/Relay/<folder>` as its own module.
/// Cross-module optimization makes the layers' small functions (syscall wrappers, buffer and
/// parser accessors) inlinable into the layers above, as they were in one module.
func layer(_ name: String, _ folder: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(
        name: name, dependencies: dependencies, path: "Sources/Relay/\(folder)",
        swiftSettings: [
            .unsafeFlags(["-enforce-exclusivity=unchecked"]),
            .unsafeFlags(["-cross-module-optimization"], .when(configuration: .release)),
        ])
}

let package = Package(
    name: "pyrycode-relay",
    products: [
        .executable(name: "pyrycode-relay", targets: ["pyrycode-relay"]),
        .executable(name: "relay-bench", targets: ["relay-bench"]),
    ],
    dependencies: [
        // relay-bench only: latency percentiles and its command line.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // Kernel interfaces: epoll, eventfd, timerfd, signalfd, sockets.
        .systemLibrary(name: "CEpoll", path: "Sources/CEpoll"),
        // OpenSSL 3 and zlib.
        .systemLibrary(
            name: "CTLS", path: "Sources/CTLS", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev", "zlib1g-dev"])]),
        // The relay library: one target per layer, each a folder of Sources/Relay, each depending
        // only on layers below it (docs/architecture.md, "Layers").
        layer("RelaySystem", "System", ["CEpoll"]),
        layer("RelayReactor", "Reactor", ["RelaySystem", "CEpoll"]),
        // Per-byte kernels of the data path (UTF-8, JSON string scan, unmask, copy): scalar C,
        // SSE2 and AVX2, the best chosen once at load time. DWARF 4: valgrind 3.19 (callgrind,
        // the regression gate) cannot read clang's default DWARF 5.
        .target(name: "CRelaySIMD", path: "Sources/Relay/SIMD", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        layer("RelayCodecs", "Codecs", ["CRelaySIMD", "CTLS"]),
        layer("RelayLog", "Log", ["RelayReactor", "RelaySystem", "RelayCodecs", "CEpoll"]),
        layer("RelayTransport", "Transport", ["RelayLog", "RelayReactor", "RelaySystem", "RelayCodecs", "CEpoll", "CTLS"]),
        layer("RelayCore", "Core", ["RelayCodecs", "RelaySystem", "CRelaySIMD", "CTLS"]),
        layer("RelayPush", "Push", ["RelayCore", "RelayTransport", "RelayLog", "RelayReactor", "RelaySystem", "RelayCodecs", "CEpoll", "CTLS"]),
        layer("RelayACME", "ACME", ["RelayTransport", "RelayLog", "RelayReactor", "RelaySystem", "RelayCodecs", "CEpoll", "CTLS"]),
        layer("Relaying", "Relaying", [
            "RelayCore", "RelayPush", "RelayTransport", "RelayLog", "RelayReactor", "RelaySystem", "RelayCodecs", "CEpoll",
        ]),
        layer("RelayOperations", "Operations", [
            "Relaying", "RelayACME", "RelayCore", "RelayPush", "RelayTransport", "RelayLog", "RelayReactor",
            "RelaySystem", "RelayCodecs", "CEpoll", "CTLS",
        ]),
        .executableTarget(name: "pyrycode-relay", dependencies: ["RelayOperations"]),
        // Test-only: an RFC 6455 echo server on our WebSocket layer, for Autobahn|Testsuite.
        .executableTarget(name: "ws-echo", dependencies: ["RelayOperations"]),
        // libFuzzer targets; built with -sanitize=fuzzer by scripts/fuzz.sh, stubs otherwise. They
        // share the driver glue (FuzzSupport).
        .target(name: "FuzzSupport"),
        .executableTarget(name: "fuzz-http", dependencies: ["RelayOperations", "FuzzSupport"]),
        .executableTarget(name: "fuzz-frame", dependencies: ["RelayOperations", "FuzzSupport"]),
        .executableTarget(name: "fuzz-envelope", dependencies: ["RelayOperations", "FuzzSupport"]),
        .executableTarget(name: "fuzz-proxy", dependencies: ["RelayOperations", "CEpoll", "FuzzSupport"]),
        .executableTarget(name: "fuzz-dns", dependencies: ["RelayOperations", "FuzzSupport"]),
        // The bundled load tool (docs/benchmarks.md): real protocol, epoll-driven, plus a `floor` forwarder.
        .executableTarget(
            name: "relay-bench",
            dependencies: [
                "RelayOperations", "CEpoll", "CTLS", "CRelaySIMD",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "RelayTests", dependencies: ["RelayOperations", "Relaying", "RelayACME", "RelayPush", "RelayCore", "RelayTransport", "RelayLog", "RelayCodecs", "RelayReactor", "RelaySystem", "CEpoll", "CRelaySIMD"]),
    ]
)
