// swift-tools-version: 6.0
//
// GreenThreads: a preemptive user-space threading kernel for Swift on Linux.
//
// Layers (data flows downward only):
//   GreenThreads (Swift: API, scheduler, sync, stacks, preemption policy)
//     -> CGreenCore (C/assembly: context switch, signal handlers, PC table)
//     -> CUnwind    (system library: libunwind, for stack traces)
// The library depends on the toolchain and its own C targets only; the
// tools may use well-kept packages.
import PackageDescription

let package = Package(
    name: "swift-green-threads",
    products: [
        .library(name: "GreenThreads", targets: ["GreenThreads"]),
        // The snapshot format alone, for a monitoring tool that reads a
        // running program's snapshots without linking the runtime.
        .library(name: "GTSnapshot", targets: ["GTSnapshot"]),
        .executable(name: "gt-demo", targets: ["gt-demo"]),
        .executable(name: "gt-bench", targets: ["gt-bench"]),
        .executable(name: "gt-ps", targets: ["gt-ps"]),
        .executable(name: "gt-fairness", targets: ["gt-fairness"]),
        .executable(name: "gt-async-demo", targets: ["gt-async-demo"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // 0.x: a minor release may break the API, so take patches only.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", .upToNextMinor(from: "0.2.0")),
        // `swift package generate-documentation` (Tools/docs.sh); a plugin
        // only: nothing of it is linked into the library or the tools.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CUnwind",
            path: "Sources/CUnwind",
            pkgConfig: "libunwind",
            providers: [.apt(["libunwind-dev"]), .yum(["libunwind-devel"])]
        ),
        .target(
            name: "CGreenCore",
            dependencies: ["CUnwind"],
            path: "Sources/CGreenCore",
            cSettings: [.define("_GNU_SOURCE")],
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("rt")]
        ),
        // The snapshot of a running kernel (threads, workers, traces, the
        // wait-for graph), Codable: shared by the library, which serves it,
        // and the tools, which read it (issue 6). Toolchain only.
        .target(
            name: "GTSnapshot",
            path: "Sources/GTSnapshot"
        ),
        .target(
            name: "GreenThreads",
            dependencies: ["CGreenCore", "CUnwind", "GTSnapshot"],
            path: "Sources/GreenThreads"
        ),
        .executableTarget(
            name: "gt-demo",
            dependencies: ["GreenThreads"],
            path: "Tools/gt-demo"
        ),
        // An async program hosting a kernel (issue 14), in Swift 6 mode.
        .executableTarget(
            name: "gt-async-demo",
            dependencies: ["GreenThreads"],
            path: "Tools/gt-async-demo",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "gt-bench",
            dependencies: [
                "GreenThreads",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                "GTToolSupport",
            ],
            path: "Tools/gt-bench"
        ),
        // What the benchmark tools record beside their results, shared.
        .target(
            name: "GTToolSupport",
            path: "Tools/GTToolSupport"
        ),
        .executableTarget(
            name: "gt-fairness",
            dependencies: [
                "GreenThreads",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "GTToolSupport",
            ],
            path: "Tools/gt-fairness"
        ),
        // The I/O benchmark's server: thread-per-connection HTTP/1.1 on
        // GreenTCP (Tools/peers/http-bench.sh runs it beside NIO and Go).
        .executableTarget(
            name: "gt-http",
            dependencies: ["GreenThreads", "CGreenCore"],
            path: "Tools/examples/gt-http"
        ),
        .executableTarget(
            name: "gt-ps",
            dependencies: [
                "GTSnapshot",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Tools/gt-ps"
        ),
        // Examples (Tools/examples/README.md): small programs a new user
        // reads first; the tests run each one and check what it prints.
        .executableTarget(
            name: "gt-example-pipeline",
            dependencies: ["GreenThreads"],
            path: "Tools/examples/pipeline"
        ),
        .executableTarget(
            name: "gt-example-pathfinder",
            dependencies: ["GreenThreads"],
            path: "Tools/examples/pathfinder"
        ),
        .executableTarget(
            name: "gt-example-jobs",
            dependencies: ["GreenThreads"],
            path: "Tools/examples/jobs"
        ),
        // The test host: every test that starts a kernel or arms signals runs
        // one scenario of this executable in a child process with a timeout.
        // What both test hosts give their scenarios (check, options).
        .target(
            name: "GTHostSupport",
            path: "Tests/GTHostSupport"
        ),
        // Interposes pthread_mutex_lock in the test host to check that the
        // kernel lock's holder never waits for a lock a green thread may hold.
        .target(
            name: "GTLockAudit",
            dependencies: ["CGreenCore"],
            path: "Tests/GTLockAudit"
        ),
        .executableTarget(
            name: "gt-test-host",
            dependencies: ["GreenThreads", "CGreenCore", "GTHostSupport", "GTSnapshot", "GTLockAudit"],
            path: "Tests/GTTestHost",
            // Explicit, like gt-async-host: shared state goes through
            // Sendable boxes (SharedState.swift), checked by the compiler.
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        // The async bridge's scenarios (issue 14), in Swift 6 language mode
        // like gt-test-host: shared state goes through GreenLocked and
        // atomics, checked by the compiler.
        .executableTarget(
            name: "gt-async-host",
            dependencies: ["GreenThreads", "GTHostSupport"],
            path: "Tests/GTAsyncHost",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .testTarget(
            name: "GreenThreadsTests",
            dependencies: ["GreenThreads", "GTSnapshot"],
            path: "Tests/GreenThreadsTests"
        ),
    ]
)
