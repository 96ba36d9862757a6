// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "pyrycode-relay",
    products: [
        .executable(name: "pyrycode-relay", targets: ["pyrycode-relay"]),
        .executable(name: "relay-bench", targets: ["relay-bench"]),
        .library(name: "Relay", targets: ["Relay"]),
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
        // Per-byte kernels of the data path (UTF-8, JSON string scan, unmask, copy): scalar C,
        // SSE2 and AVX2, the best chosen once at load time. DWARF 4: valgrind 3.19 (callgrind,
        // the regression gate) cannot read clang's default DWARF 5.
        .target(name: "CRelaySIMD", path: "Sources/Relay/SIMD", cSettings: [.unsafeFlags(["-gdwarf-4"])]),
        .target(
            name: "Relay", dependencies: ["CEpoll", "CTLS", "CRelaySIMD"], exclude: ["SIMD"],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        .executableTarget(name: "pyrycode-relay", dependencies: ["Relay"]),
        // Test-only: an RFC 6455 echo server on our WebSocket layer, for Autobahn|Testsuite.
        .executableTarget(name: "ws-echo", dependencies: ["Relay"]),
        // libFuzzer targets; built with -sanitize=fuzzer by scripts/fuzz.sh, stubs otherwise.
        .executableTarget(name: "fuzz-http", dependencies: ["Relay"]),
        .executableTarget(name: "fuzz-frame", dependencies: ["Relay"]),
        .executableTarget(name: "fuzz-envelope", dependencies: ["Relay"]),
        .executableTarget(name: "fuzz-proxy", dependencies: ["Relay", "CEpoll"]),
        .executableTarget(name: "fuzz-dns", dependencies: ["Relay"]),
        // The bundled load tool (docs/benchmarks.md): real protocol, epoll-driven, plus a `floor` forwarder.
        .executableTarget(
            name: "relay-bench",
            dependencies: [
                "Relay", "CEpoll", "CTLS", "CRelaySIMD",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "RelayTests", dependencies: ["Relay", "CEpoll", "CRelaySIMD"]),
    ]
)
