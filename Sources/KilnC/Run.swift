import CKilnABI
import Kiln

/// What a `kiln_outputs *` points to: the results of one run, with their names and shapes in C form.
final class OutputsHandle {
    /// The results, in model-output order.
    let tensors: [Tensor]
    /// Output names as C strings.
    let names: [UnsafePointer<CChar>]
    /// Each result's shape as a C array.
    let shapes: [CArray<Int64>]
    private let strings = CStringPool()

    init(tensors: [Tensor], names: [String]) {
        self.tensors = tensors
        let strings = self.strings
        self.names = names.map { strings.add($0) }
        shapes = tensors.map { CArray($0.shape.map(Int64.init)) }
    }
}

/// The owner of input memory borrowed from the C caller for one run.
final class BorrowedInputs {}

/// Running a model on the caller's `kiln_tensor`s.
enum ModelRun {
    /// Checks the run options (`flags` is reserved and must be 0) and returns them as `RunOptions`
    /// (`timeout_ms` > 0: a run deadline).
    static func checkOptions(_ options: UnsafePointer<kiln_run_options>?) throws -> RunOptions {
        guard let options = try VersionedStruct.read(options, "kiln_run_options") else { return RunOptions() }
        if options.flags != 0 {
            throw KilnError(.invalidArgument, "kiln_run_options.flags is \(options.flags); no flags are defined in ABI 1.0 (it must be 0)")
        }
        guard options.timeout_ms > 0 else { return RunOptions() }
        guard options.timeout_ms <= UInt64(Int64.max / 1_000_000) else {
            throw KilnError(.invalidArgument, "kiln_run_options.timeout_ms is \(options.timeout_ms); too large")
        }
        return RunOptions(timeout: .milliseconds(Int64(options.timeout_ms)))
    }

    /// Runs `model` on `count` input tensors at `inputs` and returns the results in model-output order.
    /// No result refers to the caller's memory when this returns.
    static func run(_ model: ModelHandle, _ inputs: UnsafePointer<kiln_tensor>?, _ count: Int, _ function: String,
                    options: RunOptions = RunOptions()) throws -> [Tensor] {
        let expected = model.inputs
        guard count == expected.count else {
            throw KilnError(.invalidArgument, "\(function): input_count is \(count), but the model takes \(expected.count) input(s)"
                + (expected.isEmpty ? "" : " (\(expected.map(\.name).joined(separator: ", ")))"))
        }
        if count > 0 && inputs == nil { throw nullArgument("inputs", of: function) }
        let owner = BorrowedInputs()
        var borrowed: [TensorStorage] = []
        var values: [String: RuntimeValue] = [:]
        for (i, input) in expected.enumerated() {
            let tensor = try TensorBridge.input(inputs![i], "input '\(input.name)' (inputs[\(i)])", owner: owner)
            if let (storage, _) = tensor.storage { borrowed.append(storage) }
            values[input.name] = .tensor(tensor)
        }
        let results = try model.session.runOrdered(values, options: options)
        return try zip(model.outputs, results).map { output, value in
            guard let tensor = value.tensor else {
                throw KilnError(.unsupported, "output '\(output.name)' is \(value.summary), not a tensor; the C ABI 1.0 returns tensors only")
            }
            guard tensor.dtype != .string else {
                throw KilnError(.unsupported, "output '\(output.name)' is a string tensor; the C ABI 1.0 carries numeric tensors only")
            }
            // A result that shares the caller's input memory (an Identity, a Reshape) is copied out.
            if let (storage, _) = tensor.storage, borrowed.contains(where: { $0 === storage }), let bytes = tensor.rawBytes {
                return Tensor(dtype: tensor.dtype, shape: tensor.shape, storage: TensorStorage(copying: bytes))
            }
            return tensor
        }
    }
}

