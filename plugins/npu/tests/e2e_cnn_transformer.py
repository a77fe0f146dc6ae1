"""e2e_cnn_transformer.py — a small CNN and a small transformer block compiled for --target npu-nc2, run in the
functional simulator, and compared with kiln.reference.

CNN (NCHW, built here with the onnx package):
    c1 = Relu(Conv(x[2,3,14,14], W1[8,3,3,3], B1, pads 1))       -> im2col by DMA + TensorE, ReLU fused in the drain
    p1 = MaxPool(c1, 3x3, stride 2, pads 1)                          -> DMA window gathers, -inf padding, VectorE max
    d  = Relu(Conv(p1, Wd[8,1,3,3], Bd, group 8, pads 1))           -> depthwise: VectorE taps, bias and ReLU fused in the drain
    e  = Conv(d, We[8,4,3,3], Be, group 2, pads 1)                   -> grouped (4 channels per group): one implicit GEMM per group
    eh = Abs(e)                                                      -> not supported: kiln.cpu (with reason), the fallback path
    c2 = Conv(eh, W2[16,8,3,3], strides 2, pads [1,0,0,1], dilations 1, no bias)
    s  = Conv(c2, Ws[16,1,3,3], group 16, strides [2,1], dilations 2, pads [2,1,1,2])  -> depthwise, two phase planes
    a2 = AveragePool(s, 2x2, stride 1, pads [1,1,0,0])               -> count_include_pad 0: per-position 1/count
    g  = GlobalAveragePool(a2)                                       -> VectorE reduce + ScalarE scale
    y  = Softmax(Gemm(Flatten(g), Wf[16,10], bf))                    -> Flatten a DMA copy; Gemm and Softmax on the NPU
  outputs y, p1, d and a2.
Transformer block (x[1,16,64]): LayerNorm -> Q/K/V MatMuls -> scores Q·K^T (two activations: K^T is loaded as the
  stationary operand at run time) · 1/8 (Mul by a row) -> Softmax -> ·V (two activations) -> Wo -> residual Add -> LayerNorm -> MLP (MatMul + bias + ReLU fused,
  MatMul) -> residual Add. Output y. (The Transpose of K runs on the NPU, a DMA copy.)
Copies (x[4,6,200], DMA only): Transpose [0,2,1] -> Relu -> Transpose back -> Concat with a constant [4,3,200] on axis 1
  -> Sigmoid -> Reshape to [4,10,180] -> Flatten -> MatMul [1800,16] -> m; and Transpose [2,0,1] (axis 0 moves) -> Tanh
  -> y2. Every node on the NPU.
Upsampling (x[2,16,5,6], a DB text detector's head in small): pointwise Conv + Relu (TensorE reads the image in place)
  -> nearest Resize x2 (asymmetric, floor: PP-OCR's), x4/x3 by sizes (half_pixel, round_prefer_floor) and x2 again
  (defaults): DMA copies; ConvTranspose 2x2 stride 2 with bias, then BatchNormalization (not folded into it: two
  VectorE passes) and Relu, and 3x3 stride 3 without bias: one matmul each and a scatter by DMA. Every node on the NPU.

Checks, for auto-cast none and matmul (passed as --backend-option auto-cast=MODE):
  * placement: Conv (group 1, grouped and depthwise), MaxPool, AveragePool, GlobalAveragePool, Softmax and
    LayerNormalization run on sampleneuron.nc2, and all eight MatMuls of the transformer; the Abs falls back to
    kiln.cpu with its reason;
  * none: max|npu - ref| / max|ref| <= 1e-5 on every output (fp32 all the way; exp, 1/x and 1/sqrt are libm's);
  * matmul: the same error is > 0 (the cast happened) and <= 2^-5 (bf16 operands of the Conv/MatMul engines, about
    2^-8 relative each, through two to six chained contractions, softmax and normalization; the pools, Softmax and
    LayerNormalization themselves compute in fp32 in every mode).
    python e2e_cnn_transformer.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, failures, placements, reference, relative_errors, run, save_model  # noqa: E402

NONE_BOUND = 1e-5
MATMUL_BOUND = 2.0 ** -5
NPU = "sampleneuron.nc2"


def cnn(path, rng):
    """Writes the CNN; returns its input."""
    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("W1", (8, 3, 3, 3), 27 ** -0.5), init("B1", (8,), 0.1), init("Wd", (8, 1, 3, 3), 1 / 3), init("Bd", (8,), 0.1),
             init("We", (8, 4, 3, 3), 36 ** -0.5), init("Be", (8,), 0.1), init("W2", (16, 8, 3, 3), 72 ** -0.5), init("Ws", (16, 1, 3, 3), 1 / 3),
             init("Wf", (16, 10), 0.5), init("bf", (10,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1pre"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1pre"], ["c1"]),
        helper.make_node("MaxPool", ["c1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "Wd", "Bd"], ["dpre"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["dpre"], ["d"]),
        helper.make_node("Conv", ["d", "We", "Be"], ["e"], group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["e"], ["eh"]),
        helper.make_node("Conv", ["eh", "W2"], ["c2"], strides=[2, 2], pads=[1, 0, 0, 1]),
        helper.make_node("Conv", ["c2", "Ws"], ["s"], group=16, strides=[2, 1], dilations=[2, 2], pads=[2, 1, 1, 2]),
        helper.make_node("AveragePool", ["s"], ["a2"], kernel_shape=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("GlobalAveragePool", ["a2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "Wf", "bf"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    out = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [out("x", [2, 3, 14, 14])], [out("y", [2, 10]), out("p1", [2, 8, 7, 7]), out("d", [2, 8, 7, 7]), out("a2", [2, 16, 2, 3])], inits)
    return {"x": rng.standard_normal((2, 3, 14, 14)).astype(np.float32)}


def transformer(path, rng):
    """Writes the transformer block; returns its input."""
    D, F, T = 64, 128, 16
    def init(name, shape, scale, offset=0.0):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale + offset).astype(np.float32), name)
    inits = [init("g1", (D,), 0.1, 1.0), init("b1", (D,), 0.1), init("Wq", (D, D), D ** -0.5), init("Wk", (D, D), D ** -0.5),
             init("Wv", (D, D), D ** -0.5), init("Wo", (D, D), D ** -0.5), init("g2", (D,), 0.1, 1.0), init("b2", (D,), 0.1),
             init("Wa", (D, F), D ** -0.5), init("ba", (F,), 0.1), init("Wb", (F, D), F ** -0.5),
             numpy_helper.from_array(np.full((T,), 0.125, np.float32), "inv_sqrt_d")]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g1", "b1"], ["n1"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["n1", "Wq"], ["q"]),
        helper.make_node("MatMul", ["n1", "Wk"], ["k"]),
        helper.make_node("MatMul", ["n1", "Wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),
        helper.make_node("Mul", ["s", "inv_sqrt_d"], ["s2"]),
        helper.make_node("Softmax", ["s2"], ["att"], axis=-1),
        helper.make_node("MatMul", ["att", "v"], ["o"]),
        helper.make_node("MatMul", ["o", "Wo"], ["o2"]),
        helper.make_node("Add", ["x", "o2"], ["r"]),
        helper.make_node("LayerNormalization", ["r", "g2", "b2"], ["n2"], epsilon=1e-5),
        helper.make_node("MatMul", ["n2", "Wa"], ["h0"]),
        helper.make_node("Add", ["h0", "ba"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "Wb"], ["m"]),
        helper.make_node("Add", ["r", "m"], ["y"]),
    ]
    out = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [out("x", [1, T, D])], [out("y", [1, T, D])], inits)
    return {"x": rng.standard_normal((1, T, D)).astype(np.float32)}


def copies(path, rng, batch=4):
    """Writes the data-movement model (DMA copies); returns its input."""
    inits = [numpy_helper.from_array(rng.standard_normal((batch, 3, 200)).astype(np.float32), "k"),
             numpy_helper.from_array(np.array([batch, 10, 180], np.int64), "shape"),
             numpy_helper.from_array((rng.standard_normal((1800, 16)) * 1800 ** -0.5).astype(np.float32), "Wm")]
    nodes = [
        helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 1]),        # [B, 200, 6]
        helper.make_node("Relu", ["t1"], ["r1"]),
        helper.make_node("Transpose", ["r1"], ["t2"], perm=[0, 2, 1]),       # [B, 6, 200]
        helper.make_node("Concat", ["t2", "k"], ["c1"], axis=1),             # [B, 9, 200], the second input a constant
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("Reshape", ["s1", "shape"], ["rs"]),                # [B, 10, 180]
        helper.make_node("Flatten", ["rs"], ["f"], axis=1),                  # [B, 1800]
        helper.make_node("MatMul", ["f", "Wm"], ["m"]),                      # [B, 16]
        helper.make_node("Transpose", ["x"], ["t3"], perm=[2, 0, 1]),        # [200, B, 6]
        helper.make_node("Tanh", ["t3"], ["y2"]),
    ]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    save_model(path, nodes, [vi("x", [batch, 6, 200])], [vi("m", [batch, 16]), vi("y2", [200, batch, 6])], inits)
    return {"x": rng.standard_normal((batch, 6, 200)).astype(np.float32)}


def upsample(path, rng):
    """Writes the upsampling model; returns its input."""
    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("Wp", (24, 16, 1, 1), 0.25), init("Bp", (24,), 0.1), init("Wt", (24, 8, 2, 2), 0.2), init("Bt", (8,), 0.1),
             init("Wt3", (24, 4, 3, 3), 0.2), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "x2"),
             numpy_helper.from_array(np.array([2, 24, 20, 18], np.int64), "sizes"), init("g8", (8,), 0.2), init("b8", (8,), 0.1),
             init("m8", (8,), 0.1), numpy_helper.from_array(rng.uniform(0.5, 2.0, 8).astype(np.float32), "v8")]
    nodes = [
        helper.make_node("Conv", ["x", "Wp", "Bp"], ["cp"]),
        helper.make_node("Relu", ["cp"], ["c"]),                                                        # [2, 24, 5, 6]
        helper.make_node("Resize", ["c", "", "x2"], ["r1"], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["c", "", "", "sizes"], ["r2"], mode="nearest"),                     # [2, 24, 20, 18]
        helper.make_node("ConvTranspose", ["r1", "Wt", "Bt"], ["tp"], strides=[2, 2]),                  # [2, 8, 20, 24]
        helper.make_node("BatchNormalization", ["tp", "g8", "b8", "m8", "v8"], ["tb"]),
        helper.make_node("Relu", ["tb"], ["t"]),
        helper.make_node("Resize", ["t", "", "x2"], ["r3"], mode="nearest"),                           # [2, 8, 40, 48]
        helper.make_node("ConvTranspose", ["c", "Wt3"], ["t3"], strides=[3, 3]),                        # [2, 4, 15, 18]
    ]
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [vi("x", [2, 16, 5, 6])], [vi("r2", [2, 24, 20, 18]), vi("r3", [2, 8, 40, 48]), vi("t3", [2, 4, 15, 18])], inits)
    return {"x": rng.standard_normal((2, 16, 5, 6)).astype(np.float32)}


def check(kiln, plugin, work, name, path, feeds, on_npu, on_cpu):
    """Compiles `path` for npu-nc2 in each auto-cast mode, checks the placement and the error against kiln.reference."""
    args, ref = reference(kiln, work, name, path, feeds)
    env = {k: v for k, v in os.environ.items() if k != "KILN_NPU_AUTO_CAST"}
    errors = {}
    for mode in ("none", "matmul"):
        art = os.path.join(work, f"{name}-{mode}.kiln")
        run([kiln, "compile", path, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "allow",
             "--backend-option", f"auto-cast={mode}"], env)
        inspect = run([kiln, "inspect", art, "--partitions"])
        placed = placements(inspect)
        for op, count in on_npu.items():
            if placed.get(op, []).count(NPU) != count:
                sys.exit(f"e2e_cnn_transformer: {name}: want {count} {op} on {NPU}, placement {placed}\n{inspect}")
        for op, reason in on_cpu.items():
            if NPU in placed.get(op, [NPU]) and len(placed.get(op, [])) == placed.get(op, []).count(NPU) or reason not in inspect:
                sys.exit(f"e2e_cnn_transformer: {name}: {op} did not fall back with '{reason}':\n{inspect}")
        out = os.path.join(work, f"{name}-{mode}")
        run([kiln, "run", art, "--plugin", plugin, *args, "--output-dir", out], env)
        worst = errors[mode] = relative_errors(ref, out, f"{name} ({mode})")
        if failures:
            sys.exit(f"e2e_cnn_transformer: {name}: {failures}")
        print(f"{name} ({mode}): on {NPU}: " + ", ".join(f"{op} ×{placed[op].count(NPU)}" for op in sorted(placed) if NPU in placed[op])
              + "; max|npu-ref|/max|ref|: " + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))
    if max(errors["none"].values()) > NONE_BOUND:
        sys.exit(f"e2e_cnn_transformer: FAIL — {name}, auto-cast none: {errors['none']} (bound {NONE_BOUND})")
    if not 0 < max(errors["matmul"].values()) <= MATMUL_BOUND:
        sys.exit(f"e2e_cnn_transformer: FAIL — {name}, auto-cast matmul: {errors['matmul']} outside (0, {MATMUL_BOUND}]")
    return errors


def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(12)
    results = {}
    path = os.path.join(work, "cnn.onnx")
    feeds = cnn(path, rng)
    results["cnn"] = check(kiln, plugin, work, "cnn", path, feeds,
                           {"Conv": 5, "MaxPool": 1, "AveragePool": 1, "GlobalAveragePool": 1, "Gemm": 1, "Softmax": 1, "Flatten": 1},
                           {"Abs": "op Abs is not supported on npu-nc2 yet"})
    path = os.path.join(work, "transformer.onnx")
    feeds = transformer(path, rng)
    results["transformer"] = check(kiln, plugin, work, "transformer", path, feeds,
                                   {"LayerNormalization": 2, "Softmax": 1, "Mul": 1, "Transpose": 1, "MatMul": 8}, {})
    path = os.path.join(work, "copies.onnx")
    feeds = copies(path, rng)
    results["copies"] = check(kiln, plugin, work, "copies", path, feeds,
                              {"Transpose": 3, "Concat": 1, "Reshape": 1, "Flatten": 1, "MatMul": 1}, {})
    path = os.path.join(work, "upsample.onnx")
    feeds = upsample(path, rng)
    results["upsample"] = check(kiln, plugin, work, "upsample", path, feeds, {"Conv": 1, "Relu": 2, "Resize": 3, "ConvTranspose": 2, "BatchNormalization": 1}, {})
    print(json.dumps({"max_error_over_max_ref": results, "bounds": {"none": NONE_BOUND, "matmul": MATMUL_BOUND}}))
    print(f"e2e_cnn_transformer: PASS — auto-cast none <= {NONE_BOUND}, matmul in (0, {MATMUL_BOUND:.4g}] on every output")


if __name__ == "__main__":
    main()
