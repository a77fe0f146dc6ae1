// swift-tools-version:6.1
// Kiln: a machine-learning model compiler and runtime.
// Layering (dependencies point down only): KilnIR ← KilnFrontends / KilnBackend ← Backends ← KilnRuntime ← Kiln ← kiln.
// No unsafeFlags here: build flags come from scripts/ so that this package can be used as a dependency.
import PackageDescription

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .executable(name: "kiln", targets: ["kiln"]),
        // libKilnC.so: the C ABI of include/kiln/kiln.h; scripts/install installs it as libkiln.so.
        .library(name: "KilnC", type: .dynamic, targets: ["KilnC"]),
    ],
    dependencies: [
        // traits: [] keeps swift-protobuf on FoundationEssentials (no ICU in the runtime path).
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
    ],
    targets: [
        .target(name: "KilnIR"),
        .target(
            name: "KilnFrontends",
            dependencies: ["KilnIR", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(name: "KilnPasses", dependencies: ["KilnIR"]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "KilnFormat",
            dependencies: ["KilnIR", "CZstd", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "KilnBackend",
            dependencies: ["KilnIR", "KilnFormat", "CKilnABI", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "KilnReference",
            dependencies: ["KilnIR", "KilnBackend"],
            path: "Sources/Backends/KilnReference",
            exclude: ["README.md"]
        ),
        .target(name: "CKilnKernels", path: "Sources/CKilnKernels"),
        .target(
            name: "KilnCPU",
            dependencies: ["KilnIR", "KilnBackend", "CKilnKernels"],
            path: "Sources/Backends/KilnCPU",
            exclude: ["README.md"]
        ),
        .target(
            name: "KilnCompiler",
            dependencies: [
                "KilnIR", "KilnFrontends", "KilnPasses", "KilnFormat", "KilnBackend", "KilnReference",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(name: "KilnRuntime", dependencies: ["KilnIR", "KilnFormat", "KilnBackend", "KilnReference"]),
        .target(
            name: "Kiln",
            dependencies: ["KilnIR", "KilnFrontends", "KilnBackend", "KilnCompiler", "KilnRuntime", "KilnReference", "KilnCPU"]
        ),
        .target(name: "CKilnABI", path: "Sources/CKilnABI"),
        .target(name: "KilnC", dependencies: ["Kiln", "CKilnABI"]),
        .executableTarget(
            name: "kiln",
            dependencies: ["Kiln", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "KilnIRTests", dependencies: ["KilnIR"]),
        .testTarget(name: "KilnFrontendsTests", dependencies: ["KilnFrontends", "Kiln", "KilnTestSupport"]),
        .testTarget(name: "KilnReferenceTests", dependencies: ["KilnReference", "Kiln", "KilnTestSupport"]),
        .testTarget(name: "KilnCLITests", dependencies: ["Kiln", "KilnFrontends", "KilnTestSupport"]),
        .testTarget(name: "KilnCTests", dependencies: ["Kiln", "KilnFrontends", "KilnTestSupport"], exclude: ["abi-layout.txt"]),
        .testTarget(name: "KilnCPUTests", dependencies: ["KilnCPU", "CKilnKernels", "Kiln", "KilnReference", "KilnTestSupport"]),
        .testTarget(
            name: "KilnCompilerTests",
            dependencies: [
                "KilnCompiler", "Kiln", "KilnFormat", "KilnFrontends", "KilnReference", "KilnTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(name: "KilnFormatTests", dependencies: ["KilnFormat", "Kiln", "KilnFrontends", "KilnTestSupport"]),
        .testTarget(name: "KilnPassesTests", dependencies: ["KilnPasses", "Kiln", "KilnFrontends", "KilnReference", "KilnTestSupport"]),
        // Shared by the test targets: ONNX model builders, seeded random data, a process runner, the paths of
        // the package and of the built products, temporary folders. A plain target, not a product.
        .target(
            name: "KilnTestSupport",
            dependencies: ["Kiln", "KilnFrontends", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Tests/KilnTestSupport"
        ),
        // Writes the golden artifact fixtures; run through scripts/make-fixtures, never by the tests.
        .executableTarget(name: "MakeFixtures", dependencies: ["Kiln", "KilnTestSupport"], path: "Tests/MakeFixtures"),
    ]
)
