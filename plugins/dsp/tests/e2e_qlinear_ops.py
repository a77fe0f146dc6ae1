#!/usr/bin/env python3
"""kiln.dsp's com.microsoft QLinearAdd, QLinearAveragePool and QLinearGlobalAveragePool end to end, in hand-built
QOperator graphs compiled with `--target dsp-hvx --fallback deny` (so a node that falls back fails the compile):

  residual (uint8):  QuantizeLinear -> QLinearConv (3x3, pad 1) -> QLinearAdd (the conv's result + the quantized
                     input: a residual connection, different scales on each side) -> QLinearGlobalAveragePool
                     -> DequantizeLinear, with the QLinearAdd's result also dequantized as a second output;
  pooling (int8):    QuantizeLinear -> QLinearAdd (a [1, C, 1, 1] per-channel initializer, broadcast)
                     -> QLinearAveragePool 3x3 stride 2 pads 1 count_include_pad 0 -> DequantizeLinear, and
                     QLinearAveragePool 2x2 stride 2 count_include_pad 1 -> DequantizeLinear.

Each output is compared with the same graph on kiln.reference. kiln.reference has no QLinearAveragePool, so its copy
of the graph writes each one as the ops it stands for: DequantizeLinear -> AveragePool -> QuantizeLinear (same
attributes). Asserts that every node (each QLinearAdd, QLinearAveragePool and QLinearGlobalAveragePool by name) is
placed on sampledsp.hvx, and per output that every value is within MAX_LSB = 1 quantum of kiln.reference and that at
least MIN_EQUAL = 3/4 of them are bit-equal.

Why 1 quantum: kiln.dsp requantizes in fixed point — QLinearAdd rescales each operand into a common 2^20 fixed point
with a Q31 multiplier and then the sum with another, rounding half up each time; average pooling multiplies the int16
window sum by the Q15 reciprocal round(2^15/count), an error below count·255·2^-16 < 1/2 quantum — while kiln.reference
computes in double and rounds once, half to even (Documentation/targets/DSP.md, "Requantization"). Both land on the
floor or the ceiling of the exact value, so they differ by at most one quantum, and only where the exact value is (near)
half a quantum (within their errors of a rounding boundary). Why not all equal: such ties are common here — a 2x2 mean is a tie whenever the sum is 2 mod 4;
the residual QLinearAdd's scales 0.05 and 0.03 into 0.06 make the exact result (5·Δc + 3·Δx)/6 quanta, a tie for one
value in six; and QLinearConv's own one-quantum differences pass through the add and the pool. The broadcast add of the
pooling case (scales 0.025 and 0.011 into 0.04) is bit-equal on every value.

Usage: e2e_qlinear_ops.py KILN PLUGIN WORKDIR
"""
import json
import os
import re
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, expect, finish, placements, run, save_model  # noqa: E402

DSP = "sampledsp.hvx"
MAX_LSB = 1
MIN_EQUAL = 0.75
MS = "com.microsoft"


def const(inits, name, value, dtype):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
    return name


def avgpool(nodes, inits, x, s, z, y, contrib, **attrs):
    """QLinearAveragePool (x and y in the same quantization), or for kiln.reference its DequantizeLinear ->
    AveragePool -> QuantizeLinear."""
    n = helper.make_node
    if contrib:
        nodes.append(n("QLinearAveragePool", [x, s, z, s, z], [y], domain=MS, name=f"{y}_pool", **attrs))
    else:
        nodes += [n("DequantizeLinear", [x, s, z], [f"{y}_d"]), n("AveragePool", [f"{y}_d"], [f"{y}_p"], **attrs),
                  n("QuantizeLinear", [f"{y}_p", s, z], [y])]


def residual(path, rng, contrib):
    """The uint8 residual block: conv + skip, then the global average. Outputs y (the pooled features) and r."""
    C = 8
    n, inits = helper.make_node, []
    sx, zx = const(inits, "sx", 0.03, np.float32), const(inits, "zx", 120, np.uint8)
    w = const(inits, "w", rng.integers(-90, 91, (C, C, 3, 3)), np.int8)
    sw, zw = const(inits, "sw", 0.004, np.float32), const(inits, "zw", 0, np.int8)
    sc, zc = const(inits, "sc", 0.05, np.float32), const(inits, "zc", 110, np.uint8)
    bias = const(inits, "bias", rng.integers(-2000, 2000, C), np.int32)
    sr, zr = const(inits, "sr", 0.06, np.float32), const(inits, "zr", 100, np.uint8)
    nodes = [n("QuantizeLinear", ["x", sx, zx], ["xq"], name="quant"),
             n("QLinearConv", ["xq", sx, zx, w, sw, zw, sc, zc, bias], ["c"], pads=[1, 1, 1, 1], name="conv"),
             n("QLinearAdd", ["c", sc, zc, "xq", sx, zx, sr, zr], ["rq"], domain=MS, name="add"),
             n("QLinearGlobalAveragePool", ["rq", sr, zr, sr, zr], ["gq"], domain=MS, name="gap"),
             n("DequantizeLinear", ["gq", sr, zr], ["y"], name="dq_y"),
             n("DequantizeLinear", ["rq", sr, zr], ["r"], name="dq_r"),
             n("DequantizeLinear", ["c", sc, zc], ["cd"], name="dq_c")]
    save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C, 10, 10])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, C, 1, 1]),
                helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, C, 10, 10]),
                helper.make_tensor_value_info("cd", TensorProto.FLOAT, [2, C, 10, 10])], inits, domains=[(MS, 1)])
    return [2, C, 10, 10], {"cd": 0.05, "r": 0.06, "y": 0.06}


