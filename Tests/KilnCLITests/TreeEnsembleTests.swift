import Foundation
import Kiln
import KilnTooling
import Testing
@testable import KilnTestSupport

/// Tree ensembles trained by XGBoost, LightGBM and scikit-learn (skl2onnx) (`scripts/make-tree-fixtures`, run once with the package's
/// `.venv`, which `scripts/setup` fills from `scripts/requirements-test.txt`), imported from the files the
/// frameworks save and run on kiln.cpu and kiln.reference: both must give the framework's own predictions.
@Suite struct TreeEnsembleTests {
    /// The fixture folder, made once per test process.
    static let fixtures: Result<String, TestSupportError> = {
        let python = TestPaths.inPackage(".venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return .failure(TestSupportError("needs the package's .venv with xgboost and lightgbm (scripts/setup)"))
        }
        do {
            let folder = try temporaryDirectory("kiln-tree-fixtures")
            let result = try ProcessRunner.run(python, [TestPaths.inPackage("scripts/make-tree-fixtures"), folder])
            guard result.status == 0 else { return .failure(TestSupportError("make-tree-fixtures failed: \(result.stderr)")) }
            return .success(folder)
        } catch let e as TestSupportError {
            return .failure(e)
        } catch {
            return .failure(TestSupportError("\(error)"))
        }
    }()

    /// The cases `make-tree-fixtures` writes, with their model files.
    static let cases: [(name: String, file: String)] = [
        ("xgb_reg", "xgb_reg.json"), ("xgb_numeric", "xgb_numeric.json"), ("xgb_reg_ubj", "xgb_reg_ubj.ubj"), ("xgb_binary", "xgb_binary.json"),
        ("xgb_logitraw", "xgb_logitraw.json"), ("xgb_multi", "xgb_multi.json"), ("xgb_multi_softmax", "xgb_multi_softmax.json"),
        ("xgb_rank", "xgb_rank.json"), ("xgb_ndcg", "xgb_ndcg.json"), ("xgb_cox", "xgb_cox.json"),
        ("xgb_poisson", "xgb_poisson.json"), ("xgb_dart", "xgb_dart.json"), ("xgb_aft", "xgb_aft.json"),
        ("lgb_reg", "lgb_reg.txt"), ("lgb_binary", "lgb_binary.txt"), ("lgb_multi", "lgb_multi.txt"),
        ("lgb_zero_missing", "lgb_zero_missing.txt"), ("lgb_no_missing", "lgb_no_missing.txt"), ("lgb_rf", "lgb_rf.txt"),
        ("lgb_poisson", "lgb_poisson.txt"),
        ("skl_rf_reg", "skl_rf_reg.onnx"), ("skl_gb_reg", "skl_gb_reg.onnx"), ("skl_rf_cls", "skl_rf_cls.onnx"),
        ("skl_gb_cls", "skl_gb_cls.onnx"),
    ]

    /// The input and score output of a case's model: skl2onnx names them `X` and `variable`/`probabilities`.
    static func names(_ name: String) -> (input: String, output: String) {
        if name.hasPrefix("skl_") { return ("X", name.hasSuffix("_cls") ? "probabilities" : "variable") }
        return ("x", "predictions")
    }

    /// Asserts `actual` equals `expected` within 1e-5 relative (1e-5 absolute near zero).
    static func expectClose(_ actual: [Float], _ expected: [Float], _ what: String) {
        #expect(actual.count == expected.count, "\(what): \(actual.count) values, expected \(expected.count)")
        var worst = 0, worstError: Float = 0
        for i in 0..<min(actual.count, expected.count) {
            let error = abs(actual[i] - expected[i]) / max(abs(expected[i]), 1)
            if !(error <= worstError) || actual[i].isNaN != expected[i].isNaN { worst = i; worstError = actual[i].isNaN ? .infinity : error }
        }
        #expect(worstError <= 1e-5, "\(what): value \(worst) is \(actual.isEmpty ? .nan : actual[worst]), expected \(expected.isEmpty ? .nan : expected[worst])")
    }

