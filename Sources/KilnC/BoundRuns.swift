import CKilnABI
import Kiln

/// `kiln_run`'s fast path: the bound runs (`Session.bind`) of one model, one per input signature seen
/// recently, and the checks that decide whether a call may take one.
///
/// A call takes a bound run only when nothing in it needs the general path: no timeout, the right counts,
/// every tensor on the CPU, compact, non-NULL, inputs aligned to their element width, and outputs of exactly
/// the dtypes and shapes the run produces. Every other call (and every call on a model the session cannot
/// bind) takes the general path, which reports each problem as before. Signatures are compared by a
/// linear scan over a few entries: no hashing and no allocation per call.
final class BoundRuns: @unchecked Sendable {
    /// One input signature and its bound run (nil: the session declined it; the general path runs it).
    final class Entry {
        /// Per input: the dtype word (`word(_:)`), the rank, then the dims.
        let inputs: [Int64]
        /// Per input: the element width in bytes (its data must be aligned to it).
        let widths: [Int]
        /// Per output: the dtype word, the rank, then the dims.
        let outputs: [Int64]
        /// The bound run.
        let run: (any BoundRun)?

        init(inputs: [Int64], widths: [Int], run: (any BoundRun)?) {
            self.inputs = inputs
            self.widths = widths
            self.run = run
            outputs = (run?.outputs ?? []).flatMap { [BoundRuns.word(TensorBridge.cType($0.dtype)), Int64($0.shape.count)] + $0.shape.map(Int64.init) }
        }
    }

    /// Signatures kept at most; a new one beyond it replaces the oldest.
    static let limit = 8
    private let session: Session
    /// Whether the session can bind runs at all (else every call takes the general path at once).
    private let binds: Bool
    /// How many tensors the caller passes in and receives.
    private let inputTotal: Int, outputTotal: Int
    private let lock = Lock()
    private var entries: [Entry] = []
    private var replaced = 0

    init(session: Session) {
        self.session = session
        binds = session.bindsRuns
        inputTotal = session.requiredInputs.count
        outputTotal = session.outputs.count
    }

    /// A `kiln_dtype` as one number.
    @inline(__always)
    static func word(_ t: kiln_dtype) -> Int64 {
        Int64(t.code) | Int64(t.bits) << 8 | Int64(t.lanes) << 16
    }

    /// Whether tensor `t` has the dtype and shape at `key[position...]`; advances `position` past them.
    /// Reads `t.shape` only when its rank is in range and it is not NULL.
    @inline(__always)
    private static func matches(_ t: kiln_tensor, _ key: [Int64], _ position: inout Int) -> Bool {
        guard position + 1 < key.count, key[position] == word(t.dtype), key[position + 1] == Int64(t.ndim) else { return false }
        let rank = Int(t.ndim)
        position += 2
        if rank > 0 {
            guard let shape = t.shape, position + rank <= key.count else { return false }
            for axis in 0..<rank where shape[axis] != key[position + axis] { return false }
        }
        position += rank
        return true
    }

    /// Whether `t`'s memory can be used as is: on the CPU, compact, data not NULL, a sane byte offset.
    /// Its dtype and shape must already match a signature (`matches`).
    @inline(__always)
    private static func usable(_ t: kiln_tensor) -> Bool {
        guard t.device.device_type == Int32(KILN_DEVICE_CPU), t.device.device_id == 0, t.data != nil,
              t.byte_offset <= UInt64(Int.max / 2), t.ndim == 0 || t.shape != nil else { return false }
        let shape = t.shape
        return TensorBridge.isCompact(rank: Int(t.ndim), dim: { Int(shape![$0]) }, strides: t.strides)
    }

    /// The entry whose input signature is that of `inputs` (the caller's `count` tensors), or nil.
    private func entry(_ inputs: UnsafePointer<kiln_tensor>, _ count: Int) -> Entry? {
        lock.withLock {
            search: for entry in entries {
                var position = 0
                for i in 0..<count {
                    if !Self.matches(inputs[i], entry.inputs, &position) { continue search }
                }
                if position == entry.inputs.count { return entry }
            }
            return nil
        }
    }

    /// Binds a run for the signature of `inputs` and keeps it; nil (nothing kept) when the tensors or the
    /// preparation have a problem the general path will report.
    private func bind(_ inputs: UnsafePointer<kiln_tensor>, _ count: Int) -> Entry? {
        var signature: [(shape: [Int], dtype: DType)] = []
        var key: [Int64] = []
        var widths: [Int] = []
        for i in 0..<count {
            let t = inputs[i]
            guard let shape = try? TensorBridge.shape(of: t, ""), let dtype = TensorBridge.dtype(t.dtype), let width = dtype.byteWidth else { return nil }
            signature.append((shape, dtype))
            key += [Self.word(t.dtype), Int64(shape.count)] + shape.map(Int64.init)
            widths.append(width)
        }
        // A preparation error is left for the general path to report as it always has (nothing is kept).
        let run: (any BoundRun)?
        do { run = try session.bind(signature) } catch { return nil }
        let made = Entry(inputs: key, widths: widths, run: run)
        return lock.withLock {
            if let existing = entries.first(where: { $0.inputs == key }) { return existing }
            if entries.count < Self.limit {
                entries.append(made)
            } else {
                entries[replaced] = made
                replaced = (replaced + 1) % Self.limit
            }
            return made
        }
    }

    /// Runs the model through a bound run, writing its outputs into the caller's tensors, when the call
    /// allows it (see the type's description); false, having done nothing, when the general path must run.
    /// A bound run's own error is thrown. `options` must already be checked.
    func run(_ inputs: UnsafePointer<kiln_tensor>?, _ inputCount: Int, _ outputs: UnsafeMutablePointer<kiln_tensor>?, _ outputCount: Int) throws -> Bool {
        guard binds, inputCount == inputTotal, outputCount == outputTotal,
              inputCount == 0 || inputs != nil, outputCount == 0 || outputs != nil else { return false }
        // A model without inputs (or outputs) may be given NULL for them: nothing is read through this one.
        var none = kiln_tensor()
        return try withUnsafeMutablePointer(to: &none) { none in
            try run(inputs ?? UnsafePointer(none), inputCount, outputs ?? none, outputCount)
        }
    }

    private func run(_ inputs: UnsafePointer<kiln_tensor>, _ inputCount: Int, _ outputs: UnsafeMutablePointer<kiln_tensor>, _ outputCount: Int) throws -> Bool {
        guard let entry = entry(inputs, inputCount) ?? bind(inputs, inputCount), let run = entry.run else { return false }
        var position = 0
        for i in 0..<outputCount {
            if !Self.matches(outputs[i], entry.outputs, &position) || !Self.usable(outputs[i]) { return false }
        }
        guard position == entry.outputs.count else { return false }
        return try withUnsafeTemporaryAllocation(of: UnsafeRawPointer.self, capacity: max(inputCount, 1)) { sources in
            for i in 0..<inputCount {
                let t = inputs[i]
                guard Self.usable(t) else { return false }
                let base = UnsafeRawPointer(t.data!) + Int(t.byte_offset)
                guard Int(bitPattern: base) % entry.widths[i] == 0 else { return false }
                sources[i] = base
            }
            return try withUnsafeTemporaryAllocation(of: UnsafeMutableRawPointer.self, capacity: max(outputCount, 1)) { destinations in
                for i in 0..<outputCount { destinations[i] = outputs[i].data! + Int(outputs[i].byte_offset) }
                try run.run(inputs: UnsafePointer(sources.baseAddress!), outputs: UnsafePointer(destinations.baseAddress!))
                return true
            }
        }
    }
}
