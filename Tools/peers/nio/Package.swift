// swift-tools-version: 5.9
//
// The SwiftNIO peer of the I/O benchmark (Tools/peers/http-bench.sh), in its
// own package so that the main package never builds NIO.
import PackageDescription

let package = Package(
    name: "gt-peer-nio",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "nio-http",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/nio-http"
        ),
    ]
)
