#!/usr/bin/env python3
"""kiln.dsp's lookup-table regions end to end: a hand-written QDQ graph whose activations are elementwise float chains
between a DequantizeLinear and a QuantizeLinear, as int8 quantizers leave them:

  * hard-swish as PaddlePaddle exports it, x * Clip(x + 3, 0, 6) / 6 (Add, Clip, Mul, Div), to int8;
  * HardSigmoid(alpha 0.2, beta 0.5), to uint8;
  * Add of a per-channel bias (shape [1, C, 1, 1]) then Relu, to int8 (one table per channel);
  * HardSwish (opset 14), to uint8;
  * a chain whose float result is also a graph output (so it cannot become a table: it must stay off the DSP).

Compiled with `kiln compile --target dsp-hvx --plugin libkiln_dsp.so` and on kiln.reference. Asserts every op of the
four table regions runs on sampledsp.hvx, the fifth region's ops do not, and the outputs equal kiln.reference's bit
for bit on inputs that cover every input byte (the tables are evaluated as kiln.reference evaluates the ops, then
quantized the same way: there is no rounding difference to allow for).

Usage: e2e_lut.py KILN PLUGIN WORKDIR
"""
import json
import os
import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import placements, run, save_model  # noqa: E402

DSP = "sampledsp.hvx"
C, H, W = 6, 5, 7


def build(path, rng):
    def const(name, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    inits = [
        const("s0", 0.021), const("z0", 131, np.uint8),
        const("s1", 0.019), const("z1", -100, np.int8),
        const("s2", 1 / 255), const("z2", 0, np.uint8),
        const("s3", 0.0123), const("z3", -3, np.int8),
        const("s4", 0.011), const("z4", 7, np.uint8),
        const("s5", 0.017), const("z5", 5, np.int8),
        const("three", 3.0), const("zero", 0.0), const("six", 6.0),
        const("bias", (rng.standard_normal((1, C, 1, 1)) * 0.8).astype(np.float32)),
    ]
    n = helper.make_node
    nodes = [
        n("QuantizeLinear", ["x", "s0", "z0"], ["q0"]), n("DequantizeLinear", ["q0", "s0", "z0"], ["d0"]),
        # hard-swish, PaddlePaddle's way
        n("Add", ["d0", "three"], ["a1"]), n("Clip", ["a1", "zero", "six"], ["c1"]), n("Mul", ["d0", "c1"], ["m1"]),
        n("Div", ["m1", "six"], ["h1"]),
        n("QuantizeLinear", ["h1", "s1", "z1"], ["q1"]), n("DequantizeLinear", ["q1", "s1", "z1"], ["d1"]),
        n("HardSigmoid", ["d1"], ["g2"], alpha=0.2, beta=0.5),
        n("QuantizeLinear", ["g2", "s2", "z2"], ["q2"]), n("DequantizeLinear", ["q2", "s2", "z2"], ["d2"]),
        # back to a signed range: Sub a constant, per-channel bias, Relu
        n("Sub", ["d2", "zero"], ["u3"]), n("Add", ["u3", "bias"], ["b3"]), n("Relu", ["b3"], ["r3"]),
        n("QuantizeLinear", ["r3", "s3", "z3"], ["q3"]), n("DequantizeLinear", ["q3", "s3", "z3"], ["d3"]),
        n("HardSwish", ["d3"], ["h4"]),
        n("QuantizeLinear", ["h4", "s4", "z4"], ["q4"]), n("DequantizeLinear", ["q4", "s4", "z4"], ["d4"]),
        # a float result that is also read outside the chain: not a table
        n("Mul", ["d4", "three"], ["m5"]),
        n("QuantizeLinear", ["m5", "s5", "z5"], ["q5"]), n("DequantizeLinear", ["q5", "s5", "z5"], ["y"]),
    ]
    shape = [1, C, H, W]
    save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape), helper.make_tensor_value_info("m5", TensorProto.FLOAT, shape),
                helper.make_tensor_value_info("d1", TensorProto.FLOAT, shape)], inits)


def main():
    kiln, plugin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(13)
    model = os.path.join(work, "lut.onnx")
    build(model, rng)
    dsp, ref = os.path.join(work, "dsp.kiln"), os.path.join(work, "ref.kiln")
    run([kiln, "compile", model, "-o", dsp, "--target", "dsp-hvx", "--plugin", plugin])
    run([kiln, "compile", model, "-o", ref, "--backend", "kiln.reference"])
    where = placements(run([kiln, "inspect", dsp, "--partitions", "--plugin", plugin]))
    for op, count in (("Add", 2), ("Clip", 1), ("Div", 1), ("HardSigmoid", 1), ("Sub", 1), ("Relu", 1), ("HardSwish", 1)):
        assert where.get(op) == [DSP] * count, f"{op} placed on {where.get(op)}, expected {count} on {DSP}"
    assert where.get("Mul", [None])[0] == DSP and where["Mul"][1] != DSP, f"Mul placed on {where.get('Mul')}: the first on {DSP}, the second (read outside its chain) not"

    exact = 0
    for i in range(6):
        # every input byte: a ramp over the whole quantized range and beyond (saturation), then random values
        ramp = (np.arange(C * H * W, dtype=np.float32) - 105.0) * 0.026
        x = (ramp if i == 0 else rng.uniform(-3.2, 3.2, C * H * W).astype(np.float32)).reshape(1, C, H, W)
        path = os.path.join(work, f"x{i}.npy")
        np.save(path, x)
        got = {}
        for name, artifact, extra in (("dsp", dsp, ["--plugin", plugin]), ("ref", ref, [])):
            out = os.path.join(work, f"out-{name}-{i}")
            run([kiln, "run", artifact, "--input", f"x={path}", "--output-dir", out, *extra])
            got[name] = {f: np.load(os.path.join(out, f)) for f in sorted(os.listdir(out))}
        assert got["dsp"].keys() == got["ref"].keys(), (got["dsp"].keys(), got["ref"].keys())
        for f in got["ref"]:
            a, b = got["dsp"][f], got["ref"][f]
            assert a.shape == b.shape and np.array_equal(a, b), f"input {i}, {f}: {int((a != b).sum())} of {a.size} values differ from kiln.reference"
        exact += 1
    print(json.dumps({"inputs": exact, "outputs_bit_exact": True, "placement": {k: v for k, v in where.items()}}))
    print(f"e2e_lut: PASS — hard-swish (Add/Clip/Mul/Div), HardSigmoid, per-channel bias + Relu and HardSwish each one lookup table on {DSP}; "
          f"outputs equal kiln.reference's bit for bit on {exact} inputs")


if __name__ == "__main__":
    main()
