import Foundation
import Kiln
import KilnTooling
import Testing
import KilnTestSupport
@testable import KilnReference
#if canImport(Glibc)
import Glibc
#endif

/// Every reference kernel, fed hostile one-node graphs: any element type, rank 0 to 6, empty dims, mismatched
/// shapes, absurd attribute values, missing or surplus inputs, wrong attribute kinds, sequences and maps where
/// tensors belong, broken subgraphs. Each case must end in a result or a `KilnError`; a trap kills the test
/// process, and an absurd allocation is refused by the kernels' element cap.
///
/// To find every crash in one go, run with `KILN_FUZZ_ISOLATE=1`: each op then runs in a forked child, and
/// the parent prints the op and case that crashed (or hung) and carries on with the next case.
/// `KILN_FUZZ_OPS=Add,Pad` limits the run to some ops; `KILN_FUZZ_CASES=n` changes the cases per op.
@Suite struct KernelFuzzTests {
    static let environment = ProcessInfo.processInfo.environment
    static var casesPerOp: Int { environment["KILN_FUZZ_CASES"].flatMap { Int($0) } ?? 300 }

    /// The ops to fuzz, in a fixed order.
    static var ops: [OpID] {
        let all = KernelTable.reference.kernels.keys.sorted { $0.description < $1.description }
        guard let only = environment["KILN_FUZZ_OPS"] else { return all }
        let names = Set(only.split(separator: ",").map(String.init))
        return all.filter { names.contains($0.name) || names.contains($0.description) }
    }

    /// Runs one case; true when it produced a result, false when it threw a `KilnError`.
    static func run(_ fuzzCase: FuzzCase) -> Bool {
        do {
            _ = try Interpreter(table: .reference).run(fuzzCase.graph, inputs: fuzzCase.values, parent: nil)
            return true
        } catch is KilnError {
            return false
        } catch {
            Issue.record("\(fuzzCase.summary) threw a non-Kiln error: \(error)")
            return false
        }
    }

    @Test func everyKernelEndsInAResultOrAKilnError() throws {
        if Self.environment["KILN_FUZZ_ISOLATE"] != nil {
            let ops = Dictionary(uniqueKeysWithValues: Self.ops.map { ($0.description, $0) })
            try Self.runIsolated(Self.ops.map(\.description)) { Self.randomCases(ops[$0]!) }
            return
        }
        let verbose = Self.environment["KILN_FUZZ_VERBOSE"] != nil
        var produced = 0, refused = 0
        var opsWithResults = 0
        for op in Self.ops {
            var generator = CaseGenerator(op: op)
            var any = false
            for index in 0..<Self.casesPerOp {
                let fuzzCase = generator.next()
                if verbose { print("fuzz \(op) #\(index): \(fuzzCase.summary)"); fflush(nil) }
                if Self.run(fuzzCase) { produced += 1; any = true } else { refused += 1 }
            }
            if any { opsWithResults += 1 } else if Self.environment["KILN_FUZZ_STATS"] != nil { print("no result: \(op)") }
        }
        print("kernel fuzz: \(Self.ops.count) ops, \(produced + refused) cases, \(produced) results, \(refused) KilnErrors, \(opsWithResults) ops produced a result at least once")
        // The generator must get past the input checks often enough to exercise the kernels themselves.
        #expect(produced * 10 > produced + refused)
        #expect(opsWithResults * 2 > Self.ops.count)
    }

    /// The random cases of `op`.
    static func randomCases(_ op: OpID) -> [FuzzCase] {
        var generator = CaseGenerator(op: op)
        return (0..<casesPerOp).map { _ in generator.next() }
    }

    /// Runs each unit's cases in a forked child; reports every crash or hang with its case, then resumes after it.
    static func runIsolated(_ units: [String], _ cases: (String) -> [FuzzCase]) throws {
        var crashes: [String] = []
        for unit in units {
            var start = 0
            for _ in 0..<40 {
                var fds: [Int32] = [0, 0]
                guard pipe(&fds) == 0 else { throw KilnError(.io, "pipe failed") }
                let pid = fork()
                if pid == 0 {
                    close(fds[0])
                    for (index, fuzzCase) in cases(unit).enumerated() where index >= start {
                        var i = Int32(index)
                        _ = write(fds[1], &i, 4)
                        _ = run(fuzzCase)
                    }
                    _exit(0)
                }
                close(fds[1])
                // Reading until EOF follows the child to its end; the last index written is the case it was on.
                var last: Int32 = -1, value: Int32 = 0
                let began = Date()
                var hung = false
                _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
                while true {
                    let n = read(fds[0], &value, 4)
                    if n == 4 { last = value; continue }
                    if n == 0 { break }
                    if Date().timeIntervalSince(began) > 60 { hung = true; kill(pid, SIGKILL); break }
                    usleep(2000)
                }
                close(fds[0])
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                let signaled = (status & 0x7f) != 0
                let exitCode = (status >> 8) & 0xff
                if !hung && !signaled && exitCode == 0 { break }
                let all = cases(unit)
                let summary = last >= 0 && Int(last) < all.count ? all[Int(last)].summary : "?"
                let line = "\(hung ? "HANG" : "CRASH") \(unit) case \(last): \(summary)"
                print(line)
                fflush(nil)
                crashes.append(line)
                start = Int(last) + 1
                if start >= all.count { break }
            }
        }
        print("isolated fuzz: \(crashes.count) crashes or hangs")
        #expect(crashes.isEmpty)
    }

    // MARK: - Mutated ONNX node tests

    /// The ONNX backend node tests (shipped in the `onnx` wheel): `KILN_ONNX_NODE_TESTS`, or the `node` folder of
    /// `TestData.onnxBackendTests`.
    static let nodeTestDirectory: String? = environment["KILN_ONNX_NODE_TESTS"] ?? TestData.onnxBackendTests.map { $0 + "/node" }

    static var mutationsPerCase: Int { environment["KILN_FUZZ_MUTATIONS"].flatMap { Int($0) } ?? 12 }

    /// Every ONNX node test's graph, with inputs drawn for its declared types, run as is and with one thing
    /// broken at a time: an attribute made hostile or of the wrong kind or removed, an input replaced by a
    /// hostile tensor, reshaped, filled with extreme values or omitted. These start from valid nodes, so
    /// they reach deep into the kernels (convolutions, recurrences, resizing) where random nodes rarely get.
    @Test(.enabled(if: nodeTestDirectory != nil, "needs the ONNX node tests: a .venv with onnx (scripts/setup), KILN_ONNX_TEST_DATA or KILN_ONNX_NODE_TESTS"))
    func mutatedNodeTestsEndInAResultOrAKilnError() throws {
        let root = try #require(Self.nodeTestDirectory)
        var names = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        if let only = Self.environment["KILN_FUZZ_OPS"] {
            names = names.filter { name in only.split(separator: ",").contains { name.lowercased().contains($0.lowercased()) } }
        }
        if Self.environment["KILN_FUZZ_ISOLATE"] != nil {
            try Self.runIsolated(names) { Self.mutations(root, $0) }
            return
        }
        let verbose = Self.environment["KILN_FUZZ_VERBOSE"] != nil
        var produced = 0, refused = 0, models = 0
        for name in names {
            let cases = Self.mutations(root, name)
            if !cases.isEmpty { models += 1 }
            for (index, fuzzCase) in cases.enumerated() {
                if verbose { print("mutation \(name) #\(index): \(fuzzCase.summary)"); fflush(nil) }
                if Self.run(fuzzCase) { produced += 1 } else { refused += 1 }
            }
        }
        print("mutation fuzz: \(models) node tests, \(produced + refused) cases, \(produced) results, \(refused) KilnErrors")
        #expect(models > 100)
        #expect(produced * 10 > produced + refused)
    }

