import CKilnKernels
import KilnIR

/// One link of an elementwise chain.
enum ChainLink {
    /// An activation (`kiln_activation_apply`).
    case activation(Activation)
    /// A unary function (`kiln_unary`).
    case unary(kiln_unary_op, name: String)
    /// `x op constant`, or `constant op x` when `swap`.
    case scalar(kiln_binary_op, Float, swap: Bool, name: String)

    var name: String {
        switch self {
        case .activation(let a): a.name
        case .unary(_, let name): name
        case .scalar(_, _, _, let name): name
        }
    }
}

/// A chain of unary functions and operations with scalar constants on one tensor (Relu, Erf, Div by a
/// constant, the GELU pattern…), run block by block so each block stays in cache across the links.
final class ChainOperation: Operation {
    let kind: String
    let label: String
    let x: Int
    let output: Int
    let links: [ChainLink]
    /// The broadcast shape contributed by scalar constants of higher rank (`[1,1]`), if any.
    let constantShapes: [[Int]]

    var inputs: [Int] { [x] }
    var outputs: [Int] { [output] }

    init(label: String, x: Int, output: Int, links: [ChainLink], constantShapes: [[Int]]) {
        kind = links.map(\.name).joined(separator: "+")
        self.label = label
        self.x = x
        self.output = output
        self.links = links
        self.constantShapes = constantShapes
    }

    func plan(_ b: PlanBuilder) throws {
        try b.requireFloat(x)
        var shape = try b.shape(x)
        for s in constantShapes {
            guard let joint = Broadcasting.shape(shape, s) else { throw b.invalid("shapes \(shape) and \(s) do not broadcast") }
            shape = joint
        }
        try b.defineInPlace(output, shape: shape, reusing: [x])
        let count = shape.reduce(1, *)
        if count == 0 { return }
        let block = 8192
        let blocks = (count + block - 1) / block
        let parallel = b.threads > 1 && count >= 32_768
        let (x, output, links) = (self.x, self.output, self.links)
        b.step { frame in
            let src = frame.f(x), dst = frame.f(output)
            let body = { (i: Int) in
                let start = i * block
                let n = min(block, count - start)
                var from = UnsafePointer(src + start)
                let to = dst + start
                for link in links {
                    switch link {
                    case .activation(let a): a.apply(from, to, count: n)
                    case .unary(let op, _): kiln_unary(op, n, from, to)
                    case .scalar(let op, var value, let swap, _):
                        kiln_binary(op, KILN_BROADCAST_SCALAR, 1, n, from, &value, 1, swap ? 1 : 0, to)
                    }
                    from = UnsafePointer(to)
                }
                if links.isEmpty && from != UnsafePointer(to) { to.update(from: from, count: n) }
            }
            if parallel { frame.pool.parallelFor(blocks, body) } else { for i in 0..<blocks { body(i) } }
        }
    }
}

/// Add, Sub, Mul, Div, Max, Min, Sum with NumPy broadcasting (variadic ones fold left).
final class BinaryOperation: Operation {
    let kind: String
    let label: String
    let operands: [Int]
    let output: Int
    let op: kiln_binary_op

    var inputs: [Int] { operands }
    var outputs: [Int] { [output] }

    init(node: Node, operands: [Int], output: Int, op: kiln_binary_op) {
        kind = node.op.name
        label = node.displayName
        self.operands = operands
        self.output = output
        self.op = op
    }

    func plan(_ b: PlanBuilder) throws {
        var shape: [Int] = try b.shape(operands[0])
        for v in operands {
            try b.requireFloat(v)
            guard let joint = Broadcasting.shape(shape, try b.shape(v)) else {
                throw b.invalid("shapes \(try operands.map { try b.shape($0) }) do not broadcast")
            }
            shape = joint
        }
        if operands.count == 1 {
            try b.defineView(output, of: operands[0], shape: shape)
            return
        }
        let reusable = try operands.prefix(2).filter { try b.shape($0) == shape }
        try b.defineInPlace(output, shape: shape, reusing: reusable)
        try Broadcasting.planBinary(b, op: op, a: operands[0], b: operands[1], output: output)
        for v in operands.dropFirst(2) {
            try Broadcasting.planBinary(b, op: op, a: output, b: v, output: output)
        }
    }
}
