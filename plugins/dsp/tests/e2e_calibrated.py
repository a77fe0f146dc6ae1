#!/usr/bin/env python3
"""kiln.dsp on a model quantized by Kiln itself: `kiln compile MODEL --quantize int8 --calibration DIR
--target dsp-hvx --plugin libkiln_dsp.so` on a small float CNN, compared with the same quantization run on
kiln.reference (`--backend kiln.reference`: the same calibration, so the same int8 graph).

The float CNN (built here with the onnx package): x[2,3,16,16] -> Conv 8x3x3 pad 1 + bias -> Relu -> MaxPool 2x2
-> Conv 16x8x3x3 pad 1 + bias -> Relu (output r2) -> MaxPool 2x2 -> Flatten -> Gemm 256x10 (output y).
`--quantize int8` writes it in QDQ form: DequantizeLinear (per-channel int8 weights, int32 biases) -> Conv ->
QuantizeLinear, activations uint8. kiln.dsp recognizes each such Conv as one QLinearConv (Documentation/targets/
DSP.md, "Conv in QDQ form").

Asserts:
  * both Convs are placed on sampledsp.hvx (with the DequantizeLinear/QuantizeLinear nodes around them);
  * r2 (the second Conv's requantized result, dequantized and through Relu, so a multiple of its scale s) differs
    from kiln.reference by at most MAX_LSB quanta of s, every difference being a whole number of quanta: kiln.dsp
    requantizes with a Q31 multiplier and two roundings half up, kiln.reference in float with one rounding half to
    even (the same explanation as e2e_qcnn.py), and a one-quantum difference in the first Conv can carry into the
    second. s is the smallest gap between distinct values of the reference's r2 (checked: every gap is a multiple);
  * y (float Gemm on kiln.cpu over the DSP's quantized features) is within Y_BOUND of the reference, relative to
    max|y|: the Gemm of 256 features with weights of scale 0.05 turns a few quanta of its input into well under 1%.
Usage: e2e_calibrated.py KILN PLUGIN WORKDIR
"""
import json
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, placements, run, save_model  # noqa: E402

MAX_LSB = 2
Y_BOUND = 2.0 ** -5
DSP = "sampledsp.hvx"


def build(path, rng):
    """Writes the float CNN."""
    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("W1", (8, 3, 3, 3), 0.3), init("B1", (8,), 0.1), init("W2", (16, 8, 3, 3), 0.15), init("B2", (16,), 0.1),
             init("Wf", (256, 10), 0.05), init("bf", (10,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p2"], ["f"]), helper.make_node("Gemm", ["f", "Wf", "bf"], ["y"])]
    value = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [value("x", [2, 3, 16, 16])], [value("y", [2, 10]), value("r2", [2, 16, 8, 8])], inits)


def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(13)
    path = os.path.join(work, "cnn.onnx")
    build(path, rng)
    calib = os.path.join(work, "calibration")
    os.makedirs(calib, exist_ok=True)
    for i in range(16):
        np.save(os.path.join(calib, f"s{i:02d}.npy"), rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    quantize = ["--quantize", "int8", "--calibration", calib]
    dsp_art, ref_art = os.path.join(work, "dsp.kiln"), os.path.join(work, "ref.kiln")
    run([kiln, "compile", path, "--output", dsp_art, *quantize, "--target", "dsp-hvx", "--plugin", plugin, "--fallback", "allow"])
    run([kiln, "compile", path, "--output", ref_art, *quantize, "--backend", "kiln.reference"])
    inspect = run([kiln, "inspect", dsp_art, "--partitions"])
    placed = placements(inspect)
    if placed.get("Conv") != [DSP, DSP]:
        sys.exit(f"e2e_calibrated: the two QDQ Convs are not both on {DSP}: {placed}\n{inspect}")
    print("e2e_calibrated: placement", {op: sorted(set(b)) for op, b in sorted(placed.items())})
    worst_lsb, equal, total, worst_y = 0.0, 0, 0, 0.0
    for sample in range(3):
        x = os.path.join(work, f"x{sample}.npy")
        np.save(x, rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
        d_dsp, d_ref = os.path.join(work, f"dsp{sample}"), os.path.join(work, f"ref{sample}")
        run([kiln, "run", dsp_art, "--plugin", plugin, "--input", f"x={x}", "--output-dir", d_dsp])
        run([kiln, "run", ref_art, "--input", f"x={x}", "--output-dir", d_ref])
        got, want = np.load(os.path.join(d_dsp, "r2.npy")).astype(np.float64), np.load(os.path.join(d_ref, "r2.npy")).astype(np.float64)
        levels = np.unique(want)
        s = float(np.diff(levels).min())
        if not np.allclose(np.diff(levels) / s, np.round(np.diff(levels) / s), atol=1e-3):
            sys.exit(f"e2e_calibrated: the reference's r2 is not on a grid of {s}: the quantum estimate failed")
        lsb = np.abs(got - want) / s
        if not np.allclose(lsb, np.round(lsb), atol=1e-3):
            sys.exit("e2e_calibrated: kiln.dsp's r2 is not on the reference's grid (not the same quantization)")
        worst_lsb = max(worst_lsb, float(lsb.max()))
        equal += int((lsb < 0.5).sum())
        total += lsb.size
        gy, wy = np.load(os.path.join(d_dsp, "y.npy")), np.load(os.path.join(d_ref, "y.npy"))
        worst_y = max(worst_y, float(np.abs(gy.astype(np.float64) - wy).max() / np.abs(wy).max()))
    print(json.dumps({"r2_equal": equal, "r2_values": total, "r2_largest_difference_in_quanta": worst_lsb, "bound_quanta": MAX_LSB,
                      "y_max_error_over_max_ref": worst_y, "y_bound": Y_BOUND}))
    if worst_lsb > MAX_LSB or worst_y > Y_BOUND:
        sys.exit(f"e2e_calibrated: FAIL — r2 differs by {worst_lsb} quanta (bound {MAX_LSB}), y by {worst_y:.3g} (bound {Y_BOUND})")
    print(f"e2e_calibrated: PASS — {equal}/{total} r2 values equal kiln.reference, the largest difference {worst_lsb:.0f} quanta "
          f"(bound {MAX_LSB}); y within {worst_y:.3g} of max|y| (bound {Y_BOUND:.4g})")


if __name__ == "__main__":
    main()
