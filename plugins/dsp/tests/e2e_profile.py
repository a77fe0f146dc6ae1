"""e2e_profile.py — `kiln run --profile --trace` on a dsp-hvx artifact reports per-layer cycles (plugin ABI 1.4).

A small quantized CNN written in QLinear form (quant -> conv1 (QLinearConv, 4 out, 3x3, pad 1) -> pool1 (MaxPool) ->
dequant, all on sampledsp.hvx) is compiled for --target dsp-hvx and run with `--random --profile --trace T.json`, with
KILN_DSP_REPORT writing the plugin's own estimate of the same run. Checks:
  * the per-layer lines are exactly the model's nodes by name, in order: quant, conv1, pool1, dequant;
  * the per-layer cycles sum to the per-unit busy cycles, and those are the report's HVX and DMA cycles exactly;
  * cycles per run are the report's estimate (HVX and DMA overlapped: the longer of the two), at 1 GHz;
  * the trace has the device rows HVX and DMA.
    python e2e_profile.py KILN PLUGIN WORKDIR
"""
import os
import re
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, device_profile, expect, finish, run, save_model, trace_rows  # noqa: E402

def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(7)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)
    inits = [const("xs", np.float32(0.05)), const("xz", np.uint8(128)),
             const("w", rng.integers(-60, 60, (4, 2, 3, 3)).astype(np.int8)), const("ws", np.float32(0.02)), const("wz", np.int8(0)),
             const("ys", np.float32(0.1)), const("yz", np.uint8(10)), const("b", rng.integers(-300, 300, (4,)).astype(np.int32))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["q"], name="quant"),
             helper.make_node("QLinearConv", ["q", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("DequantizeLinear", ["p", "ys", "yz"], ["y"], name="dequant")]
    model = os.path.join(work, "qcnn.onnx")
    save_model(model, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 16, 16])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    art, trace, report = os.path.join(work, "qcnn.kiln"), os.path.join(work, "t.json"), os.path.join(work, "report.txt")
    run([kiln, "compile", model, "--output", art, "--plugin", plugin, "--target", "dsp-hvx", "--fallback", "deny"])
    out = run([kiln, "run", art, "--plugin", plugin, "--random", "--profile", "--trace", trace], env=dict(os.environ, KILN_DSP_REPORT=report))
    prof = device_profile(out)
    if prof is None:
        print(out)
        sys.exit("e2e_profile: kiln run --profile printed no device profile")
    expect(prof["clock_ghz"] == 1.0, f"the profile's clock is the assumed 1 GHz, not {prof['clock_ghz']}")
    expect(list(prof["layers"]) == ["quant", "conv1", "pool1", "dequant"], f"layers {list(prof['layers'])}")
    layer_sum = sum(c for c, _ in prof["layers"].values())
    unit_sum = sum(prof["units"].values())
    expect(layer_sum == unit_sum, f"per-layer cycles sum to {layer_sum}, per-unit busy cycles to {unit_sum}")

    m = re.search(r": (\d+) cycles \(HVX (\d+), DMA (\d+), overlapped\)", open(report).read())
    cycles, hvx, dma = int(m.group(1)), int(m.group(2)), int(m.group(3))
    expect(prof["units"].get("HVX") == hvx and prof["units"].get("DMA") == dma,
           f"units {prof['units']} vs the report's HVX {hvx}, DMA {dma}")
    expect(layer_sum == hvx + dma, f"per-layer sum {layer_sum} vs the report's HVX + DMA {hvx + dma}")
    expect(prof["total"] == cycles == max(hvx, dma), f"cycles per run {prof['total']} vs the report's {cycles}")

    rows = trace_rows(trace)
    expect(set(rows) == {"HVX", "DMA"}, f"trace rows {sorted(rows)}")
    print(f"e2e_profile: layers {', '.join(f'{k} {v[0]}' for k, v in prof['layers'].items())} cycles; sum {layer_sum} = "
          f"HVX {hvx} + DMA {dma} (KILN_DSP_REPORT); {prof['total']} cycles per run; trace rows {sorted(rows)}")
    finish()


if __name__ == "__main__":
    main()
