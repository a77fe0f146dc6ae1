#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// The libFuzzer entry points. Built with `-sanitize=fuzzer -D FUZZING` by scripts/fuzz; in a normal
// `swift build` this is a small program that runs each file named on the command line through a target
// (how a reproducer is replayed in a debugger without the fuzzer build).

/// libFuzzer's per-input callback.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let target = FuzzTarget.selected else {
        fatalError("set KILN_FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    target.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if FUZZING
/// libFuzzer's own mutator (in the fuzzer runtime).
@_silgen_name("LLVMFuzzerMutate")
func LLVMFuzzerMutate(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int) -> Int

/// libFuzzer's driver, called from `main` (SwiftPM gives every executable target its own entry point).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// The structure-aware mutator: for the ONNX targets, half of the mutations decode the ModelProto and
/// change dims, attributes, element types, edges or nodes (`ONNXMutator`); the rest, and every other
/// target's, are libFuzzer's byte-level mutations.
@_cdecl("LLVMFuzzerCustomMutator")
public func fuzzCustomMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: CUnsignedInt) -> Int {
    let target = FuzzTarget.selected
    if target == .onnx || target == .cabi, seed % 2 == 0 {
        var generator = SplitMix(seed: UInt64(seed))
        let input = [UInt8](UnsafeBufferPointer(start: data, count: size))
        if let mutated = ONNXMutator.mutate(input, using: &generator), mutated.count <= maxSize {
            mutated.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: mutated.count) }
            return mutated.count
        }
    }
    return LLVMFuzzerMutate(data, size, maxSize)
}
#endif

@main
struct KilnFuzz {
    static func main() {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOneInput($0, $1) })
        #else
        // Replays inputs without the fuzzer: KILN_FUZZ_TARGET=onnx KilnFuzz FILE...
        let files = CommandLine.arguments.dropFirst()
        guard FuzzTarget.selected != nil, !files.isEmpty else {
            print("usage: KILN_FUZZ_TARGET=\(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) KilnFuzz FILE...")
            print("(scripts/fuzz builds this with libFuzzer and runs it)")
            exit(files.isEmpty ? 0 : 2)
        }
        for file in files {
            guard let f = fopen(file, "rb") else { print("cannot open \(file)"); exit(1) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = fread(&chunk, 1, chunk.count, f)
                if n <= 0 { break }
                bytes += chunk[0..<n]
            }
            fclose(f)
            _ = bytes.withUnsafeBufferPointer { fuzzOneInput($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, $0.count) }
            print("ok \(file) (\(bytes.count) bytes)")
        }
        #endif
    }
}
