import ArgumentParser
import Kiln

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a model on .npy inputs.")

    @Argument(help: "The model file (.onnx).")
    var model: String

    func run() throws {
        try diagnosing {
            _ = try Kiln.load(path: model)
        }
    }
}
