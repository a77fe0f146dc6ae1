import Foundation
import Kiln
import KilnTooling
import KilnFrontends
import KilnReference
import Testing
import KilnTestSupport
@testable import KilnPasses

/// Shape inference checked against what kiln.reference actually computes on every ONNX backend node
/// test (and the pytorch-converted, pytorch-operator and simple cases): each model's declared output types and value_info are dropped, inference runs, and every
/// value of the main graph (outputs and intermediates) is compared with the tensor the reference
/// backend produces on the case's first data set.
@Suite struct ShapeInferenceConformanceTests {
    /// What one comparison run found.
    struct Tally {
        var cases = 0, notImported = 0, notRun = 0
        var fullyKnown = 0, rankChecked = 0, dtypeChecked = 0, unknown = 0
        var mismatches: [String] = []
        var inferenceErrors: [String] = []
        /// Values not fully known, by the op that produced them.
        var partialByOp: [String: Int] = [:]
    }

    /// The number in a test data file name (`input_12.pb` → 12).
    static func index(of file: String) -> Int {
        Int(file.drop(while: { !$0.isNumber }).prefix(while: { $0.isNumber })) ?? 0
    }

    /// Runs one case folder: inference on the stripped graph, then the reference on a graph that
    /// also returns every intermediate value; compares the two.
    static func check(directory: String, name: String, tally: inout Tally) {
        guard let model = try? Kiln.importONNX(path: "\(directory)/model.onnx") else {
            tally.notImported += 1
            return
        }
        var stripped = model.graph
        stripped.valueTypes = [:]
        for i in stripped.outputs.indices { stripped.outputs[i].type = nil }
        do {
            _ = try ShapeInference().run(&stripped, context: PassContext())
        } catch {
            tally.inferenceErrors.append("\(name): \(error)")
            return
        }
        // Every value of the main graph becomes an output of the graph the reference runs.
        var exposed = model.graph
        var seen = Set(exposed.outputs.map(\.name))
        for node in exposed.nodes {
            for output in node.outputs where !output.isEmpty && !seen.contains(output) {
                exposed.outputs.append(Value(name: output))
                seen.insert(output)
            }
        }
        let outputs: [RuntimeValue]
        do {
            let session = try Session(model: Model(graph: exposed, opsets: model.opsets), backend: ReferenceBackend())
            let folder = "\(directory)/test_data_set_0"
            let files = try FileSystem.list(folder)
            let feeds = session.requiredInputs
            var inputs: [String: RuntimeValue] = [:]
            let importer = ONNXImporter()
            for (i, file) in files.filter({ $0.hasPrefix("input_") }).sorted(by: { index(of: $0) < index(of: $1) }).enumerated() {
                guard i < feeds.count else { break }
                inputs[feeds[i].name] = try importer.decodeValue(bytes: FileSystem.read("\(folder)/\(file)"), type: feeds[i].type)
            }
            outputs = try session.runOrdered(inputs)
        } catch {
            tally.notRun += 1
            return
        }
        tally.cases += 1
        var symbols: [String: Int] = [:]
        var producer: [String: String] = [:]
        for node in exposed.nodes { for output in node.outputs { producer[output] = node.op.description } }
        for (value, actual) in zip(exposed.outputs, outputs) {
            guard case .tensor(let tensor) = actual else { continue }
            let type = stripped.type(of: value.name)
            if type?.tensorType?.fixedShape == nil { tally.partialByOp[producer[value.name] ?? "?", default: 0] += 1 }
            guard let type else {
                tally.unknown += 1
                continue
            }
            guard let inferred = type.tensorType else {
                tally.mismatches.append("\(name): '\(value.name)' inferred \(type), actually a tensor \(tensor.dtype)\(tensor.shape)")
                continue
            }
            tally.dtypeChecked += 1
            if inferred.dtype != tensor.dtype {
                tally.mismatches.append("\(name): '\(value.name)' inferred \(inferred), actual \(tensor.dtype)\(tensor.shape)")
                continue
            }
            guard let shape = inferred.shape else { continue }
            tally.rankChecked += 1
            if shape.count != tensor.rank {
                tally.mismatches.append("\(name): '\(value.name)' inferred \(inferred), actual \(tensor.dtype)\(tensor.shape)")
                continue
            }
            for (d, actual) in zip(shape, tensor.shape) {
                if let v = d.value, v != actual {
                    tally.mismatches.append("\(name): '\(value.name)' inferred \(inferred), actual \(tensor.dtype)\(tensor.shape)")
                    break
                }
                // A symbol stands for one size throughout a run.
                if case .symbol(let symbol) = d, symbols.updateValue(actual, forKey: symbol).map({ $0 != actual }) == true {
                    tally.mismatches.append("\(name): symbol '\(symbol)' is \(actual) in '\(value.name)' but was \(symbols[symbol]!) elsewhere")
                }
            }
            if inferred.fixedShape != nil { tally.fullyKnown += 1 }
        }
    }

