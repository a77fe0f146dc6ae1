#!/usr/bin/env python3
"""End-to-end test of the kiln.dsp plugin on a small quantized CNN.

Builds a random float CNN with the onnx package (Conv+Relu, MaxPool, depthwise Conv+Relu, 1x1 Conv+Relu,
Reshape, MatMul), quantizes it with onnxruntime.quantization.quantize_static (QOperator format: QuantizeLinear,
QLinearConv, MaxPool on uint8, QLinearMatMul, DequantizeLinear; uint8 activations, int8 weights; once with
per-tensor and once with per-channel weight scales), compiles it
with `kiln compile --target dsp-hvx --plugin libkiln_dsp.so`, runs it with `kiln run`, and compares with
the same model on kiln.reference.

What it asserts (and why the comparison is not bit-exact): every QLinearConv, QLinearMatMul, MaxPool,
QuantizeLinear and DequantizeLinear node is placed on the plugin's backend (with per-channel weights too: the
QLinearMatMul's per-column scales run as a transposed product with one requantization per column); and the outputs agree with kiln.reference
within MAX_LSB quanta of the output scale. kiln.reference requantizes with a float multiplier and one
rounding half to even; kiln.dsp with a Q31 multiplier and two roundings half up (Documentation/targets/
DSP.md), so one layer's result may differ by one quantum, and such differences can carry through later
layers. The script prints how many outputs match exactly.

Usage: e2e_qcnn.py KILN PLUGIN WORKDIR
"""
import json
import re
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

MAX_LSB = 2  # largest allowed difference, in quanta of the output scale (see the docstring)


def build_float_model(path, rng):
    def w(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        w("w1", (8, 3, 3, 3), 0.3), w("b1", (8,), 0.1),
        w("w2", (8, 1, 3, 3), 0.3), w("b2", (8,), 0.1),
        w("w3", (16, 8, 1, 1), 0.3), w("b3", (16,), 0.1),
        w("w4", (16 * 4 * 4, 10), 0.1),
        numpy_helper.from_array(np.array([1, 16 * 4 * 4], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Reshape", ["r3", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w4"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "qcnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


class Reader(CalibrationDataReader):
    def __init__(self, rng):
        self.batches = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.batches, None)


def run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"e2e_qcnn: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def main():
    kiln, plugin, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    for per_channel in (False, True):
        check_model(kiln, plugin, os.path.join(work, "per-channel" if per_channel else "per-tensor"), per_channel)


def check_model(kiln, plugin, work, per_channel):
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(13)
    fp, qp = os.path.join(work, "cnn.onnx"), os.path.join(work, "cnn.q.onnx")
    build_float_model(fp, rng)
    quantize_static(fp, qp, Reader(rng), quant_format=QuantFormat.QOperator, per_channel=per_channel,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    kind = "per-channel" if per_channel else "per-tensor"
    q = onnx.load(qp)
    ops = [n.op_type for n in q.graph.node]
    print(f"quantized model ({kind} weights):", ", ".join(ops))
    for needed in ("QLinearConv", "QLinearMatMul", "MaxPool", "QuantizeLinear", "DequantizeLinear"):
        if needed not in ops:
            sys.exit(f"e2e_qcnn: the quantized model has no {needed}; the test would not exercise the plugin")

    art = os.path.join(work, "cnn.kiln")
    report = run([kiln, "compile", qp, "--output", art, "--plugin", plugin, "--target", "dsp-hvx", "--fallback", "allow"])
    inspect = run([kiln, "inspect", art, "--partitions"])
    placed = {}  # op -> backends of its nodes, from lines "node N (Op) → backend: why"
    for m in re.finditer(r"node \d+ (?:'[^']*' )?\((\w+)\) → ([\w.]+):", inspect):
        placed.setdefault(m.group(1), set()).add(m.group(2))
    print("placement:", {op: sorted(b) for op, b in placed.items()})
    # with per-channel weights quantize_static gives the MatMul per-column b scales: kiln.dsp runs it as C^T = B^T·A^T,
    # each column of b a row of the product with its own requantization
    on_dsp = ["QLinearConv", "MaxPool", "QuantizeLinear", "DequantizeLinear", "QLinearMatMul"]
    for op in on_dsp:
        if placed.get(op) != {"sampledsp.hvx"}:
            sys.exit(f"e2e_qcnn: {op} is not placed (only) on sampledsp.hvx: {placed.get(op)}\n" + inspect)

    worst, exact, total = 0.0, 0, 0
    # the output scale: the scale input of the final DequantizeLinear
    deq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y"]
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    scale = float(inits[deq[0].input[1]]) if deq else None
    if scale is None:
        sys.exit("e2e_qcnn: cannot find the output's DequantizeLinear")
    for case in range(8):
        x = rng.standard_normal((1, 3, 16, 16)).astype(np.float32) * (1 + case)
        xin = os.path.join(work, f"x{case}.npy")
        np.save(xin, x)
        d_dsp, d_ref = os.path.join(work, f"dsp{case}"), os.path.join(work, f"ref{case}")
        run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xin}", "--output-dir", d_dsp])
        run([kiln, "run", qp, "--backend", "kiln.reference", "--input", f"x={xin}", "--output-dir", d_ref])
        got, want = np.load(os.path.join(d_dsp, "y.npy")), np.load(os.path.join(d_ref, "y.npy"))
        lsb = np.abs(got.astype(np.float64) - want.astype(np.float64)) / scale
        worst = max(worst, float(lsb.max()))
        exact += int((lsb < 1e-3).sum())
        total += lsb.size
    print(json.dumps({"weights": kind, "outputs": total, "exactly_equal": exact, "largest_difference_in_output_quanta": round(worst, 3), "bound": MAX_LSB}))
    if worst > MAX_LSB + 1e-3:
        sys.exit(f"e2e_qcnn: FAIL ({kind}) — outputs differ from kiln.reference by {worst:.3f} quanta (bound {MAX_LSB})")
    print(f"e2e_qcnn: PASS ({kind} weights) — {exact}/{total} outputs equal kiln.reference exactly, the largest difference is {worst:.3f} quanta (bound {MAX_LSB})")


if __name__ == "__main__":
    main()