    /// The mutations of node test `name` (none when its model does not import or uses an op without a kernel).
    static func mutations(_ root: String, _ name: String) -> [FuzzCase] {
        guard let model = try? Kiln.importONNX(path: "\(root)/\(name)/model.onnx"), !model.graph.nodes.isEmpty,
              model.graph.nodes.allSatisfy({ KernelTable.reference[$0.op] != nil }) else { return [] }
        // A Loop whose trip count is computed from the inputs (Range's expansion) runs as long as random inputs
        // say: a legal but endless case, left out.
        let inputNames = Set(model.graph.inputs.map(\.name))
        for node in model.graph.allNodes where node.op.name == "Loop" {
            if let m = node.inputs.first, !m.isEmpty, !inputNames.contains(m), model.graph.initializers[m] == nil { return [] }
        }
        var generator = CaseGenerator(op: model.graph.nodes[0].op, salt: name)
        return (0...mutationsPerCase).map { generator.mutation(of: model.graph, index: $0, name: name) }
    }

    // MARK: - Targeted cases

    func run(_ op: String, _ inputs: [RuntimeValue?], attributes: [String: Attribute] = [:], outputs: Int = 1) throws {
        var values: [String: RuntimeValue] = [:]
        var names: [String] = []
        for (i, v) in inputs.enumerated() {
            if let v { values["x\(i)"] = v; names.append("x\(i)") } else { names.append("") }
        }
        let outs = (0..<outputs).map { "y\($0)" }
        let node = Node(name: "n", op: OpID("", op), inputs: names, outputs: outs, attributes: attributes)
        let graph = Graph(outputs: outs.map { Value(name: $0) }, nodes: [node])
        _ = try Interpreter(table: .reference).run(graph, inputs: values, parent: nil)
    }

    func ints(_ v: [Int64]) -> RuntimeValue { .tensor(Tensor(shape: [v.count], v)) }
    func floats(_ shape: [Int], _ v: [Float]) -> RuntimeValue { .tensor(Tensor(shape: shape, v)) }

    /// Outputs over the element cap are refused with an error that says so, before anything is allocated.
    @Test func hugeOutputsAreRefused() {
        let cases: [(String, [RuntimeValue?], [String: Attribute])] = [
            ("ConstantOfShape", [ints([1 << 33])], [:]),
            ("ConstantOfShape", [ints([1 << 20, 1 << 20])], [:]),
            ("Expand", [floats([1], [1]), ints([1 << 40, 1 << 40])], [:]),
            ("Tile", [floats([2], [1, 2]), ints([Int64.max])], [:]),
            ("Range", [.tensor(Tensor(scalar: Float(0))), .tensor(Tensor(scalar: Float(1e12))), .tensor(Tensor(scalar: Float(1)))], [:]),
            ("Pad", [floats([2], [1, 2]), ints([1 << 40, 1 << 40])], [:]),
            ("OneHot", [ints([1, 2]), .tensor(Tensor(scalar: Int64(1) << 40)), floats([2], [0, 1])], [:]),
            ("Resize", [floats([1, 1, 2, 2], [1, 2, 3, 4]), nil, floats([4], [1, 1, 1e6, 1e6])], [:]),
            ("Reshape", [floats([2], [1, 2]), ints([Int64.max, 2])], [:]),
        ]
        for (op, inputs, attributes) in cases {
            let error = #expect(throws: KilnError.self, "\(op)") { try run(op, inputs, attributes: attributes) }
            #expect(error?.message.contains("n") == true)
        }
    }

    /// Inputs of a type ONNX does not allow are refused before the kernel runs, naming the input and the types allowed.
    @Test func inputTypesAreCheckedAgainstTheSchema() {
        let strings = RuntimeValue.tensor(Tensor(shape: [2], strings: ["a", "b"]))
        let error = #expect(throws: KilnError.self) { try run("Relu", [strings]) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("input 0") == true)
        #expect(error?.message.contains("string") == true)
        let mixed = #expect(throws: KilnError.self) {
            try run("Add", [floats([1], [1]), .tensor(Tensor(shape: [1], [Double(1)]))])
        }
        #expect(mixed?.message.contains("input 0's type") == true)
        let sequence = #expect(throws: KilnError.self) { try run("Relu", [.sequence([], elementType: nil)]) }
        #expect(sequence?.message.contains("is a sequence") == true)
    }

    /// Subgraphs nested deeper than the interpreter's limit are refused instead of exhausting the stack.
    @Test func deepSubgraphNestingIsRefused() throws {
        func nested(_ depth: Int) -> Graph {
            var graph = Graph(name: "leaf", outputs: [Value(name: "x")])
            for level in 0..<depth {
                let node = Node(name: "if\(level)", op: OpID("", "If"), inputs: ["c"], outputs: ["r\(level)"],
                                attributes: ["then_branch": .graph(graph), "else_branch": .graph(graph)])
                graph = Graph(name: "level\(level)", outputs: [Value(name: "r\(level)")], nodes: [node])
            }
            return graph
        }
        let inputs: [String: RuntimeValue] = ["c": .tensor(Tensor(scalar: true)), "x": floats([1], [7])]
        let shallow = try Interpreter(table: .reference).run(nested(10), inputs: inputs, parent: nil)
        #expect(shallow.first?.tensor?.elements(as: Float.self) == [7])
        let error = #expect(throws: KilnError.self) {
            try Interpreter(table: .reference).run(nested(200), inputs: inputs, parent: nil)
        }
        #expect(error?.message.contains("nest") == true)
    }

    /// A Loop whose scan outputs outgrow the element cap stops with an error instead of growing without bound
    /// (here after 2^11 iterations of a 2^20-element slice).
    @Test func loopScanOutputsAreCapped() {
        let body = Graph(name: "body", inputs: [Value(name: "i"), Value(name: "c")], outputs: [Value(name: "c"), Value(name: "big")],
                         initializers: ["big": Tensor(zeros: .float32, shape: [1 << 20])])
        let error = #expect(throws: KilnError.self) {
            try run("Loop", [.tensor(Tensor(scalar: Int64(1) << 40)), .tensor(Tensor(scalar: true))],
                    attributes: ["body": .graph(body)])
        }
        #expect(error?.message.contains("elements") == true)
    }
}

// MARK: - Case generation

/// One generated graph and the values bound to its inputs.
struct FuzzCase {
    let graph: Graph
    let values: [String: RuntimeValue]
    let summary: String
}

