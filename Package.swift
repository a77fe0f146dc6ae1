// swift-tools-version:6.1
// Kiln: a machine-learning model compiler and runtime.
// Layering (dependencies point down only): KilnIR ← KilnFrontends / KilnBackend ← Backends ← KilnRuntime ← Kiln ← kiln.
// No unsafeFlags here: build flags come from scripts/ so that this package can be used as a dependency.
import PackageDescription

let package = Package(
    name: "Kiln",
    products: [
        .library(name: "Kiln", targets: ["Kiln"]),
        .executable(name: "kiln", targets: ["KilnCLI"]),
        // libKilnC.so: the C ABI of include/kiln/kiln.h; scripts/install installs it as libkiln.so.
        .library(name: "KilnC", type: .dynamic, targets: ["KilnC"]),
    ],
    dependencies: [
        // traits: [] keeps swift-protobuf on FoundationEssentials (no ICU in the runtime path).
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0", traits: []),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        // Ed25519 and SHA-512 for signed artifacts (BoringSSL on Linux). 4.x imports only FoundationEssentials;
        // 3.x imports full Foundation (and so ICU) into the runtime path.
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
    ],
    targets: [
        .target(name: "KilnIR"),
        .target(
            name: "KilnFrontends",
            dependencies: ["KilnIR", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Trees/README.md"]
        ),
        .target(name: "KilnPasses", dependencies: ["KilnIR"]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(
            name: "KilnFormat",
            dependencies: [
                "KilnIR", "CZstd", "CKilnChecksum", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "KilnBackend",
            dependencies: ["KilnIR"]
        ),
        // The C plugin host (include/kiln/kiln_plugin.h): kept out of KilnBackend so that a Swift backend
        // does not inherit SwiftProtobuf or the C headers.
        .target(
            name: "KilnPluginHost",
            dependencies: ["KilnIR", "KilnBackend", "KilnFormat", "CKilnABI", .product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .target(
            name: "KilnReference",
            dependencies: ["KilnIR", "KilnBackend"],
            path: "Sources/Backends/KilnReference",
            exclude: ["README.md"]
        ),
        .target(name: "CKilnKernels", path: "Sources/CKilnKernels"),
        .target(name: "CKilnChecksum", path: "Sources/CKilnChecksum"),
        .target(
            name: "KilnCPU",
            dependencies: ["KilnIR", "KilnBackend", "CKilnKernels"],
            path: "Sources/Backends/KilnCPU",
            exclude: ["README.md"]
        ),
        // kiln.gpu: OpenCL kernels; the OpenCL library is opened with dlopen at run time, nothing links it.
        .target(
            name: "KilnGPU",
            dependencies: ["KilnIR", "KilnBackend"],
            path: "Sources/Backends/KilnGPU"
        ),
        .target(
            name: "KilnCompiler",
            dependencies: [
                "KilnIR", "KilnFrontends", "KilnPasses", "KilnFormat", "KilnBackend",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .target(name: "KilnRuntime", dependencies: ["KilnIR", "KilnFormat", "KilnBackend"]),
        .target(
            name: "Kiln",
            dependencies: [
                "KilnIR", "KilnFrontends", "KilnPasses", "KilnFormat", "KilnBackend", "KilnPluginHost", "KilnCompiler",
                "KilnRuntime", "KilnReference", "KilnCPU", "KilnGPU",
            ]
        ),
        // Tools for the CLI and the tests (NumPy files, the conformance runner, file helpers): not part of the SDK.
        .target(name: "KilnTooling", dependencies: ["Kiln", "KilnIR", "KilnFormat", "KilnFrontends"]),
        // kiln.dsp's kernels, HVX functional model and payload codec (plugins/dsp): a plain C target so that
        // the Swift build compiles them too. Nothing links it: the plugin itself (libkiln_dsp.so, with
        // kiln_dsp.c and protobuf-c) is built by plugins/dsp/Makefile, outside libkiln.
        .target(
            name: "KilnDSP", path: "plugins/dsp", exclude: ["tests", "Makefile", "kiln_dsp.c", ".gitignore"],
            sources: ["kernels.c", "program.c"], publicHeadersPath: "."
        ),
        .target(name: "CKilnABI", path: "Sources/CKilnABI"),
        .target(name: "KilnC", dependencies: ["Kiln", "KilnBackend", "KilnPluginHost", "KilnCompiler", "KilnFormat", "KilnFrontends", "KilnTooling", "CKilnABI"]),
        // The `kiln` command-line tool (product `kiln`; the target's name differs from `Kiln` in more than case).
        .executableTarget(
            name: "KilnCLI",
            dependencies: ["Kiln", "KilnTooling", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The libFuzzer harnesses (Fuzz/README.md): one executable, the target picked by KILN_FUZZ_TARGET.
        // scripts/fuzz builds it with -sanitize=fuzzer,address -D FUZZING in .build-fuzz; in a normal build
        // it is a small program that replays inputs, so it always compiles and costs one link.
        .executableTarget(
            name: "KilnFuzz",
            dependencies: ["Kiln", "KilnC", "CKilnABI", "KilnFrontends", "KilnPasses", "KilnTooling"],
            path: "Fuzz/KilnFuzz"
        ),
        .testTarget(name: "KilnIRTests", dependencies: ["KilnIR"]),
        // Reads Sources/ and Package.swift as text: no dependencies, so it runs even when a layer is broken.
        .testTarget(name: "KilnArchitectureTests"),
        .testTarget(name: "KilnFrontendsTests", dependencies: ["KilnFrontends", "Kiln", "KilnTestSupport"]),
        .testTarget(name: "KilnReferenceTests", dependencies: ["KilnTooling", "KilnReference", "Kiln", "KilnTestSupport"]),
        .testTarget(name: "KilnCLITests", dependencies: ["KilnTooling", "Kiln", "KilnFrontends", "KilnTestSupport"]),
        .testTarget(name: "KilnCTests", dependencies: ["KilnTooling", "Kiln", "KilnFrontends", "KilnTestSupport"], exclude: ["abi-layout.txt"]),
        .testTarget(name: "KilnCPUTests", dependencies: ["KilnTooling", "KilnCPU", "CKilnKernels", "Kiln", "KilnReference", "KilnTestSupport"]),
        .testTarget(name: "KilnGPUTests", dependencies: ["KilnTooling", "KilnGPU", "Kiln", "KilnReference", "KilnTestSupport"]),
        .testTarget(
            name: "KilnCompilerTests",
            dependencies: [
                "KilnCompiler", "Kiln", "KilnTooling", "KilnFormat", "KilnFrontends", "KilnReference", "KilnTestSupport",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),
        .testTarget(name: "KilnFormatTests", dependencies: ["KilnFormat", "CKilnChecksum", "Kiln", "KilnFrontends", "KilnTestSupport"]),
        .testTarget(name: "KilnPassesTests", dependencies: ["KilnTooling", "KilnPasses", "Kiln", "KilnFrontends", "KilnReference", "KilnTestSupport"]),
        // Shared by the test targets: ONNX model builders, seeded random data, a process runner, the paths of
        // the package and of the built products, temporary folders. A plain target, not a product.
        .target(
            name: "KilnTestSupport",
            dependencies: ["Kiln", "KilnTooling", "KilnFrontends", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            path: "Tests/KilnTestSupport"
        ),
        // Writes the golden artifact fixtures; run through scripts/make-fixtures, never by the tests.
        .executableTarget(name: "MakeFixtures", dependencies: ["Kiln", "KilnTooling", "KilnTestSupport"], path: "Tests/MakeFixtures"),
    ]
)
