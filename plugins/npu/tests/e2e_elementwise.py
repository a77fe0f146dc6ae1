"""e2e_elementwise.py — elementwise ops with broadcasting and attention's two-activation MatMuls compiled for
--target npu-nc2, run in the functional simulator, and compared with kiln.reference. Every node must run on the
NPU (none falls back).

Elementwise (x[2,8,6,10], NCHW; z[300,1100] for tiles of more than 128 rows and 512 columns):
    PaddlePaddle's hard-swish  Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)   scalar operands: one value per partition
    HardSwish(x), HardSigmoid(x, 0.3, 0.4)                              ScalarE α·x + β, VectorE max/min, ·x
    squeeze-excitation         Mul(x, HardSigmoid(GlobalAveragePool(x)))  a [2,8,1,1] operand: one value per row
    Sub(1, x)                  the broadcast operand first: swapped, then negated (exact)
    Sub(x, r[10]), Div(x, c[1,8,1,1]), Max(x, m[8,1,10]), Min(x, 0.5)   a row, per channel, a middle broadcast
    LeakyRelu(x, 0.1), LeakyRelu(x, 2)                                 max(α·x, x) and min(α·x, x)
    Exp(Clip(x, max 2)) (no lower bound), the erf form of GELU (Div, Erf, Add, Mul, Mul)
    Relu(Sub(z, zc[300,1]))    per-row operand over 3 row tiles × 3 column tiles
    Mul(Sub(1, keep), float32's lowest)   BERT's attention-mask bias: the scalar stays fp32 under auto-cast all (as bf16
                               it would be -inf, and 0·-inf NaN)
Attention (x[2,16,32], 4 heads of 8): Q/K/V MatMuls, Reshape and Transpose into heads, scores Q·Kᵀ (MatMul of two
    activations, batched over 2×4 matrices), ÷√8, + mask[2,1,1,16] (an input, broadcast over heads and rows),
    Softmax, ·V (two activations again), heads merged back, Wo, residual Add.

Gelu (opset 20, x[6,24]): alone (a ScalarE pass) and after a MatMul (fused into its PSUM drain).

Checks, for each auto-cast mode (--backend-option auto-cast=MODE):
  * placement: every node on sampleneuron.nc2;
  * none: max|npu - ref| / max|ref| <= 1e-5 on every output (fp32 throughout; exp and erf are libm's);
  * matmul: attention's and the Gelu model's error is > 0 and <= 2^-5 (bf16 operands of TensorE, the computed B included); the
    elementwise model has no matmul, so it stays within the none bound;
  * all: every elementwise model output within 2^-6 (operands rounded to bf16 on load, about 2^-9 relative each).
    python e2e_elementwise.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, expect, finish, placements, reference, relative_errors, run, save_model  # noqa: E402

NONE_BOUND = 1e-5
MATMUL_BOUND = 2.0 ** -5
ALL_BOUND = 2.0 ** -6
NPU = "sampleneuron.nc2"


def f32(name, value):
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def elementwise(path, rng):
    """Writes the elementwise model; returns its inputs."""
    inits = [f32("three", 3.0), f32("zero", 0.0), f32("six", 6.0), f32("one", 1.0), f32("two", 2.0), f32("half", 0.5),
             f32("sqrt2", np.sqrt(2.0)), f32("r", rng.standard_normal(10)), f32("c", rng.uniform(0.5, 2.0, (1, 8, 1, 1))),
             f32("m", rng.standard_normal((8, 1, 10))), f32("zc", rng.standard_normal((300, 1))), f32("lowest", np.finfo(np.float32).min)]
    n = helper.make_node
    nodes = [
        n("Add", ["x", "three"], ["a3"]), n("Clip", ["a3", "zero", "six"], ["c6"]), n("Mul", ["x", "c6"], ["xc"]),
        n("Div", ["xc", "six"], ["paddle_hswish"]),
        n("HardSwish", ["x"], ["hswish"]), n("HardSigmoid", ["x"], ["hsig"], alpha=0.3, beta=0.4),
        n("GlobalAveragePool", ["x"], ["pool"]), n("HardSigmoid", ["pool"], ["gate"]), n("Mul", ["x", "gate"], ["se"]),
        n("Sub", ["one", "x"], ["one_minus"]),
        n("Sub", ["x", "r"], ["sub_row"]), n("Div", ["x", "c"], ["div_channel"]), n("Max", ["x", "m"], ["max_middle"]),
        n("Min", ["x", "half"], ["min_scalar"]),
        n("LeakyRelu", ["x"], ["leaky"], alpha=0.1), n("LeakyRelu", ["x"], ["leaky2"], alpha=2.0),
        n("Clip", ["x", "", "two"], ["cmax"]), n("Exp", ["cmax"], ["exp"]),
        n("Div", ["x", "sqrt2"], ["gd"]), n("Erf", ["gd"], ["ge"]), n("Add", ["ge", "one"], ["g1"]), n("Mul", ["x", "g1"], ["gm"]),
        n("Mul", ["gm", "half"], ["gelu"]),
        n("Sub", ["z", "zc"], ["zs"]), n("Relu", ["zs"], ["wide"]),
        n("Sub", ["one", "keep"], ["drop"]), n("Mul", ["drop", "lowest"], ["mask_bias"]),
    ]
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    shaped = {"paddle_hswish": [2, 8, 6, 10], "hswish": [2, 8, 6, 10], "hsig": [2, 8, 6, 10], "se": [2, 8, 6, 10], "one_minus": [2, 8, 6, 10],
              "sub_row": [2, 8, 6, 10], "div_channel": [2, 8, 6, 10], "max_middle": [2, 8, 6, 10], "min_scalar": [2, 8, 6, 10],
              "leaky": [2, 8, 6, 10], "leaky2": [2, 8, 6, 10], "exp": [2, 8, 6, 10], "gelu": [2, 8, 6, 10], "wide": [300, 1100],
              "mask_bias": [2, 1, 1, 16]}
    save_model(path, nodes, [vi("x", [2, 8, 6, 10]), vi("z", [300, 1100]), vi("keep", [2, 1, 1, 16])], [vi(k, v) for k, v in shaped.items()], inits)
    keep = np.ones((2, 1, 1, 16), np.float32)
    keep[1, ..., 11:] = 0
    return {"x": (rng.standard_normal((2, 8, 6, 10)) * 3).astype(np.float32), "z": rng.standard_normal((300, 1100)).astype(np.float32), "keep": keep}


def attention(path, rng):
    """Writes the attention block; returns its inputs."""
    B, T, D, H = 2, 16, 32, 4
    E = D // H
    inits = [f32("Wq", rng.standard_normal((D, D)) * D ** -0.5), f32("Wk", rng.standard_normal((D, D)) * D ** -0.5),
             f32("Wv", rng.standard_normal((D, D)) * D ** -0.5), f32("Wo", rng.standard_normal((D, D)) * D ** -0.5),
             f32("scale", np.sqrt(E)), numpy_helper.from_array(np.array([B, T, H, E], np.int64), "heads"),
             numpy_helper.from_array(np.array([B, T, D], np.int64), "merged")]
    n = helper.make_node
    nodes = [n("MatMul", ["x", "Wq"], ["q"]), n("MatMul", ["x", "Wk"], ["k"]), n("MatMul", ["x", "Wv"], ["v"])]
    for name in ("q", "k", "v"):
        nodes.append(n("Reshape", [name, "heads"], [name + "4"]))
    nodes += [
        n("Transpose", ["q4"], ["qh"], perm=[0, 2, 1, 3]),    # [B, H, T, E]
        n("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),    # [B, H, E, T]
        n("Transpose", ["v4"], ["vh"], perm=[0, 2, 1, 3]),
        n("MatMul", ["qh", "kt"], ["s"]),                     # [B, H, T, T], two activations
        n("Div", ["s", "scale"], ["s2"]),
        n("Add", ["s2", "mask"], ["s3"]),                     # mask [B, 1, 1, T]
        n("Softmax", ["s3"], ["att"], axis=-1),
        n("MatMul", ["att", "vh"], ["o"]),                    # [B, H, T, E], two activations
        n("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
        n("Reshape", ["ot", "merged"], ["om"]),
        n("MatMul", ["om", "Wo"], ["o2"]),
        n("Add", ["x", "o2"], ["y"]),
    ]
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [vi("x", [B, T, D]), vi("mask", [B, 1, 1, T])], [vi("y", [B, T, D])], inits)
    mask = np.zeros((B, 1, 1, T), np.float32)
    mask[1, ..., 11:] = -1e4  # the second sequence is padded after 11 tokens
    return {"x": rng.standard_normal((B, T, D)).astype(np.float32), "mask": mask}


def gelu(path, rng):
    """Writes the Gelu model (opset 20): Gelu alone (a ScalarE pass) and after a MatMul (fused into its drain)."""
    inits = [f32("W", rng.standard_normal((24, 40)) * 24 ** -0.5)]
    nodes = [helper.make_node("Gelu", ["x"], ["g"]), helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Gelu", ["h"], ["hg"])]
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [vi("x", [6, 24])], [vi("g", [6, 24]), vi("hg", [6, 40])], inits, opset=20)
    return {"x": (rng.standard_normal((6, 24)) * 2).astype(np.float32)}


def check(kiln, plugin, work, name, path, feeds, has_matmul):
    """Compiles `path` for npu-nc2 in each auto-cast mode, checks the placement and the error against kiln.reference."""
    args, ref = reference(kiln, work, name, path, feeds)
    env = {k: v for k, v in os.environ.items() if k != "KILN_NPU_AUTO_CAST"}
    errors = {}
    for mode in ("none", "matmul", "all"):
        art = os.path.join(work, f"{name}-{mode}.kiln")
        run([kiln, "compile", path, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--backend-option", f"auto-cast={mode}"], env)
        inspect = run([kiln, "inspect", art, "--partitions"])
        placed = placements(inspect)
        elsewhere = {op: where for op, where in placed.items() if any(b != NPU for b in where)}
        expect(placed and not elsewhere, f"{name} ({mode}): nodes off {NPU}: {elsewhere}\n{inspect}")
        out = os.path.join(work, f"{name}-{mode}")
        run([kiln, "run", art, "--plugin", plugin, *args, "--output-dir", out], env)
        worst = errors[mode] = relative_errors(ref, out, f"{name} ({mode})")
        print(f"{name} ({mode}): {sum(len(v) for v in placed.values())} nodes on {NPU}; max|npu-ref|/max|ref|: "
              + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))
    top = {mode: max(w.values()) for mode, w in errors.items()}
    expect(top["none"] <= NONE_BOUND, f"{name}, auto-cast none: {errors['none']} (bound {NONE_BOUND})")
    if has_matmul:
        expect(0 < top["matmul"] <= MATMUL_BOUND, f"{name}, auto-cast matmul: {errors['matmul']} outside (0, {MATMUL_BOUND}]")
    else:
        expect(top["matmul"] <= NONE_BOUND, f"{name}, auto-cast matmul (no matmul in the model): {errors['matmul']} (bound {NONE_BOUND})")
        expect(0 < top["all"] <= ALL_BOUND, f"{name}, auto-cast all: {errors['all']} outside (0, {ALL_BOUND}]")
    return errors


def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(31)
    results = {}
    path = os.path.join(work, "elementwise.onnx")
    results["elementwise"] = check(kiln, plugin, work, "elementwise", path, elementwise(path, rng), False)
    path = os.path.join(work, "attention.onnx")
    results["attention"] = check(kiln, plugin, work, "attention", path, attention(path, rng), True)
    path = os.path.join(work, "gelu.onnx")
    results["gelu"] = check(kiln, plugin, work, "gelu", path, gelu(path, rng), True)
    print(json.dumps({"max_error_over_max_ref": results, "bounds": {"none": NONE_BOUND, "matmul": MATMUL_BOUND, "all": ALL_BOUND}}))
    finish()


if __name__ == "__main__":
    main()