/// What ONNX says about an op's arity and attributes (the attribute kinds as one letter each: i f s t g
/// for int, float, string, tensor, graph; I F S T G for their lists; y Y for types).
struct FuzzSchema {
    let minInputs: Int, maxInputs: Int, minOutputs: Int, maxOutputs: Int
    let attributes: [(name: String, kind: Character)]

    static let table: [OpID: FuzzSchema] = {
        var table: [OpID: FuzzSchema] = [:]
        for line in schemaText.split(separator: "\n") {
            let f = line.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            let attributes = f[6].split(separator: ",").map { pair -> (String, Character) in
                let p = pair.split(separator: ":")
                return (String(p[0]), p[1].first!)
            }
            table[OpID(f[0], f[1])] = FuzzSchema(minInputs: Int(f[2])!, maxInputs: Int(f[3])!, minOutputs: Int(f[4])!,
                                                 maxOutputs: Int(f[5])!, attributes: attributes)
        }
        return table
    }()
}

/// Draws hostile cases for one op.
struct CaseGenerator {
    let op: OpID
    let schema: FuzzSchema
    /// SplitMix64 (KilnTestSupport), so that a case number always means the same case.
    var rng: SplitMix64
    var serial = 0

    init(op: OpID, salt: String = "") {
        self.op = op
        schema = FuzzSchema.table[op] ?? FuzzSchema(minInputs: 1, maxInputs: 3, minOutputs: 1, maxOutputs: 1, attributes: [])
        rng = SplitMix64(seed: Self.seed(op.description + salt))
    }

