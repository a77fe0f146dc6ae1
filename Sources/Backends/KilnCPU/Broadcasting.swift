import CKilnKernels
import KilnIR

/// NumPy-style broadcasting of binary elementwise operations over the C kernel `kiln_binary`, which handles
/// a matrix against a matrix, a scalar, a row or a column: dims are merged, and what remains is a list of
/// kernel calls at precomputed offsets.
enum Broadcasting {
    /// The broadcast shape of `a` and `b`, or nil.
    static func shape(_ a: [Int], _ b: [Int]) -> [Int]? {
        let rank = max(a.count, b.count)
        var out = [Int](repeating: 1, count: rank)
        for (s, offset) in [(a, rank - a.count), (b, rank - b.count)] {
            for (i, d) in s.enumerated() {
                let j = i + offset
                if out[j] == d || d == 1 { continue }
                if out[j] == 1 { out[j] = d } else { return nil }
            }
        }
        return out
    }

    /// One call of `kiln_binary` (offsets in elements).
    struct Call {
        var a: Int, b: Int, out: Int
        var broadcast: kiln_broadcast
        var rows: Int, cols: Int, bLength: Int
        var swap: Bool
    }

    /// The calls that compute `out = a op b` for `a`, `b` broadcast to `out` (elements per call ≤ `chunk`
    /// where a call can be cut).
    static func calls(a aShape: [Int], b bShape: [Int], out: [Int], chunk: Int) -> [Call] {
        let rank = out.count
        func strides(_ s: [Int]) -> [Int] {
            var result = [Int](repeating: 0, count: rank)
            var running = 1
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                let j = i + rank - s.count
                result[j] = s[i] == 1 ? 0 : running
                running *= s[i]
            }
            return result
        }
        let sa0 = strides(aShape), sb0 = strides(bShape)
        var dims: [Int] = [], sa: [Int] = [], sb: [Int] = []
        for i in 0..<rank where out[i] != 1 {
            if let last = dims.indices.last, sa[last] == sa0[i] * out[i], sb[last] == sb0[i] * out[i] {
                dims[last] *= out[i]
                sa[last] = sa0[i]
                sb[last] = sb0[i]
            } else {
                dims.append(out[i])
                sa.append(sa0[i])
                sb.append(sb0[i])
            }
        }
        if dims.isEmpty { return [Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_NONE, rows: 1, cols: 1, bLength: 1, swap: false)] }
        // The inner block: the last dim, or the last two when they form a row or column pattern.
        var template: Call
        var inner = 1
        let n = dims.count
        let c = dims[n - 1]
        if n >= 2 && sa[n - 1] == 1 && sa[n - 2] == c && sb[n - 1] == 1 && sb[n - 2] == 0 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_ROW, rows: dims[n - 2], cols: c, bLength: c, swap: false)
            inner = 2
        } else if n >= 2 && sb[n - 1] == 1 && sb[n - 2] == c && sa[n - 1] == 1 && sa[n - 2] == 0 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_ROW, rows: dims[n - 2], cols: c, bLength: c, swap: true)
            inner = 2
        } else if n >= 2 && sa[n - 1] == 1 && sa[n - 2] == c && sb[n - 1] == 0 && sb[n - 2] == 1 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_COLUMN, rows: dims[n - 2], cols: c, bLength: dims[n - 2], swap: false)
            inner = 2
        } else if n >= 2 && sb[n - 1] == 1 && sb[n - 2] == c && sa[n - 1] == 0 && sa[n - 2] == 1 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_COLUMN, rows: dims[n - 2], cols: c, bLength: dims[n - 2], swap: true)
            inner = 2
        } else if sa[n - 1] == 1 && sb[n - 1] == 1 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_NONE, rows: 1, cols: c, bLength: c, swap: false)
            inner = 1
        } else if sa[n - 1] == 1 {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_SCALAR, rows: 1, cols: c, bLength: 1, swap: false)
            inner = 1
        } else {
            template = Call(a: 0, b: 0, out: 0, broadcast: KILN_BROADCAST_SCALAR, rows: 1, cols: c, bLength: 1, swap: true)
            inner = 1
        }
        let outer = Array(dims[..<(n - inner)])
        let blockSize = template.rows * template.cols
        var calls: [Call] = []
        var index = [Int](repeating: 0, count: outer.count)
        let total = outer.reduce(1, *)
        var outStrides = [Int](repeating: 0, count: outer.count)
        var running = blockSize
        for i in stride(from: outer.count - 1, through: 0, by: -1) {
            outStrides[i] = running
            running *= outer[i]
        }
        for _ in 0..<total {
            var call = template
            for i in 0..<outer.count {
                call.a += index[i] * sa[i]
                call.b += index[i] * sb[i]
                call.out += index[i] * outStrides[i]
            }
            calls.append(contentsOf: cut(call, chunk: chunk))
            var axis = outer.count - 1
            while axis >= 0 {
                index[axis] += 1
                if index[axis] < outer[axis] { break }
                index[axis] = 0
                axis -= 1
            }
        }
        return calls
    }

    /// `call` cut into pieces of about `chunk` elements (by rows, or by columns for a one-row call).
    private static func cut(_ call: Call, chunk: Int) -> [Call] {
        let size = call.rows * call.cols
        guard size > chunk else { return [call] }
        var pieces: [Call] = []
        if call.rows > 1 {
            for r in splitRange(call.rows, parts: (size + chunk - 1) / chunk) {
                var piece = call
                piece.rows = r.count
                piece.out += r.lowerBound * call.cols
                let full = call.swap ? \Call.b : \Call.a
                piece[keyPath: full] += r.lowerBound * call.cols
                if call.broadcast == KILN_BROADCAST_COLUMN {
                    let other = call.swap ? \Call.a : \Call.b
                    piece[keyPath: other] += r.lowerBound
                    piece.bLength = r.count
                } else if call.broadcast == KILN_BROADCAST_NONE {
                    piece.b += r.lowerBound * call.cols
                }
                pieces.append(piece)
            }
        } else {
            for r in splitRange(call.cols, parts: (size + chunk - 1) / chunk, granule: 16) {
                var piece = call
                piece.cols = r.count
                piece.out += r.lowerBound
                switch call.broadcast {
                case KILN_BROADCAST_NONE:
                    piece.a += r.lowerBound
                    piece.b += r.lowerBound
                    piece.bLength = r.count
                default:
                    if call.swap { piece.b += r.lowerBound } else { piece.a += r.lowerBound }
                }
                pieces.append(piece)
            }
        }
        return pieces
    }

    /// Adds a step computing `output = a op b` with broadcasting; `output` must already be defined with the
    /// broadcast shape (it may be `a` or `b` itself when the shapes are equal).
    static func planBinary(_ builder: PlanBuilder, op: kiln_binary_op, a: Int, b: Int, output: Int, kind: String? = nil) throws {
        let aShape = try builder.shape(a), bShape = try builder.shape(b), outShape = try builder.shape(output)
        let count = outShape.reduce(1, *)
        if count == 0 { return }
        let chunk = builder.threads > 1 && count >= 32_768 ? (count + builder.threads * 2 - 1) / (builder.threads * 2) : Int.max
        let calls = Self.calls(a: aShape, b: bShape, out: outShape, chunk: max(chunk, 4096))
        if calls.count == 1 {
            // One call (small tensors): no closure per run, whose context Swift would allocate every time —
            // that allocation was most of the time of a step on [1, 64] tensors.
            let call = calls[0]
            builder.step(kind) { frame in
                let ap = frame.f(a), bp = frame.f(b)
                kiln_binary(op, call.broadcast, call.rows, call.cols, call.swap ? bp + call.b : ap + call.a,
                            call.swap ? ap + call.a : bp + call.b, call.bLength, call.swap ? 1 : 0, frame.f(output) + call.out)
            }
            return
        }
        builder.step(kind) { frame in
            let ap = frame.f(a), bp = frame.f(b), op0 = frame.f(output)
            let run = { (call: Call) in
                // kiln_binary reads the full operand as `a`; with swap, the roles of the inputs are exchanged.
                let full = call.swap ? bp + call.b : ap + call.a
                let other = call.swap ? ap + call.a : bp + call.b
                kiln_binary(op, call.broadcast, call.rows, call.cols, full, other, call.bLength, call.swap ? 1 : 0, op0 + call.out)
            }
            if calls.count == 1 {
                run(calls[0])
            } else if chunk == Int.max {
                for call in calls { run(call) }
            } else {
                frame.pool.parallelFor(calls.count) { run(calls[$0]) }
            }
        }
    }
}
