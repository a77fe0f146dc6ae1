import Kiln
import Testing
@testable import KilnReference

/// Issue 16 on kiln.reference: a memory cap that counts bytes, and run deadlines inside control flow.
@Suite struct ReferenceReliabilityTests {
    static func error(_ body: () throws -> Void) -> KilnError? {
        do { try body(); return nil } catch let e as KilnError { return e } catch { return nil }
    }

    /// A Loop with trip count 2^62 and a constant-true condition ends at the run's deadline.
    @Test func anEndlessLoopStopsAtTheDeadline() throws {
        let body = Graph(name: "body",
                         inputs: [Value(name: "i", type: .tensor(TensorType(.int64, fixed: []))),
                                  Value(name: "c", type: .tensor(TensorType(.bool, fixed: []))),
                                  Value(name: "v", type: .tensor(TensorType(.float32, fixed: [1])))],
                         outputs: [Value(name: "c_out"), Value(name: "v_out")],
                         nodes: [Node(op: OpID("", "Identity"), inputs: ["c"], outputs: ["c_out"]),
                                 Node(op: OpID("", "Identity"), inputs: ["v"], outputs: ["v_out"])])
        let graph = Graph(name: "g", inputs: [Value(name: "x", type: .tensor(TensorType(.float32, fixed: [1])))],
                          outputs: [Value(name: "y")],
                          initializers: ["trips": Tensor(scalar: Int64(1) << 62), "cond": Tensor(shape: [], [true])],
                          nodes: [Node(op: OpID("", "Loop"), inputs: ["trips", "cond", "x"], outputs: ["y"], attributes: ["body": .graph(body)])])
        let session = try Session(model: Model(graph: graph), backend: ReferenceBackend())
        let clock = ContinuousClock()
        let start = clock.now
        let error = Self.error {
            _ = try session.run(["x": .tensor(Tensor(shape: [1], [Float(1)]))], options: RunOptions(timeout: .milliseconds(200)))
        }
        #expect(error?.code == .runtime && error?.message == "run exceeded its deadline of 0.2 s", "\(String(describing: error))")
        #expect(clock.now - start < .seconds(30))
    }

    /// ConstantOfShape [2^31] asked for 2^31 elements (16 GiB of working copies): the cap counts bytes.
    @Test func theTensorCapCountsBytesWithWorkingCopies() throws {
        let graph = Graph(name: "g", outputs: [Value(name: "y")],
                          initializers: ["shape": Tensor(shape: [1], [Int64(1) << 31])],
                          nodes: [Node(op: OpID("", "ConstantOfShape"), inputs: ["shape"], outputs: ["y"])])
        let session = try Session(model: Model(graph: graph), backend: ReferenceBackend())
        let error = Self.error { _ = try session.run([:]) }
        #expect(error?.message.contains("GiB per tensor") == true, "\(String(describing: error))")
    }
}