    /// FNV-1a of `text`: a seed that does not change between runs (unlike `hashValue`).
    static func seed(_ text: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in text.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }
    mutating func count(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

    static let numericTypes: [DType] = [.float32, .float64, .float16, .bfloat16, .int8, .int16, .int32, .int64,
                                        .uint8, .uint16, .uint32, .uint64, .bool]
    static let exoticTypes: [DType] = [.string, .complex64, .complex128, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2,
                                       .float8e5m2fnuz, .float8e8m0, .int4, .uint4, .float4e2m1, .int2, .uint2]
    static let shapes: [[Int]] = [[], [0], [1], [2], [3], [4], [2, 3], [3, 2], [1, 3], [3, 1], [2, 0], [0, 3], [1, 1, 1],
                                  [2, 3, 4], [2, 1, 3], [1, 2, 3, 3], [2, 1, 4, 4], [1, 3, 4, 4], [1, 1, 2, 2, 2],
                                  [1, 2, 1, 2, 1, 2], [2, 2, 1, 2, 2, 1], [1, 4, 2, 2], [4, 4]]
    static let hugeInts: [Int64] = [1 << 40, -(1 << 40), .max, .min, 1 << 62]
    static let smallInts: [Int64] = [-3, -2, -1, 0, 1, 1, 2, 2, 3, 4, 5]
    static let specialDoubles: [Double] = [.nan, .infinity, -.infinity, 1e13, -1e13, 0.5, -0.5, 1e-30, 1e30]
    static let strings = [" ", "-", "0", "AVERAGE", "CRD", "DCR", "E", "Grayscale", "IDF", "L1", "L2", "LEFT", "LOGISTIC",
                          "LOWER", "MAX", "MIN", "NONE", "NOTSET", "PROBIT", "RGB", "BGR", "RIGHT", "SAME_LOWER", "SAME_UPPER",
                          "SOFTMAX", "SOFTMAX_ZERO", "SUM", "TFIDF", "UPPER", "VALID", "add", "affine", "align_corners",
                          "asymmetric", "bidirectional", "border", "ceil", "circular", "constant", "cubic", "delta", "down",
                          "e", "edge", "elu", "false", "floor", "gated", "gated_delta", "half_pixel", "half_pixel_symmetric",
                          "hardsigmoid", "inf", "leakyrelu", "linear", "max", "mean", "mul", "nan", "nearest", "nesterov",
                          "none", "not_larger", "not_smaller", "pytorch_half_pixel", "reflection", "relu", "reverse",
                          "round_prefer_ceil", "round_prefer_floor", "scaledtanh", "sigmoid", "softplus", "softsign",
                          "standard", "stretch", "sum", "tanh", "tf_crop_and_resize", "thresholdedrelu", "true", "wrap",
                          "zeros", "Tanh", "Relu", "Sigmoid", "forward", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_EQ", "LEAF",
                          "ij,jk->ik", "ii->i", "...ij->...ji", "i,i", "bij,bjk->bik", "ij->", "->", "ij,,->k", "i...j...->",
                          "a+", "(", "[", "", "\u{0}", "x\u{301}"]

    // MARK: tensors

    mutating func tensor(_ dtype: DType, _ shape: [Int]) -> Tensor {
        let n = shape.reduce(1, *)
        switch dtype {
        case .string:
            return Tensor(shape: shape, strings: (0..<n).map { _ in pick(Self.strings) })
        case .complex64:
            return Tensor(dtype: .complex64, shape: shape, bitPatterns: (0..<n).map { _ in rng.next() })
        case .complex128:
            return Tensor(dtype: .complex128, shape: shape, storage: TensorStorage(byteCount: n * 16))
        case .bool:
            return Tensor(shape: shape, (0..<n).map { _ in chance(0.5) })
        default:
            if dtype.isFloatingPoint {
                return Tensor(dtype: dtype, shape: shape, doubles: (0..<n).map { _ in
                    chance(0.85) ? Double(pick(Self.smallInts)) + (chance(0.3) ? 0.25 : 0) : pick(Self.specialDoubles)
                })
            }
            return Tensor(dtype: dtype, shape: shape, int64s: (0..<n).map { _ in
                chance(0.9) ? pick(Self.smallInts) : pick(Self.hugeInts)
            })
        }
    }

    /// A 1-D integer tensor such as a shape, axes, pads or repeats.
    mutating func indexTensor(length: Int) -> Tensor {
        let hostility = pick([0.0, 0.15, 0.5])
        let values = (0..<length).map { _ in chance(hostility) ? pick(Self.hugeInts) : pick(Self.smallInts) }
        let t = Tensor(shape: [length], values)
        return chance(0.85) ? t : Tensor(dtype: .int32, shape: [length], int64s: values)
    }

    mutating func anyTensor() -> Tensor {
        let dtype = chance(0.7) ? pick(Self.numericTypes) : pick(Self.exoticTypes)
        return tensor(dtype, pick(Self.shapes))
    }

    mutating func nonTensor() -> RuntimeValue {
        switch count(0...6) {
        case 0: return .sequence([], elementType: chance(0.5) ? .tensor(TensorType(.float32, nil)) : nil)
        case 1:
            let dtype = pick(Self.numericTypes), shape = pick(Self.shapes)
            return .sequence((0..<count(1...3)).map { _ in .tensor(tensor(dtype, chance(0.7) ? shape : pick(Self.shapes))) },
                             elementType: .tensor(TensorType(dtype, nil)))
        case 2: return .sequence([.tensor(anyTensor()), .tensor(anyTensor())], elementType: nil)
        case 3: return .optional(nil, type: chance(0.5) ? .tensor(TensorType(.float32, nil)) : nil)
        case 4: return .optional(.tensor(anyTensor()), type: nil)
        case 5:
            let n = count(0...3)
            let keys = chance(0.7) ? Tensor(shape: [n], (0..<n).map { Int64($0) }) : Tensor(shape: [n], strings: (0..<n).map { "k\($0)" })
            return .map(keys: keys, values: .tensor(tensor(chance(0.7) ? .float32 : .string, [chance(0.8) ? n : n + 1])))
        default: return .sequence([.sequence([], elementType: nil)], elementType: nil)
        }
    }

    // MARK: attributes

    mutating func intAttribute() -> Int { chance(0.8) ? Int(pick(Self.smallInts)) : Int(pick(Self.hugeInts)) }
    mutating func floatAttribute() -> Float { chance(0.75) ? Float(pick(Self.smallInts)) * 0.5 : Float(pick(Self.specialDoubles)) }

    mutating func attribute(_ kind: Character, rank: Int) -> Attribute {
        let listLength = chance(0.5) ? pick([rank, 2 * rank, max(rank - 2, 0)]) : count(0...6)
        switch kind {
        case "i": return .int(intAttribute())
        case "f": return .float(floatAttribute())
        case "s": return .string(pick(Self.strings))
        case "t": return .tensor(chance(0.5) ? tensor(pick(Self.numericTypes), pick([[], [1], [2]])) : anyTensor())
        case "g": return .graph(subgraph(depth: 0))
        case "I": return .ints((0..<listLength).map { _ in chance(0.9) ? Int(pick(Self.smallInts)) : intAttribute() })
        case "F": return .floats((0..<listLength).map { _ in floatAttribute() })
        case "S": return .strings((0..<count(0...4)).map { _ in pick(Self.strings) })
        case "T": return .tensors((0..<count(0...3)).map { _ in anyTensor() })
        case "G": return .graphs((0..<count(0...2)).map { _ in subgraph(depth: 1) })
        case "y": return .type(valueType())
        default: return .types((0..<count(0...2)).map { _ in valueType() })
        }
    }

    mutating func valueType() -> ValueType {
        let t = TensorType(chance(0.7) ? pick(Self.numericTypes) : pick(Self.exoticTypes), chance(0.5) ? nil : [.fixed(2)])
        switch count(0...3) {
        case 0: return .sequence(.tensor(t))
        case 1: return .optional(.tensor(t))
        case 2: return .optional(.sequence(.tensor(t)))
        default: return .tensor(t)
        }
    }

    // MARK: subgraphs

    mutating func uniqueName(_ base: String) -> String {
        serial += 1
        return "\(base)_\(serial)"
    }

    /// A subgraph: pass-through, Loop-body shaped, constant, reading outer values, broken, or holding a
    /// nested control-flow node.
    mutating func subgraph(depth: Int) -> Graph {
        let inputCount = count(0...4)
        let inputs = (0..<inputCount).map { _ in Value(name: uniqueName("in")) }
        switch count(0...7) {
        case 0, 1:
            // Pass-through of some of its inputs, or of outer values.
            let pool = inputs.map(\.name) + ["x0", "x1"]
            return Graph(name: "pass", inputs: inputs, outputs: (0..<count(1...4)).map { _ in Value(name: pick(pool)) })
        case 2, 3:
            // Loop-body shaped: (iteration, cond, carried...) → (cond, carried..., scans...).
            let carried = (0..<count(0...2)).map { _ in Value(name: uniqueName("v")) }
            let i = Value(name: uniqueName("i")), c = Value(name: uniqueName("c"))
            let scans = (0..<count(0...2)).map { _ in pick([i] + carried) }
            return Graph(name: "body", inputs: [i, c] + carried, outputs: [c] + carried + scans)
        case 4:
            let name = uniqueName("k")
            let value: Tensor = chance(0.5) ? Tensor(scalar: chance(0.3)) : anyTensor()
            return Graph(name: "constant", inputs: inputs, outputs: [Value(name: name)], initializers: [name: value])
        case 5:
            return Graph(name: "broken", inputs: inputs, outputs: [Value(name: "never_computed")])
        default:
            guard depth < 2 else { return Graph(name: "empty", inputs: inputs) }
            let op = pick(["If", "Loop", "Scan", "Identity", "Add"])
            let out = uniqueName("r"), m = uniqueName("m")
            let nodeInputs: [String]
            switch op {
            case "If": nodeInputs = ["x0"]
            case "Loop": nodeInputs = [m, "", "x0"]
            case "Add": nodeInputs = ["x0", inputs.first?.name ?? "x1"]
            default: nodeInputs = inputs.isEmpty ? ["x0"] : inputs.map(\.name)
            }
            var attributes: [String: Attribute] = [:]
            for name in ["then_branch", "else_branch", "body"] { attributes[name] = .graph(subgraph(depth: depth + 1)) }
            attributes["num_scan_inputs"] = .int(1)
            let node = Node(name: "nested", op: OpID("", op), inputs: nodeInputs, outputs: [out], attributes: attributes)
            return Graph(name: "nested", inputs: inputs, outputs: [Value(name: out)], initializers: [m: Tensor(scalar: Int64(2))],
                         nodes: [node])
        }
    }

    // MARK: mutations

    /// A value for a graph input of type `type`: a tensor of its dtype and shape (unknown dims become 2), or an
    /// empty sequence or optional for those types.
    mutating func value(for type: ValueType?) -> RuntimeValue {
        switch type {
        case .tensor(let t)?:
            let shape = (t.shape ?? []).map { $0.value ?? 2 }
            return .tensor(tensor(t.dtype, shape))
        case .sequence(.tensor(let t))?:
            let shape = (t.shape ?? []).map { $0.value ?? 2 }
            return .sequence((0..<count(0...3)).map { _ in .tensor(tensor(t.dtype, shape)) }, elementType: .tensor(t))
        case .optional(let inner)?:
            return chance(0.5) ? .optional(nil, type: inner) : .optional(value(for: inner), type: inner)
        default:
            return .tensor(anyTensor())
        }
    }

    /// Case `index` of `graph`: its inputs drawn for their types, and (past case 0) one mutation.
    mutating func mutation(of graph: Graph, index: Int, name: String) -> FuzzCase {
        serial = 0
        var graph = graph
        var values: [String: RuntimeValue] = [:]
        for input in graph.inputs where graph.initializers[input.name] == nil {
            values[input.name] = value(for: input.type)
        }
        // Loops run as long as their inputs say: keep the trip counts the test draws small.
        for node in graph.nodes where node.op.name == "Loop" {
            if let m = node.inputs.first, values[m] != nil { values[m] = .tensor(Tensor(scalar: Int64(count(0...3)))) }
            else if node.inputs.count > 1, values[node.inputs[1]] != nil { values[node.inputs[1]] = .tensor(Tensor(scalar: false)) }
        }
        var what = "as is"
        if index > 0 {
            let nodeIndex = count(0...(graph.nodes.count - 1))
            var node = graph.nodes[nodeIndex]
            let feeds = node.inputs.enumerated().filter { !$0.element.isEmpty && values[$0.element] != nil }
            var roll = count(0...9)
            // A Loop without its trip count or with an extreme one runs as long as the model says: only its
            // attributes and outputs are mutated.
            if graph.allNodes.contains(where: { $0.op.name == "Loop" }), (3...8).contains(roll) { roll = node.attributes.isEmpty ? 9 : 0 }
            if roll <= 2 && node.attributes.isEmpty { roll = 3 }
            if (3...6).contains(roll) || roll == 8, feeds.isEmpty { roll = 7 }
            if roll == 7 && node.inputs.isEmpty { roll = 9 }
            switch roll {
            case 0, 1, 2:
                let key = pick(node.attributes.keys.sorted())
                if chance(0.15) {
                    node.attributes[key] = nil
                    what = "attribute \(key) removed"
                } else {
                    let kind = chance(0.85) ? Self.kind(of: node.attributes[key]!) : pick(["i", "f", "s", "t", "I", "F", "S", "g"])
                    let rank = feeds.first.flatMap { values[$0.element]?.tensor?.rank } ?? 2
                    let attribute = self.attribute(kind, rank: rank)
                    node.attributes[key] = attribute
                    what = "attribute \(key) = \(Self.describe(attribute))"
                }
            case 3, 4:
                // Extreme values in one input, keeping its type and shape.
                let (_, feed) = pick(feeds)
                if let t = values[feed]?.tensor, t.dtype.hasRealValue {
                    let extremes: [Double] = [-1, -2, 1e13, -1e13, 0x1p40, .nan, .infinity, 0, 9_223_372_036_854_775_807, -9_223_372_036_854_775_808]
                    let n = t.count
                    let hostile = (0..<n).map { _ in pick(extremes) }
                    // Integers saturate to their type, except that int32 overflows to -1: Int32.max and Int32.min are
                    // legal (if slow) sizes and spans below the element cap, and the cap itself is tested with int64.
                    values[feed] = .tensor(t.dtype.isInteger ? Tensor(dtype: t.dtype, shape: t.shape, int64s: hostile.map { v in
                        let wide: Int64 = v.isNaN ? 0 : (v >= 0x1p63 ? .max : (v <= -0x1p63 ? .min : Int64(v)))
                        switch t.dtype {
                        case .int32: return wide > Int64(Int32.max) || wide < Int64(Int32.min) ? -1 : wide
                        case .int16: return min(max(wide, Int64(Int16.min)), Int64(Int16.max))
                        case .int8: return min(max(wide, Int64(Int8.min)), Int64(Int8.max))
                        case .uint32: return min(max(wide, 0), Int64(UInt32.max))
                        case .uint16: return min(max(wide, 0), Int64(UInt16.max))
                        case .uint8: return min(max(wide, 0), Int64(UInt8.max))
                        default: return wide
                        }
                    }) : Tensor(dtype: t.dtype, shape: t.shape, doubles: hostile))
                    what = "input \(feed) filled with extremes"
                }
            case 5:
                // One input reshaped: a dim changed, or the rank changed.
                let (_, feed) = pick(feeds)
                if let t = values[feed]?.tensor {
                    var shape = t.shape
                    if shape.isEmpty || chance(0.3) {
                        shape = chance(0.5) ? Array(shape.dropLast()) : shape + [count(1...2)]
                    } else {
                        shape[count(0...(shape.count - 1))] = pick([0, 1, 3, 5])
                    }
                    values[feed] = .tensor(tensor(t.dtype, shape))
                    what = "input \(feed) reshaped to \(shape)"
                }
            case 6:
                let (_, feed) = pick(feeds)
                let t: Tensor = chance(0.5) ? indexTensor(length: count(0...6)) : anyTensor()
                values[feed] = .tensor(t)
                what = "input \(feed) replaced by \(t.dtype)\(t.shape)"
            case 7:
                let i = count(0...(node.inputs.count - 1))
                what = "input \(i) ('\(node.inputs[i])') omitted"
                node.inputs[i] = ""
            case 8:
                let (_, feed) = pick(feeds)
                values[feed] = nonTensor()
                what = "input \(feed) replaced by \(values[feed]!.summary)"
            default:
                // Surplus or missing outputs.
                if chance(0.5), !node.outputs.isEmpty { node.outputs.removeLast(); what = "last output dropped" }
                else { node.outputs.append("surplus_output"); graph.outputs.append(Value(name: "surplus_output")); what = "output added" }
            }
            graph.nodes[nodeIndex] = node
            graph.outputs = graph.outputs.filter { output in
                graph.nodes.contains { $0.outputs.contains(output.name) } || values[output.name] != nil
            }
        }
        return FuzzCase(graph: graph, values: values, summary: "\(name): \(what)")
    }

    static func kind(of attribute: Attribute) -> Character {
        switch attribute {
        case .int: "i"
        case .float: "f"
        case .string: "s"
        case .tensor: "t"
        case .graph: "g"
        case .type: "y"
        case .ints: "I"
        case .floats: "F"
        case .strings: "S"
        case .tensors: "T"
        case .graphs: "G"
        case .types: "Y"
        }
    }

    // MARK: cases

    mutating func next() -> FuzzCase {
        serial = 0
        // One element type and shape that most data inputs share, so that many cases get past the input checks.
        let baseType = chance(0.55) ? DType.float32 : (chance(0.8) ? pick(Self.numericTypes) : pick(Self.exoticTypes))
        let baseShape = pick(Self.shapes)
        var inputCount = count(schema.minInputs...max(schema.minInputs, schema.maxInputs))
        if chance(0.08) { inputCount = max(0, schema.minInputs - 1) } else if chance(0.05) { inputCount = schema.maxInputs + 1 }
        let sequenceOp = op.name.contains("Sequence") || op.name.contains("Optional") || op.name == "ZipMap"
            || op.name == "DictVectorizer" || op.name == "CastMap"
        var names: [String] = []
        var values: [String: RuntimeValue] = [:]
        for i in 0..<inputCount {
            if i > 0, chance(0.1) { names.append(""); continue }
            let value: RuntimeValue
            let roll = Double.random(in: 0..<1, using: &rng)
            if (sequenceOp && i == 0 && roll < 0.6) || roll < 0.07 {
                value = nonTensor()
            } else if roll < (i == 0 ? 0.6 : 0.45) {
                value = .tensor(tensor(baseType, chance(0.75) ? baseShape : pick(Self.shapes)))
            } else if roll < 0.8 {
                value = .tensor(chance(0.8) ? indexTensor(length: pick([baseShape.count, 2 * baseShape.count, count(0...6)]))
                                            : Tensor(scalar: chance(0.8) ? pick(Self.smallInts) : pick(Self.hugeInts)))
            } else if roll < 0.88 {
                value = .tensor(tensor(baseType, []))
            } else {
                value = .tensor(anyTensor())
            }
            names.append("x\(i)")
            values["x\(i)"] = value
        }
        if op == OpID("", "Loop") {
            // A Loop may run as long as the model says; keep the trip count small, or the condition false.
            if names.count > 0, chance(0.85) {
                names[0] = "x0"
                values["x0"] = .tensor(Tensor(scalar: Int64(count(0...3))))
            } else if names.count > 1 {
                names[1] = "x1"
                values["x1"] = .tensor(Tensor(scalar: false))
            } else if names.count == 1 {
                names[0] = "x0"
                values["x0"] = .tensor(Tensor(scalar: Int64(1)))
            }
        }
        var attributes: [String: Attribute] = [:]
        let kinds: [Character] = ["i", "f", "s", "t", "g", "I", "F", "S", "T", "G", "y", "Y"]
        for (name, kind) in schema.attributes where chance(0.55) || kind == "g" {
            attributes[name] = attribute(chance(0.9) ? kind : pick(kinds), rank: baseShape.count)
        }
        var outputCount = count(schema.minOutputs...max(schema.minOutputs, schema.maxOutputs))
        if chance(0.05) { outputCount += 1 }
        let outputs = (0..<outputCount).map { i in i > 0 && chance(0.15) ? "" : "y\(i)" }
        let node = Node(name: "fuzz", op: op, inputs: names, outputs: outputs, attributes: attributes)
        let graph = Graph(name: "fuzz", outputs: outputs.filter { !$0.isEmpty }.map { Value(name: $0) }, nodes: [node])
        let summary = "\(op) inputs [\(names.map { $0.isEmpty ? "-" : values[$0]!.summary }.joined(separator: ", "))] "
            + "attributes [\(attributes.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.describe($0.value))" }.joined(separator: ", "))] outputs \(outputs.count)"
        return FuzzCase(graph: graph, values: values, summary: summary)
    }

    static func describe(_ a: Attribute) -> String {
        switch a {
        case .int(let v): "\(v)"
        case .float(let v): "\(v)"
        case .string(let v): "\"\(v)\""
        case .ints(let v): "\(v)"
        case .floats(let v): "\(v)"
        case .strings(let v): "\(v)"
        case .tensor(let t): "tensor \(t.dtype)\(t.shape)"
        case .tensors(let t): "tensors(\(t.count))"
        case .graph(let g): "graph \(g.name)(\(g.inputs.count)→\(g.outputs.count))"
        case .graphs(let g): "graphs(\(g.count))"
        case .type(let t): "type \(t)"
        case .types(let t): "types(\(t.count))"
        }
    }
}

