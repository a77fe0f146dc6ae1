import Kiln
import KilnFrontends
import KilnIR

/// One ONNX backend test case (a folder with `model.onnx` and `test_data_set_*/{input,output}_N.pb`),
/// run through Kiln and compared with the expected outputs.
public struct ConformanceCase {
    /// The case's folder.
    public let directory: String

    /// The case in `directory`.
    public init(directory: String) { self.directory = directory }

    /// The result of a case on `backend` alone (no fallback: a node it cannot run fails the case, naming
    /// the node): nil on success, else why it failed.
    ///
    /// With `viaArtifact` (an optimization level), the model is compiled to a `.kiln` artifact in memory at
    /// that level, loaded back from the bytes and run from there, so the case checks the compiler, the
    /// container and the runtime's artifact path as well.
    public func run(backend: String, viaArtifact optLevel: Int? = nil, rtol: Double = 1e-3, atol: Double = 1e-7) -> String? {
        do {
            let session: Session
            if let optLevel {
                let output = try Kiln.compile(onnxPath: "\(directory)/model.onnx",
                                              options: Compiler.Options(optLevel: optLevel, backends: [backend], fallback: .deny))
                session = try Kiln.load(artifactBytes: output.bytes)
            } else {
                session = try Kiln.load(path: "\(directory)/model.onnx", backend: backend)
            }
            let sets = try FileSystem.list(directory).filter { $0.hasPrefix("test_data_set_") }
            guard !sets.isEmpty else { return "no test data sets" }
            let importer = ONNXImporter()
            let feeds = session.requiredInputs
            for set in sets {
                let folder = "\(directory)/\(set)"
                let files = try FileSystem.list(folder)
                var inputs: [String: RuntimeValue] = [:]
                let inputFiles = files.filter { $0.hasPrefix("input_") }.sorted { index(of: $0) < index(of: $1) }
                for (i, file) in inputFiles.enumerated() {
                    guard i < feeds.count else { return "\(set): more input files than model inputs" }
                    inputs[feeds[i].name] = try importer.decodeValue(bytes: FileSystem.read("\(folder)/\(file)"), type: feeds[i].type)
                }
                let outputs = try session.runOrdered(inputs)
                let outputFiles = files.filter { $0.hasPrefix("output_") }.sorted { index(of: $0) < index(of: $1) }
                for (i, file) in outputFiles.enumerated() {
                    guard i < outputs.count else { return "\(set): model has fewer outputs than expected" }
                    let name = session.outputs[i].name
                    let expected = try importer.decodeValue(bytes: FileSystem.read("\(folder)/\(file)"), type: session.outputs[i].type ?? expectedType(outputs[i]))
                    if let problem = Comparison.difference(expected: expected, actual: outputs[i], rtol: rtol, atol: atol) {
                        return "output '\(name)': \(problem)"
                    }
                }
            }
            return nil
        } catch let error as KilnError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    private func index(of file: String) -> Int {
        Int(file.drop(while: { !$0.isNumber }).prefix(while: { $0.isNumber })) ?? 0
    }

    private func expectedType(_ value: RuntimeValue) -> ValueType? {
        switch value {
        case .tensor: nil
        case .sequence(_, let e): e.map { .sequence($0) } ?? .sequence(.tensor(TensorType(.float32, nil)))
        case .optional(_, let e): e.map { .optional($0) } ?? .optional(.tensor(TensorType(.float32, nil)))
        case .map: nil
        }
    }
}

/// Comparison of run-time values with NumPy's `assert_allclose` rule: |actual − expected| ≤ atol + rtol·|expected|.
public enum Comparison {
    /// nil when `actual` matches `expected`, else what differs.
    public static func difference(expected: RuntimeValue, actual: RuntimeValue, rtol: Double, atol: Double) -> String? {
        switch (expected, actual) {
        case (.tensor(let e), .tensor(let a)):
            return difference(expected: e, actual: a, rtol: rtol, atol: atol)
        case (.sequence(let es, _), .sequence(let as_, _)):
            guard es.count == as_.count else { return "sequence of \(as_.count) elements, expected \(es.count)" }
            for (i, (e, a)) in zip(es, as_).enumerated() {
                if let d = difference(expected: e, actual: a, rtol: rtol, atol: atol) { return "element \(i): \(d)" }
            }
            return nil
        case (.optional(let e, _), .optional(let a, _)):
            switch (e, a) {
            case (nil, nil): return nil
            case (let e?, let a?): return difference(expected: e, actual: a, rtol: rtol, atol: atol)
            default: return "optional is \(a == nil ? "empty" : "present"), expected \(e == nil ? "empty" : "present")"
            }
        case (.optional(let e?, _), let a), (let e, .optional(let a?, _)):
            return difference(expected: e, actual: a, rtol: rtol, atol: atol)
        default:
            return "got \(actual.summary), expected \(expected.summary)"
        }
    }

    /// nil when the tensors have the same type and shape and their values match within tolerance.
    public static func difference(expected e: Tensor, actual a: Tensor, rtol: Double, atol: Double) -> String? {
        guard e.dtype == a.dtype else { return "element type \(a.dtype), expected \(e.dtype)" }
        guard e.shape == a.shape else { return "shape \(a.shape), expected \(e.shape)" }
        switch e.dtype {
        case .string:
            let (es, as_) = (e.strings, a.strings)
            if let i = (0..<es.count).first(where: { es[$0] != as_[$0] }) { return "element \(i) is \"\(as_[i])\", expected \"\(es[i])\"" }
            return nil
        case .complex64, .complex128:
            return e.rawBytes.map(Array.init) == a.rawBytes.map(Array.init) ? nil : "complex values differ"
        case .int64, .uint64:
            let (ev, av) = (e.asInt64s(), a.asInt64s())
            if let i = (0..<ev.count).first(where: { ev[$0] != av[$0] }) { return "element \(i) is \(av[i]), expected \(ev[i])" }
            return nil
        default:
            let (ev, av) = (e.asDoubles(), a.asDoubles())
            var worst: (index: Int, excess: Double)? = nil
            for i in 0..<ev.count {
                let x = ev[i], y = av[i]
                if x.isNaN || y.isNaN {
                    if x.isNaN != y.isNaN { return "element \(i) is \(y), expected \(x)" }
                    continue
                }
                if x.isInfinite || y.isInfinite {
                    if x != y { return "element \(i) is \(y), expected \(x)" }
                    continue
                }
                let excess = abs(x - y) - (atol + rtol * abs(x))
                if excess > 0, excess > (worst?.excess ?? 0) { worst = (i, excess) }
            }
            if let worst { return "element \(worst.index) is \(av[worst.index]), expected \(ev[worst.index])" }
            return nil
        }
    }
}