def pooling(path, rng, contrib):
    """The int8 block: a broadcast per-channel QLinearAdd, then two average poolings. Outputs p1, p2."""
    C = 6
    n, inits = helper.make_node, []
    sx, zx = const(inits, "sx", 0.025, np.float32), const(inits, "zx", -5, np.int8)
    b = const(inits, "b", rng.integers(-100, 101, (1, C, 1, 1)), np.int8)
    sb, zb = const(inits, "sb", 0.011, np.float32), const(inits, "zb", 7, np.int8)
    sa, za = const(inits, "sa", 0.04, np.float32), const(inits, "za", 3, np.int8)
    nodes = [n("QuantizeLinear", ["x", sx, zx], ["xq"], name="quant"),
             n("QLinearAdd", ["xq", sx, zx, b, sb, zb, sa, za], ["aq"], domain=MS, name="add_bias")]
    avgpool(nodes, inits, "aq", sa, za, "p1q", contrib, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0)
    avgpool(nodes, inits, "aq", sa, za, "p2q", contrib, kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1)
    nodes += [n("DequantizeLinear", ["p1q", sa, za], ["p1"], name="dq_p1"), n("DequantizeLinear", ["p2q", sa, za], ["p2"], name="dq_p2"),
              n("DequantizeLinear", ["aq", sa, za], ["a"], name="dq_a")]
    save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, C, 13, 12])],
               [helper.make_tensor_value_info("p1", TensorProto.FLOAT, [2, C, 7, 6]),
                helper.make_tensor_value_info("p2", TensorProto.FLOAT, [2, C, 6, 6]),
                helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, C, 13, 12])], inits, domains=[(MS, 1)])
    return [2, C, 13, 12], {"a": 0.04, "p1": 0.04, "p2": 0.04}


def main():
    kiln, plugin, work = arguments()
    summary = []
    for name, build in (("residual", residual), ("pooling", pooling)):
        model, ref_model = os.path.join(work, f"{name}.onnx"), os.path.join(work, f"{name}-ref.onnx")
        xshape, scales = build(model, np.random.default_rng(11), True)
        build(ref_model, np.random.default_rng(11), False)
        dsp, ref = os.path.join(work, f"{name}-dsp.kiln"), os.path.join(work, f"{name}-ref.kiln")
        run([kiln, "compile", model, "-o", dsp, "--target", "dsp-hvx", "--plugin", plugin, "--fallback", "deny"])
        run([kiln, "compile", ref_model, "-o", ref, "--backend", "kiln.reference"])
        inspect = run([kiln, "inspect", dsp, "--partitions", "--plugin", plugin])
        where = placements(inspect)
        nodes = int(re.search(r"partition report \((\d+) nodes\)", inspect).group(1))
        expect(sum(len(b) for b in where.values()) == nodes, f"{name}: read {where} for {nodes} nodes")
        for op in ("QLinearAdd", "QLinearAveragePool", "QLinearGlobalAveragePool"):
            expect(all(b == DSP for b in where.get(op, [])), f"{name}: {op} placed on {where.get(op)}")
        expect(all(b == DSP for bs in where.values() for b in bs), f"{name}: not every node is on {DSP}: {where}")
        for op in ("QLinearAdd", "QLinearAveragePool" if name == "pooling" else "QLinearGlobalAveragePool"):
            expect(where.get(op), f"{name}: no {op} in the placement report")
        rng = np.random.default_rng(23)
        stats = {out: [0.0, 0, 0] for out in scales}  # largest difference in quanta, equal values, values
        for i in range(3):
            x = (rng.standard_normal(xshape) * (0.6 + 0.8 * i)).astype(np.float32)
            path = os.path.join(work, f"{name}-x{i}.npy")
            np.save(path, x)
            folders = {}
            for kind, artifact, extra in (("dsp", dsp, ["--plugin", plugin]), ("ref", ref, [])):
                folders[kind] = os.path.join(work, f"{name}-{kind}-{i}")
                run([kiln, "run", artifact, "--input", f"x={path}", "--output-dir", folders[kind], *extra])
            for out, s in scales.items():
                got = {kind: np.load(os.path.join(folder, f"{out}.npy")) for kind, folder in folders.items()}
                expect(got["dsp"].shape == got["ref"].shape, f"{name}/{out}: shapes {got['dsp'].shape} and {got['ref'].shape}")
                if got["dsp"].shape != got["ref"].shape:
                    continue
                lsb = np.abs(got["dsp"].astype(np.float64) - got["ref"]) / s
                st = stats[out]
                st[0], st[1], st[2] = max(st[0], float(lsb.max())), st[1] + int((lsb < 1e-3).sum()), st[2] + lsb.size
        for out, (worst, equal, total) in stats.items():
            expect(worst <= MAX_LSB + 1e-3, f"{name}/{out}: differs from kiln.reference by {worst:.3f} quanta (bound {MAX_LSB})")
            expect(total and equal >= MIN_EQUAL * total, f"{name}/{out}: only {equal} of {total} values equal kiln.reference's")
            summary.append({"case": f"{name}/{out}", "equal": f"{equal}/{total}", "largest_difference_in_quanta": round(worst, 3)})
    print(json.dumps(summary))
    finish()


if __name__ == "__main__":
    main()
