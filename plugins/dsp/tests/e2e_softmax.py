#!/usr/bin/env python3
"""kiln.dsp's quantized Softmax end to end, against kiln.reference's float Softmax of the dequantized input.

Each case is a QDQ graph x -> QuantizeLinear -> DequantizeLinear -> Softmax (last axis) -> QuantizeLinear ->
DequantizeLinear -> y, which kiln.dsp runs as one fixed-point Softmax (kernels.h, dsp_softmax: an exp table of m - x,
an int32 sum, a normalized reciprocal, a Q31 requantization). A second graph without the last QuantizeLinear /
DequantizeLinear, compiled for kiln.reference, gives the float Softmax of the same dequantized input.

Asserts, per case: Softmax runs on sampledsp.hvx; every output is within BOUND of kiln.reference's float Softmax
clamped to the output's representable range, where (Documentation/targets/DSP.md, "Softmax")

    BOUND = s_y / 2 + (n + 1) / 131070 + 2^-20

s_y / 2 is the output rounding; (n + 1) / 131070 bounds the exp table's rounding (each entry is within 1/2 of
65535·exp(-s_x·d), the largest is exactly 65535, so the sum is at least 65535 and off by at most n/2); 2^-20 covers
the reciprocal and the Q31 products. The script also reports the largest difference seen and how many outputs equal
kiln.reference's own quantized result (the full QDQ graph on kiln.reference).

Usage: e2e_softmax.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import placements, run, save_model  # noqa: E402

DSP = "sampledsp.hvx"
# (name, input shape, input scale, input zero point and dtype, output scale, output zero point and dtype)
CASES = [
    ("two-classes", [8, 2], 0.05, (3, np.int8), 1 / 256, (-128, np.int8)),
    ("ten-uint8", [4, 10], 0.031, (120, np.uint8), 1 / 255, (0, np.uint8)),
    ("thousand", [2, 1000], 0.07, (-5, np.int8), 1 / 256, (0, np.uint8)),
    ("rank3-wide-scale", [2, 3, 37], 0.2, (0, np.int8), 1 / 128, (-64, np.int8)),
]


def build(path, shape, sx, zx, sy, zy, quantize_output):
    inits = [numpy_helper.from_array(np.asarray(sx, np.float32), "sx"), numpy_helper.from_array(np.asarray(zx[0], zx[1]), "zx"),
             numpy_helper.from_array(np.asarray(sy, np.float32), "sy"), numpy_helper.from_array(np.asarray(zy[0], zy[1]), "zy")]
    n = helper.make_node
    nodes = [n("QuantizeLinear", ["x", "sx", "zx"], ["q"]), n("DequantizeLinear", ["q", "sx", "zx"], ["d"]),
             n("Softmax", ["d"], ["p" if quantize_output else "y"], axis=-1)]
    if quantize_output:
        nodes += [n("QuantizeLinear", ["p", "sy", "zy"], ["pq"]), n("DequantizeLinear", ["pq", "sy", "zy"], ["y"])]
    save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)


def run_model(kiln, artifact, x, work, name, extra):
    path = os.path.join(work, f"{name}.npy")
    np.save(path, x)
    out = os.path.join(work, f"out-{name}")
    run([kiln, "run", artifact, "--input", f"x={path}", "--output-dir", out, *extra])
    files = sorted(os.listdir(out))
    assert len(files) == 1, files
    return np.load(os.path.join(out, files[0]))


def main():
    kiln, plugin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(2)
    summary = []
    for name, shape, sx, zx, sy, zy in CASES:
        quantized, floating = os.path.join(work, f"{name}.onnx"), os.path.join(work, f"{name}-float.onnx")
        build(quantized, shape, sx, zx, sy, zy, True)
        build(floating, shape, sx, zx, sy, zy, False)
        dsp, ref_q, ref_f = (os.path.join(work, f"{name}-{k}.kiln") for k in ("dsp", "refq", "reff"))
        run([kiln, "compile", quantized, "-o", dsp, "--target", "dsp-hvx", "--plugin", plugin])
        run([kiln, "compile", quantized, "-o", ref_q, "--backend", "kiln.reference"])
        run([kiln, "compile", floating, "-o", ref_f, "--backend", "kiln.reference"])
        where = placements(run([kiln, "inspect", dsp, "--partitions", "--plugin", plugin]))
        assert where.get("Softmax") == [DSP], f"{name}: Softmax placed on {where.get('Softmax')}"
        lo, hi = (0, 255) if zy[1] == np.uint8 else (-128, 127)
        low, high = (lo - zy[0]) * sy, (hi - zy[0]) * sy
        row = shape[-1]
        bound = sy / 2 + (row + 1) / 131070 + 2.0 ** -20
        worst, equal, total = 0.0, 0, 0
        for i in range(4):
            spread = [1.0, 4.0, 12.0, 40.0][i] * sx  # from nearly flat rows to rows one element dominates
            x = (rng.standard_normal(shape) * spread * 8).astype(np.float32)
            if i == 3:
                x.reshape(-1, row)[0, :] = x.reshape(-1, row)[0, 0]  # a row of equal values
            got = run_model(kiln, dsp, x, work, f"{name}-{i}-dsp", ["--plugin", plugin])
            want = np.clip(run_model(kiln, ref_f, x, work, f"{name}-{i}-float", []), low, high)
            quant = run_model(kiln, ref_q, x, work, f"{name}-{i}-refq", [])
            diff = float(np.abs(got.astype(np.float64) - want).max())
            assert diff <= bound, f"{name}, input {i}: differs from kiln.reference's float Softmax by {diff:.6f} > {bound:.6f}"
            worst = max(worst, diff)
            equal += int((got == quant).sum())
            total += got.size
        summary.append({"case": name, "row": row, "bound": round(bound, 6), "largest_difference": round(worst, 6),
                        "largest_in_quanta": round(worst / sy, 3), "equal_to_reference_quantized": f"{equal}/{total}"})
    print(json.dumps(summary))
    print(f"e2e_softmax: PASS — {len(CASES)} quantized Softmax cases on {DSP}, every output within its stated bound of "
          f"kiln.reference's float Softmax")


if __name__ == "__main__":
    main()
