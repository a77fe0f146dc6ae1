#!/usr/bin/env python3
"""kiln.dsp's fully connected layers in QDQ form end to end: DequantizeLinear(x) and DequantizeLinear(w) into a MatMul
or a Gemm (with its int32 bias DequantizeLinear'd at scale s_x·s_w), then one QuantizeLinear — claimed as one
QLinearMatMul and run with the vrmpy dot products; per-column weight scales and Gemm's transB run as C^T = B^T·A^T,
each column of the weights a row of the product with its own requantization.

Cases: Gemm with transB 1, per-output-channel scales (axis 0) and a bias, uint8 activations; MatMul on a rank-3 input
with per-column scales (axis 1), int8 activations; MatMul with one weight scale; Gemm with transB 0 and a bias.
Asserts the MatMul/Gemm runs on sampledsp.hvx and every output is within MAX_LSB quantum of kiln.reference running the
same graph in float (kiln.dsp requantizes with a Q31 multiplier and two roundings half up, kiln.reference with a
float multiplication and one rounding half to even: DSP.md, "Requantization").

Usage: e2e_fc.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import placements, run, save_model  # noqa: E402

DSP = "sampledsp.hvx"
MAX_LSB = 1
# (name, op, x shape, K, N, transB, per-column scales, bias, activation dtype)
CASES = [
    ("gemm-transB-per-channel-bias", "Gemm", [4, 64], 64, 40, 1, True, True, np.uint8),
    ("matmul-rank3-per-column", "MatMul", [2, 3, 72], 72, 300, 0, True, False, np.int8),
    ("matmul-per-tensor", "MatMul", [5, 33], 33, 17, 0, False, False, np.uint8),
    ("gemm-bias", "Gemm", [3, 129], 129, 7, 0, False, True, np.int8),
]


def build(path, rng, op, xshape, K, N, trans_b, per_column, bias, act):
    sx, zx = 0.02, (128 if act == np.uint8 else 3)
    wshape = (N, K) if trans_b else (K, N)
    sw = (rng.uniform(0.002, 0.01, N) if per_column else np.array(0.006)).astype(np.float32)
    wq = rng.integers(-127, 128, wshape).astype(np.int8)
    sy, zy = 0.05, (120 if act == np.uint8 else -7)
    axis = 0 if trans_b else 1
    inits = [numpy_helper.from_array(np.asarray(sx, np.float32), "sx"), numpy_helper.from_array(np.asarray(zx, act), "zx"),
             numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(sw, "sw"),
             numpy_helper.from_array(np.zeros(sw.shape, np.int8), "zw"),
             numpy_helper.from_array(np.asarray(sy, np.float32), "sy"), numpy_helper.from_array(np.asarray(zy, act), "zy")]
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "sx", "zx"], ["xq"]), n("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             n("DequantizeLinear", ["wq", "sw", "zw"], ["wd"], axis=axis)]
    ins = ["xd", "wd"]
    if bias:
        inits += [numpy_helper.from_array(rng.integers(-5000, 5000, N).astype(np.int32), "bq"),
                  numpy_helper.from_array((np.float32(sx) * sw).astype(np.float32), "sb")]
        nodes.append(n("DequantizeLinear", ["bq", "sb"], ["bd"], axis=0))
        ins.append("bd")
    nodes.append(n(op, ins, ["acc"], **({"transB": trans_b} if op == "Gemm" else {})))
    nodes += [n("QuantizeLinear", ["acc", "sy", "zy"], ["yq"]), n("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    yshape = xshape[:-1] + [N]
    save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, yshape)], inits)
    return sy


def main():
    kiln, plugin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(5)
    summary = []
    for name, op, xshape, K, N, trans_b, per_column, bias, act in CASES:
        model = os.path.join(work, f"{name}.onnx")
        sy = build(model, rng, op, xshape, K, N, trans_b, per_column, bias, act)
        dsp, ref = os.path.join(work, f"{name}-dsp.kiln"), os.path.join(work, f"{name}-ref.kiln")
        run([kiln, "compile", model, "-o", dsp, "--target", "dsp-hvx", "--plugin", plugin])
        run([kiln, "compile", model, "-o", ref, "--backend", "kiln.reference"])
        where = placements(run([kiln, "inspect", dsp, "--partitions", "--plugin", plugin]))
        assert where.get(op) == [DSP], f"{name}: {op} placed on {where.get(op)}"
        assert set(where.get("DequantizeLinear", [])) == {DSP}, f"{name}: DequantizeLinear placed on {where.get('DequantizeLinear')}"
        worst, equal, total = 0.0, 0, 0
        for i in range(3):
            x = (rng.standard_normal(xshape) * (0.5 + i)).astype(np.float32)
            path = os.path.join(work, f"{name}-x{i}.npy")
            np.save(path, x)
            outs = {}
            for kind, artifact, extra in (("dsp", dsp, ["--plugin", plugin]), ("ref", ref, [])):
                out = os.path.join(work, f"{name}-{kind}-{i}")
                run([kiln, "run", artifact, "--input", f"x={path}", "--output-dir", out, *extra])
                outs[kind] = np.load(os.path.join(out, "y.npy"))
            assert outs["dsp"].shape == outs["ref"].shape, (outs["dsp"].shape, outs["ref"].shape)
            lsb = np.abs(outs["dsp"].astype(np.float64) - outs["ref"]) / sy
            worst = max(worst, float(lsb.max()))
            equal += int((lsb < 1e-3).sum())
            total += lsb.size
        assert worst <= MAX_LSB + 1e-3, f"{name}: differs from kiln.reference by {worst:.3f} quanta (bound {MAX_LSB})"
        summary.append({"case": name, "equal": f"{equal}/{total}", "largest_difference_in_quanta": round(worst, 3)})
    print(json.dumps(summary))
    print(f"e2e_fc: PASS — {len(CASES)} QDQ MatMul/Gemm layers on {DSP}, within {MAX_LSB} quantum of kiln.reference")


if __name__ == "__main__":
    main()