    @Test(arguments: cases.map(\.name))
    func matchesTheFrameworkOnBothBackends(_ name: String) throws {
        let folder = try Self.fixtures.get()
        let file = Self.cases.first { $0.name == name }!.file
        let x = try NPY.read(path: "\(folder)/\(name).x.npy")
        let expected = try NPY.read(path: "\(folder)/\(name).expected.npy").elements(as: Float.self)
        let (input, output) = Self.names(name)
        // Every model, ONNX-ML ones included, becomes Kiln's tree op.
        let model = try Kiln.importModel(path: "\(folder)/\(file)")
        #expect(model.graph.nodes.contains { $0.op == TreeEnsemble.op }, "\(name): \(model.graph.nodes.map(\.op))")
        for backend in ["kiln.cpu", "kiln.reference"] {
            let session = try Kiln.load(path: "\(folder)/\(file)", backend: backend)
            let out = try session.run([input: .tensor(x)])
            let y = try #require(out[output]?.tensor)
            #expect(y.shape[0] == x.shape[0])
            Self.expectClose(y.elements(as: Float.self), expected, "\(name) on \(backend)")
            if name.hasSuffix("_cls") {
                // The label is the class of the highest probability.
                let labels = try #require(out["label"]?.tensor).elements(as: Int64.self)
                let columns = expected.count / x.shape[0]
                let best = (0..<x.shape[0]).map { r in Int64((0..<columns).max { expected[r * columns + $0] < expected[r * columns + $1] }!) }
                #expect(labels == best, "\(name) on \(backend): labels")
            }
        }
        // One row at a time on two threads: kiln.cpu splits the trees among the threads.
        let cpu = try Kiln.load(path: "\(folder)/\(file)",
                                options: Kiln.LoadOptions(backend: "kiln.cpu", configuration: BackendConfiguration(threads: 2)))
        let features = x.shape[1], columns = expected.count / x.shape[0]
        let all = x.elements(as: Float.self)
        for row in [0, 7, 41] {
            let one = Tensor(shape: [1, features], Array(all[(row * features)..<((row + 1) * features)]))
            let y = try #require(try cpu.run([input: .tensor(one)])[output]?.tensor)
            Self.expectClose(y.elements(as: Float.self), Array(expected[(row * columns)..<((row + 1) * columns)]), "\(name) row \(row)")
        }
    }

    /// `kiln compile` recognizes the model by its contents; the artifact runs with `kiln run`.
    @Test func compilesToAnArtifactThatRuns() throws {
        let folder = try Self.fixtures.get()
        for (name, file) in [("xgb_multi", "xgb_multi.json"), ("lgb_binary", "lgb_binary.txt"), ("xgb_reg_ubj", "xgb_reg_ubj.ubj")] {
            let artifact = "\(folder)/\(name).kiln"
            let compile = try KilnTool.run(["compile", "\(folder)/\(file)", "-o", artifact])
            #expect(compile.status == 0, "\(compile.stderr)")
            let run = try KilnTool.run(["run", artifact, "--input", "x=\(folder)/\(name).x.npy", "--output-dir", "\(folder)/\(name)-out"])
            #expect(run.status == 0, "\(run.stderr)")
            let y = try NPY.read(path: "\(folder)/\(name)-out/predictions.npy")
            Self.expectClose(y.elements(as: Float.self), try NPY.read(path: "\(folder)/\(name).expected.npy").elements(as: Float.self), "\(name) artifact")
        }
    }

    /// Broken model files are typed errors that say what is wrong, never crashes.
    @Test func badModelsAreTypedErrors() throws {
        let folder = try temporaryDirectory("kiln-bad-trees")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let bad: [(String, String, String)] = [
            ("truncated.json", #"{"learner": {"learner_model_param": {"num_feature": "3""#, "unterminated"),
            ("nolearner.json", #"{"version": [2, 1, 0]}"#, "learner"),
            ("objective.json", #"{"learner": {"learner_model_param": {"num_feature": "3", "base_score": "0.5"}, "objective": {"name": "reg:fancy"}, "gradient_booster": {"name": "gbtree"}}}"#, "reg:fancy"),
            ("child.json", #"{"learner": {"learner_model_param": {"num_feature": "3", "base_score": "0.5"}, "objective": {"name": "reg:squarederror"}, "gradient_booster": {"name": "gbtree", "model": {"trees": [{"left_children": [1, -1, -1], "right_children": [9, -1, -1], "split_indices": [0, 0, 0], "split_conditions": [0.5, 1, 2], "default_left": [0, 0, 0]}], "tree_info": [0]}}}}"#, "child out of range"),
            ("tree.txt", "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=2\nobjective=regression\n\nTree=0\nnum_leaves=2\nsplit_feature=7\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=1 2\n", "feature 7"),
            ("ubj.ubj", "{i\u{7}learner{", "UBJSON"),
        ]
        for (file, text, mention) in bad {
            let path = "\(folder)/\(file)"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try Kiln.importModel(path: path)
                Issue.record("\(file) imported")
            } catch let error as KilnError {
                #expect(error.code == .invalidModel || error.code == .unsupported, "\(file): \(error)")
                #expect(error.message.contains(mention), "\(file): \(error.message)")
            }
        }
    }
}