    @Test(.enabled(if: TestData.onnxBackendTests != nil, TestData.onnxBackendTestsMissing))
    func inferredTypesMatchTheReferenceOnONNXBackendTests() throws {
        let base = try #require(TestData.onnxBackendTests)
        try #require(FileSystem.isDirectory("\(base)/node"), "no ONNX backend node tests at \(base)/node")
        var tally = Tally()
        let clock = ContinuousClock()
        let start = clock.now
        for folder in ["node", "pytorch-converted", "pytorch-operator", "simple"] where FileSystem.isDirectory("\(base)/\(folder)") {
            for name in try FileSystem.list("\(base)/\(folder)").sorted() {
                let directory = "\(base)/\(folder)/\(name)"
                guard FileSystem.exists("\(directory)/model.onnx"), FileSystem.isDirectory("\(directory)/test_data_set_0") else { continue }
                Self.check(directory: directory, name: "\(folder)/\(name)", tally: &tally)
            }
        }
        print("""
            ShapeInferenceConformanceTests: \(tally.cases) cases run (\(tally.notImported) not importable, \
            \(tally.notRun) not runnable on kiln.reference) in \(clock.now - start); tensor values: \
            \(tally.fullyKnown) with fully known types, \(tally.rankChecked) with a known rank, \
            \(tally.dtypeChecked) with a known element type, \(tally.unknown) left unknown; \
            \(tally.mismatches.count) mismatches, \(tally.inferenceErrors.count) inference errors
            """)
        let partial = tally.partialByOp.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
        print("ShapeInferenceConformanceTests: not fully known, by op: "
              + partial.prefix(40).map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        for message in tally.inferenceErrors.prefix(40) { Issue.record("inference failed: \(message)") }
        for message in tally.mismatches.prefix(60) { Issue.record("mismatch: \(message)") }
        #expect(tally.mismatches.isEmpty)
        #expect(tally.inferenceErrors.isEmpty)
        #expect(tally.fullyKnown >= 2_000, "only \(tally.fullyKnown) fully known values were checked")
        #expect(tally.rankChecked >= tally.fullyKnown)
    }

    /// Every node-test model with its int attributes, then its small int64 constants, then its input
    /// dims replaced by extreme values: inference either succeeds or throws a `KilnError`, and never traps.
    @Test(.enabled(if: TestData.onnxBackendTests != nil, TestData.onnxBackendTestsMissing))
    func mutatedModelsNeverCrashInference() throws {
        let base = try #require(TestData.onnxBackendTests)
        try #require(FileSystem.isDirectory("\(base)/node"), "no ONNX backend node tests at \(base)/node")
        let extremes = [Int.max, Int.min, -1, 0, 1 << 40, -(1 << 40), 3]
        var runs = 0, rejected = 0
        for name in try FileSystem.list("\(base)/node").sorted() {
            guard let model = try? Kiln.importONNX(path: "\(base)/node/\(name)/model.onnx") else { continue }
            for extreme in extremes {
                for mode in 0..<3 {
                    var graph = model.graph
                    if mode == 2 {
                        // Input dims: huge, zero or small.
                        for i in graph.inputs.indices {
                            guard case .tensor(let t)? = graph.inputs[i].type, let shape = t.shape else { continue }
                            let dim = extreme == Int.min ? Int.max : abs(extreme)
                            graph.inputs[i].type = .tensor(TensorType(t.dtype, shape.map { _ in .fixed(dim) }))
                        }
                    } else if mode == 1 {
                        for (key, tensor) in graph.initializers where tensor.dtype == .int64 && tensor.count <= 16 {
                            graph.initializers[key] = Tensor(dtype: .int64, shape: tensor.shape,
                                                             int64s: Array(repeating: Int64(extreme), count: tensor.count))
                        }
                    } else {
                        for i in graph.nodes.indices {
                            for (key, attribute) in graph.nodes[i].attributes {
                                switch attribute {
                                case .int: graph.nodes[i].attributes[key] = .int(extreme)
                                case .ints(let v): graph.nodes[i].attributes[key] = .ints(Array(repeating: extreme, count: v.count))
                                default: break
                                }
                            }
                        }
                    }
                    runs += 1
                    do {
                        _ = try ShapeInference().run(&graph, context: PassContext())
                    } catch let error as KilnError {
                        #expect(error.code == .invalidModel, "\(name): \(error)")
                        rejected += 1
                    }
                }
            }
        }
        print("ShapeInferenceConformanceTests: \(runs) mutated models inferred, \(rejected) rejected with invalidModel")
        #expect(runs >= 30_000)
    }
}
