#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKilnABI
import Kiln
import KilnC
import KilnFrontends
import KilnPasses
import KilnTooling

/// The fuzz targets: each takes one input and must return (with a result or a thrown `KilnError`) for
/// every input; a crash, a trap or a sanitizer report is a bug. `scripts/fuzz NAME` picks one through
/// `KILN_FUZZ_TARGET`.
enum FuzzTarget: String, CaseIterable {
    /// ONNX bytes → `ONNXImporter.importModel(bytes:directory:)` (which canonicalizes older opsets) →
    /// shape inference → the optimization pipeline of level 2.
    case onnx
    /// `.kiln` bytes → `Artifact(bytes:)` → `model()` → `Session(artifactBytes:backends:)`.
    case artifact
    /// `.npy` bytes → `NPY.decode`.
    case npy
    /// Bytes → `kiln_model_load_memory` through the C ABI (ONNX or `.kiln`, as the bytes say).
    case cabi

    /// The target `KILN_FUZZ_TARGET` names (one of the cases), read once.
    static let selected: FuzzTarget? = {
        guard let name = getenv("KILN_FUZZ_TARGET").map({ String(cString: $0) }) else { return nil }
        return FuzzTarget(rawValue: name)
    }()

    /// Runs the target on one input. Errors are the expected outcome for bad input and are dropped.
    func run(_ bytes: UnsafeRawBufferPointer) {
        switch self {
        case .onnx:
            do {
                var model = try ONNXImporter().importModel(bytes: bytes, directory: nil)
                _ = try ShapeInference().run(&model.graph, context: PassContext())
                _ = try PassManager(level: 2).run(&model)
            } catch {}
        case .artifact:
            do {
                let array = [UInt8](bytes)
                let artifact = try Artifact(bytes: array)
                _ = try artifact.model()
                _ = try Session(artifactBytes: array, backends: Self.budgeted)
            } catch {}
        case .npy:
            _ = try? NPY.decode([UInt8](bytes))
        case .cabi:
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            var model: OpaquePointer?
            var options = kiln_load_options()
            options.struct_size = MemoryLayout<kiln_load_options>.size
            options.memory_budget_mb = UInt64(Self.memoryBudgetMB)
            if let error = kiln_model_load_memory(Self.context, base, bytes.count, &options, &model) {
                kiln_error_free(error)
            }
            kiln_model_free(model)
        }
    }

    /// The memory budget the targets that prepare graphs give kiln.cpu: half the fuzzer's 4 GB limit, as
    /// an application in a process of that size would, so a model whose plan needs more is refused by the
    /// budget (a typed error) rather than allocated.
    static let memoryBudgetMB = 2048

    /// The built-in backends with kiln.cpu's memory budget set.
    static let budgeted: BackendRegistry = {
        guard let registry = try? Kiln.backends.configured(BackendConfiguration(options: ["memory_budget_mb": "\(memoryBudgetMB)"])) else {
            fatalError("cannot configure the built-in backends")
        }
        return registry
    }()

    /// One C ABI context for every input (creating it registers the backends).
    nonisolated(unsafe) static let context: OpaquePointer? = {
        var context: OpaquePointer?
        if let error = kiln_context_create(nil, &context) {
            kiln_error_free(error)
            fatalError("kiln_context_create failed")
        }
        return context
    }()
}