/// Runs `model`, writing its outputs into the caller's tensors after checking their dtypes and shapes.
@c @implementation
public func kiln_run(_ model: OpaquePointer?, _ inputs: UnsafePointer<kiln_tensor>?, _ inputCount: Int,
                     _ outputs: UnsafeMutablePointer<kiln_tensor>?, _ outputCount: Int, _ options: UnsafePointer<kiln_run_options>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_run"
        let model = try Handle.resolve(model, "model", of: function, as: ModelHandle.self)
        let runOptions = try ModelRun.checkOptions(options)
        guard outputCount == model.outputs.count else {
            throw KilnError(.invalidArgument, "\(function): output_count is \(outputCount), but the model has \(model.outputs.count) output(s) "
                + "(\(model.outputs.map(\.name).joined(separator: ", ")))")
        }
        if outputCount > 0 && outputs == nil { throw nullArgument("outputs", of: function) }
        if runOptions.timeout == nil, try model.boundRuns.run(inputs, inputCount, outputs, outputCount) { return }
        let results = try ModelRun.run(model, inputs, inputCount, function, options: runOptions)
        for (i, result) in results.enumerated() {
            let given = outputs![i]
            func what() -> String { "output '\(model.outputs[i].name)' (outputs[\(i)])" }
            let shape = try TensorBridge.shape(of: given, what())
            let expected = TensorBridge.cType(result.dtype)
            guard given.dtype.code == expected.code, given.dtype.bits == expected.bits, given.dtype.lanes == expected.lanes,
                  shape == result.shape else {
                throw KilnError(.invalidArgument, "\(what()): expected \(result.dtype)[\(result.shape.map(String.init).joined(separator: ","))] (the result of this run), "
                    + "given \(TensorBridge.describe(given, shape: shape))")
            }
            try TensorBridge.checkMemory(of: given, byteCount: result.rawBytes?.count ?? 0, what())
        }
        for (i, result) in results.enumerated() { TensorBridge.copy(result, into: outputs![i]) }
    }
}

/// Runs `model` and returns its outputs in a new `kiln_outputs`.
@c @implementation
public func kiln_run_alloc(_ model: OpaquePointer?, _ inputs: UnsafePointer<kiln_tensor>?, _ inputCount: Int,
                           _ options: UnsafePointer<kiln_run_options>?, _ outOutputs: UnsafeMutablePointer<OpaquePointer?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_run_alloc"
        let model = try Handle.resolve(model, "model", of: function, as: ModelHandle.self)
        let out = try Handle.require(outOutputs, "out_outputs", of: function)
        let runOptions = try ModelRun.checkOptions(options)
        let results = try ModelRun.run(model, inputs, inputCount, function, options: runOptions)
        out.pointee = Handle.retain(OutputsHandle(tensors: results, names: model.outputs.map(\.name)))
    }
}

/// The number of tensors in `outputs`.
@c @implementation
public func kiln_outputs_count(_ outputs: OpaquePointer?, _ outCount: UnsafeMutablePointer<Int>?) -> OpaquePointer? {
    guarded {
        let outputs = try Handle.resolve(outputs, "outputs", of: "kiln_outputs_count", as: OutputsHandle.self)
        try Handle.store(outputs.tensors.count, outCount, "out_count", of: "kiln_outputs_count")
    }
}

/// The name of output `index`, owned by `outputs`.
@c @implementation
public func kiln_outputs_name(_ outputs: OpaquePointer?, _ index: Int, _ outName: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_outputs_name"
        let outputs = try Handle.resolve(outputs, "outputs", of: function, as: OutputsHandle.self)
        let i = try Handle.index(index, count: outputs.names.count, "output list", of: function)
        try Handle.store(outputs.names[i], outName, "out_name", of: function)
    }
}

/// A view of output `index` (compact, on the CPU), owned by `outputs`.
@c @implementation
public func kiln_outputs_get(_ outputs: OpaquePointer?, _ index: Int, _ outTensor: UnsafeMutablePointer<kiln_tensor>?) -> OpaquePointer? {
    guarded {
        let function = "kiln_outputs_get"
        let outputs = try Handle.resolve(outputs, "outputs", of: function, as: OutputsHandle.self)
        let i = try Handle.index(index, count: outputs.tensors.count, "output list", of: function)
        let tensor = outputs.tensors[i]
        var view = kiln_tensor()
        view.data = tensor.rawBytes?.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }
        view.device = kiln_device(device_type: Int32(KILN_DEVICE_CPU), device_id: 0)
        view.ndim = Int32(tensor.rank)
        view.dtype = TensorBridge.cType(tensor.dtype)
        view.shape = tensor.rank > 0 ? outputs.shapes[i].base : nil
        view.strides = nil
        view.byte_offset = 0
        try Handle.store(view, outTensor, "out_tensor", of: function)
    }
}

/// Frees `outputs` (NULL is allowed).
@c @implementation
public func kiln_outputs_free(_ outputs: OpaquePointer?) {
    Handle.release(outputs)
}