/// ONNX's arity and attributes per op (domain|name|minInputs|maxInputs|minOutputs|maxOutputs|attribute:kind,...),
/// merged over every version, generated from onnx.defs (onnx 1.22); inputs capped at 5 and outputs at 4.
let schemaText = """
|Abs|1|1|1|1|consumed_inputs:I
|Acos|1|1|1|1|
|Acosh|1|1|1|1|
|Add|2|2|1|1|axis:i,broadcast:i,consumed_inputs:I
|AffineGrid|2|2|1|1|align_corners:i
|And|2|2|1|1|axis:i,broadcast:i
|ArgMax|1|1|1|1|axis:i,keepdims:i,select_last_index:i
|ArgMin|1|1|1|1|axis:i,keepdims:i,select_last_index:i
|Asin|1|1|1|1|
|Asinh|1|1|1|1|
|Atan|1|1|1|1|
|Atanh|1|1|1|1|
|Attention|3|5|1|4|is_causal:i,kv_num_heads:i,q_num_heads:i,qk_matmul_output_mode:i,scale:f,softcap:f,softmax_precision:i
|AveragePool|1|1|1|1|auto_pad:s,ceil_mode:i,count_include_pad:i,dilations:I,kernel_shape:I,pads:I,strides:I
|BatchNormalization|5|5|1|4|consumed_inputs:I,epsilon:f,is_test:i,momentum:f,spatial:i,training_mode:i
|Bernoulli|1|1|1|1|dtype:i,seed:f
|BitCast|1|1|1|1|to:i
|BitShift|2|2|1|1|direction:s
|BitwiseAnd|2|2|1|1|
|BitwiseNot|1|1|1|1|
|BitwiseOr|2|2|1|1|
|BitwiseXor|2|2|1|1|
|BlackmanWindow|1|1|1|1|output_datatype:i,periodic:i
|Cast|1|1|1|1|round_mode:s,saturate:i,to:i
|CastLike|2|2|1|1|round_mode:s,saturate:i
|CausalConvWithState|2|4|2|2|activation:s
|Ceil|1|1|1|1|consumed_inputs:I
|Celu|1|1|1|1|alpha:f
|CenterCropPad|2|2|1|1|axes:I
|Clip|1|3|1|1|consumed_inputs:I,max:f,min:f
|Col2Im|3|3|1|1|dilations:I,pads:I,strides:I
|Compress|2|2|1|1|axis:i
|Concat|1|5|1|1|axis:i
|ConcatFromSequence|1|1|1|1|axis:i,new_axis:i
|Constant|0|0|1|1|sparse_value:t,value:t,value_float:f,value_floats:F,value_int:i,value_ints:I,value_string:s,value_strings:S
|ConstantOfShape|1|1|1|1|value:t
|Conv|2|3|1|1|auto_pad:s,dilations:I,group:i,kernel_shape:I,pads:I,strides:I
|ConvInteger|2|4|1|1|auto_pad:s,dilations:I,group:i,kernel_shape:I,pads:I,strides:I
|ConvTranspose|2|3|1|1|auto_pad:s,dilations:I,group:i,kernel_shape:I,output_padding:I,output_shape:I,pads:I,strides:I
|Cos|1|1|1|1|
|Cosh|1|1|1|1|
|CumProd|2|2|1|1|exclusive:i,reverse:i
|CumSum|2|2|1|1|exclusive:i,reverse:i
|DFT|1|3|1|1|axis:i,inverse:i,onesided:i
|DeformConv|3|5|1|1|dilations:I,group:i,kernel_shape:I,offset_group:i,pads:I,strides:I
|DepthToSpace|1|1|1|1|blocksize:i,mode:s
|DequantizeLinear|2|3|1|1|axis:i,block_size:i,output_dtype:i
|Det|1|1|1|1|
|Div|2|2|1|1|axis:i,broadcast:i,consumed_inputs:I
|Dropout|1|3|1|2|consumed_inputs:I,is_test:i,ratio:f,seed:i
|DynamicQuantizeLinear|1|1|3|3|
|Einsum|1|5|1|1|equation:s
|Elu|1|1|1|1|alpha:f,consumed_inputs:I
|Equal|2|2|1|1|axis:i,broadcast:i
|Erf|1|1|1|1|
|Exp|1|1|1|1|consumed_inputs:I
|Expand|2|2|1|1|
|EyeLike|1|1|1|1|dtype:i,k:i
|Flatten|1|1|1|1|axis:i
|Floor|1|1|1|1|consumed_inputs:I
|GRU|3|5|0|2|activation_alpha:F,activation_beta:F,activations:S,clip:f,direction:s,hidden_size:i,layout:i,linear_before_reset:i,output_sequence:i
|Gather|2|2|1|1|axis:i
|GatherElements|2|2|1|1|axis:i
|GatherND|2|2|1|1|batch_dims:i
|Gelu|1|1|1|1|approximate:s
|Gemm|2|3|1|1|alpha:f,beta:f,broadcast:i,transA:i,transB:i
|GlobalAveragePool|1|1|1|1|
|GlobalLpPool|1|1|1|1|p:i
|GlobalMaxPool|1|1|1|1|
|Greater|2|2|1|1|axis:i,broadcast:i
|GreaterOrEqual|2|2|1|1|
|GridSample|2|2|1|1|align_corners:i,mode:s,padding_mode:s
|GroupNormalization|3|3|1|1|epsilon:f,num_groups:i,stash_type:i
|HammingWindow|1|1|1|1|output_datatype:i,periodic:i
|HannWindow|1|1|1|1|output_datatype:i,periodic:i
|HardSigmoid|1|1|1|1|alpha:f,beta:f,consumed_inputs:I
|HardSwish|1|1|1|1|
|Hardmax|1|1|1|1|axis:i
|Identity|1|1|1|1|
|If|1|1|1|4|else_branch:g,then_branch:g
|ImageDecoder|1|1|1|1|pixel_format:s
|InstanceNormalization|3|3|1|1|consumed_inputs:I,epsilon:f
|IsInf|1|1|1|1|detect_negative:i,detect_positive:i
|IsNaN|1|1|1|1|
|LRN|1|1|1|1|alpha:f,beta:f,bias:f,size:i
|LSTM|3|5|0|3|activation_alpha:F,activation_beta:F,activations:S,clip:f,direction:s,hidden_size:i,input_forget:i,layout:i,output_sequence:i
|LayerNormalization|2|3|1|3|axis:i,epsilon:f,stash_type:i
|LeakyRelu|1|1|1|1|alpha:f,consumed_inputs:I
|Less|2|2|1|1|axis:i,broadcast:i
|LessOrEqual|2|2|1|1|
|LinearAttention|3|5|2|2|chunk_size:i,kv_num_heads:i,q_num_heads:i,scale:f,update_rule:s
|Log|1|1|1|1|consumed_inputs:I
|LogSoftmax|1|1|1|1|axis:i
|Loop|2|5|1|4|body:g
|LpNormalization|1|1|1|1|axis:i,p:i
|LpPool|1|1|1|1|auto_pad:s,ceil_mode:i,dilations:I,kernel_shape:I,p:i,pads:I,strides:I
|MatMul|2|2|1|1|
|MatMulInteger|2|4|1|1|
|Max|1|5|1|1|consumed_inputs:I
|MaxPool|1|1|1|2|auto_pad:s,ceil_mode:i,dilations:I,kernel_shape:I,pads:I,storage_order:i,strides:I
|MaxRoiPool|2|2|1|1|pooled_shape:I,spatial_scale:f
|MaxUnpool|2|3|1|1|kernel_shape:I,pads:I,strides:I
|Mean|1|5|1|1|consumed_inputs:I
|MeanVarianceNormalization|1|1|1|1|axes:I
|MelWeightMatrix|5|5|1|1|output_datatype:i
|Min|1|5|1|1|consumed_inputs:I
|Mish|1|1|1|1|
|Mod|2|2|1|1|fmod:i
|Mul|2|2|1|1|axis:i,broadcast:i,consumed_inputs:I
|Multinomial|1|1|1|1|dtype:i,sample_size:i,seed:f
|Neg|1|1|1|1|consumed_inputs:I
|NegativeLogLikelihoodLoss|2|3|1|1|ignore_index:i,reduction:s
|NonMaxSuppression|2|5|1|1|center_point_box:i
|NonZero|1|1|1|1|
|Not|1|1|1|1|
|OneHot|3|3|1|1|axis:i
|Optional|0|1|1|1|type:y
|OptionalGetElement|1|1|1|1|
|OptionalHasElement|0|1|1|1|
|Or|2|2|1|1|axis:i,broadcast:i
|PRelu|2|2|1|1|consumed_inputs:I
|Pad|1|4|1|1|mode:s,paddings:I,pads:I,value:f
|Pow|2|2|1|1|axis:i,broadcast:i
|QLinearConv|8|5|1|1|auto_pad:s,dilations:I,group:i,kernel_shape:I,pads:I,strides:I
|QLinearMatMul|8|5|1|1|
|QuantizeLinear|2|3|1|1|axis:i,block_size:i,output_dtype:i,precision:i,saturate:i
|RMSNormalization|2|2|1|1|axis:i,epsilon:f,stash_type:i
|RNN|3|5|0|2|activation_alpha:F,activation_beta:F,activations:S,clip:f,direction:s,hidden_size:i,layout:i,output_sequence:i
|RandomNormal|0|0|1|1|dtype:i,mean:f,scale:f,seed:f,shape:I
|RandomNormalLike|1|1|1|1|dtype:i,mean:f,scale:f,seed:f
|RandomUniform|0|0|1|1|dtype:i,high:f,low:f,seed:f,shape:I
|RandomUniformLike|1|1|1|1|dtype:i,high:f,low:f,seed:f
|Range|3|3|1|1|stash_type:i
|Reciprocal|1|1|1|1|consumed_inputs:I
|ReduceL1|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceL2|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceLogSum|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceLogSumExp|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceMax|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceMean|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceMin|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceProd|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceSum|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|ReduceSumSquare|1|2|1|1|axes:I,keepdims:i,noop_with_empty_axes:i
|RegexFullMatch|1|1|1|1|pattern:s
|Relu|1|1|1|1|consumed_inputs:I
|Reshape|1|2|1|1|allowzero:i,consumed_inputs:I,shape:I
|Resize|1|4|1|1|antialias:i,axes:I,coordinate_transformation_mode:s,cubic_coeff_a:f,exclude_outside:i,extrapolation_value:f,keep_aspect_ratio_policy:s,mode:s,nearest_mode:s
|ReverseSequence|2|2|1|1|batch_axis:i,time_axis:i
|RoiAlign|3|3|1|1|coordinate_transformation_mode:s,mode:s,output_height:i,output_width:i,sampling_ratio:i,spatial_scale:f
|RotaryEmbedding|3|4|1|1|interleaved:i,num_heads:i,rotary_embedding_dim:i
|Round|1|1|1|1|
|STFT|2|4|1|1|onesided:i
|Scan|1|5|1|4|body:g,directions:I,num_scan_inputs:i,scan_input_axes:I,scan_input_directions:I,scan_output_axes:I,scan_output_directions:I
|Scatter|3|3|1|1|axis:i
|ScatterElements|3|3|1|1|axis:i,reduction:s
|ScatterND|3|3|1|1|reduction:s
|Selu|1|1|1|1|alpha:f,consumed_inputs:I,gamma:f
|SequenceAt|2|2|1|1|
|SequenceConstruct|1|5|1|1|
|SequenceEmpty|0|0|1|1|dtype:i
|SequenceErase|1|2|1|1|
|SequenceInsert|2|3|1|1|
|SequenceLength|1|1|1|1|
|SequenceMap|1|5|1|4|body:g
|Shape|1|1|1|1|end:i,start:i
|Shrink|1|1|1|1|bias:f,lambd:f
|Sigmoid|1|1|1|1|consumed_inputs:I
|Sign|1|1|1|1|
|Sin|1|1|1|1|
|Sinh|1|1|1|1|
|Size|1|1|1|1|
|Slice|1|5|1|1|axes:I,ends:I,starts:I
|Softmax|1|1|1|1|axis:i
|SoftmaxCrossEntropyLoss|2|3|1|2|ignore_index:i,reduction:s
|Softplus|1|1|1|1|
|Softsign|1|1|1|1|
|SpaceToDepth|1|1|1|1|blocksize:i
|Split|1|2|1|4|axis:i,num_outputs:i,split:I
|SplitToSequence|1|2|1|1|axis:i,keepdims:i
|Sqrt|1|1|1|1|consumed_inputs:I
|Squeeze|1|2|1|1|axes:I
|StringConcat|2|2|1|1|
|StringNormalizer|1|1|1|1|case_change_action:s,is_case_sensitive:i,locale:s,stopwords:S
|StringSplit|1|1|2|2|delimiter:s,maxsplit:i
|Sub|2|2|1|1|axis:i,broadcast:i,consumed_inputs:I
|Sum|1|5|1|1|consumed_inputs:I
|Swish|1|1|1|1|alpha:f
|Tan|1|1|1|1|
|Tanh|1|1|1|1|consumed_inputs:I
|TensorScatter|2|3|1|1|axis:i,mode:s
|TfIdfVectorizer|1|1|1|1|max_gram_length:i,max_skip_count:i,min_gram_length:i,mode:s,ngram_counts:I,ngram_indexes:I,pool_int64s:I,pool_strings:S,weights:F
|ThresholdedRelu|1|1|1|1|alpha:f
|Tile|2|3|1|1|
|TopK|1|2|2|2|axis:i,k:i,largest:i,sorted:i
|Transpose|1|1|1|1|perm:I
|Trilu|1|2|1|1|upper:i
|Unique|1|1|1|4|axis:i,sorted:i
|Unsqueeze|1|2|1|1|axes:I
|Upsample|1|2|1|1|height_scale:f,mode:s,scales:F,width_scale:f
|Where|3|3|1|1|
|Xor|2|2|1|1|axis:i,broadcast:i
ai.onnx.ml|ArrayFeatureExtractor|2|2|1|1|
ai.onnx.ml|Binarizer|1|1|1|1|threshold:f
ai.onnx.ml|CastMap|1|1|1|1|cast_to:s,map_form:s,max_map:i
ai.onnx.ml|CategoryMapper|1|1|1|1|cats_int64s:I,cats_strings:S,default_int64:i,default_string:s
ai.onnx.ml|DictVectorizer|1|1|1|1|int64_vocabulary:I,string_vocabulary:S
ai.onnx.ml|FeatureVectorizer|1|5|1|1|inputdimensions:I
ai.onnx.ml|Imputer|1|1|1|1|imputed_value_floats:F,imputed_value_int64s:I,replaced_value_float:f,replaced_value_int64:i
ai.onnx.ml|LabelEncoder|1|1|1|1|classes_strings:S,default_float:f,default_int64:i,default_string:s,default_tensor:t,keys_floats:F,keys_int64s:I,keys_strings:S,keys_tensor:t,values_floats:F,values_int64s:I,values_strings:S,values_tensor:t
ai.onnx.ml|LinearClassifier|1|1|2|2|classlabels_ints:I,classlabels_strings:S,coefficients:F,intercepts:F,multi_class:i,post_transform:s
ai.onnx.ml|LinearRegressor|1|1|1|1|coefficients:F,intercepts:F,post_transform:s,targets:i
ai.onnx.ml|Normalizer|1|1|1|1|norm:s
ai.onnx.ml|OneHotEncoder|1|1|1|1|cats_int64s:I,cats_strings:S,zeros:i
ai.onnx.ml|SVMClassifier|1|1|2|2|classlabels_ints:I,classlabels_strings:S,coefficients:F,kernel_params:F,kernel_type:s,post_transform:s,prob_a:F,prob_b:F,rho:F,support_vectors:F,vectors_per_class:I
ai.onnx.ml|SVMRegressor|1|1|1|1|coefficients:F,kernel_params:F,kernel_type:s,n_supports:i,one_class:i,post_transform:s,rho:F,support_vectors:F
ai.onnx.ml|Scaler|1|1|1|1|offset:F,scale:F
ai.onnx.ml|TreeEnsemble|1|1|1|1|aggregate_function:i,leaf_targetids:I,leaf_weights:t,membership_values:t,n_targets:i,nodes_falseleafs:I,nodes_falsenodeids:I,nodes_featureids:I,nodes_hitrates:t,nodes_missing_value_tracks_true:I,nodes_modes:t,nodes_splits:t,nodes_trueleafs:I,nodes_truenodeids:I,post_transform:i,tree_roots:I
ai.onnx.ml|TreeEnsembleClassifier|1|1|2|2|base_values:F,base_values_as_tensor:t,class_ids:I,class_nodeids:I,class_treeids:I,class_weights:F,class_weights_as_tensor:t,classlabels_int64s:I,classlabels_strings:S,nodes_falsenodeids:I,nodes_featureids:I,nodes_hitrates:F,nodes_hitrates_as_tensor:t,nodes_missing_value_tracks_true:I,nodes_modes:S,nodes_nodeids:I,nodes_treeids:I,nodes_truenodeids:I,nodes_values:F,nodes_values_as_tensor:t,post_transform:s
ai.onnx.ml|TreeEnsembleRegressor|1|1|1|1|aggregate_function:s,base_values:F,base_values_as_tensor:t,n_targets:i,nodes_falsenodeids:I,nodes_featureids:I,nodes_hitrates:F,nodes_hitrates_as_tensor:t,nodes_missing_value_tracks_true:I,nodes_modes:S,nodes_nodeids:I,nodes_treeids:I,nodes_truenodeids:I,nodes_values:F,nodes_values_as_tensor:t,post_transform:s,target_ids:I,target_nodeids:I,target_treeids:I,target_weights:F,target_weights_as_tensor:t
ai.onnx.ml|ZipMap|1|1|1|1|classlabels_int64s:I,classlabels_strings:S
ai.onnx.preview|FlexAttention|3|3|1|1|prob_mod:g,scale:f,score_mod:g,softmax_precision:i
ai.onnx.preview.training|Adagrad|3|5|1|4|decay_factor:f,epsilon:f,norm_coefficient:f
ai.onnx.preview.training|Adam|3|5|1|4|alpha:f,beta:f,epsilon:f,norm_coefficient:f,norm_coefficient_post:f
ai.onnx.preview.training|Gradient|1|5|1|4|xs:S,y:s,zs:S
ai.onnx.preview.training|Momentum|3|5|1|4|alpha:f,beta:f,mode:s,norm_coefficient:f
"""
