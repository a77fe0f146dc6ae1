"""e2e_profile.py — `kiln run --profile --trace` on an npu-nc2 artifact reports per-layer cycles (plugin ABI 1.4).

A small CNN (conv1 -> relu1 -> pool1 -> gap, all on sampleneuron.nc2; relu1 fuses into conv1's drain) is compiled
for --target npu-nc2 and run with `--random --profile --trace T.json`, with KILN_NPU_REPORT writing the cycle model's
own summary of the same run. Checks:
  * the per-layer lines are exactly the model's layers by node name: conv1+relu1, pool1, gap;
  * the per-layer cycles sum to the per-unit busy cycles, and to the cycle model's busy time over all engines
    (KILN_NPU_REPORT, in µs with 3 decimals) converted to the profile's reference clock, TensorE's 2.8 GHz;
  * TensorE's busy cycles equal the report's TensorE cycles exactly; VectorE's and ScalarE's equal their own-clock
    cycles scaled by 2.8/1.12 and 2.8/1.4;
  * cycles per run match the report's total time at 2.8 GHz;
  * the trace has a row per engine the run used (TensorE, VectorE, ScalarE and DMA queues) with one event per instruction.
    python e2e_profile.py KILN PLUGIN WORKDIR
"""
import os
import re
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, device_profile, expect, finish, run, save_model, trace_rows  # noqa: E402

CLOCK = 2.8e9
def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "W")
    b = numpy_helper.from_array((rng.standard_normal((8,)) * 0.1).astype(np.float32), "B")
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"], name="gap")]
    model = os.path.join(work, "cnn.onnx")
    save_model(model, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])], [w, b])
    art, trace, report = os.path.join(work, "cnn.kiln"), os.path.join(work, "t.json"), os.path.join(work, "report.txt")
    run([kiln, "compile", model, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "deny"])
    out = run([kiln, "run", art, "--plugin", plugin, "--random", "--profile", "--trace", trace], env=dict(os.environ, KILN_NPU_REPORT=report))
    prof = device_profile(out)
    expect(prof is not None, "kiln run --profile printed no device profile")
    if prof is None:
        print(out)
        sys.exit(1)
    expect(prof["clock_ghz"] == 2.8, f"the profile's clock is TensorE's 2.8 GHz, not {prof['clock_ghz']}")
    expect(list(prof["layers"]) == ["conv1+relu1", "pool1", "gap"], f"layers {list(prof['layers'])}")
    layer_sum = sum(c for c, _ in prof["layers"].values())
    unit_sum = sum(prof["units"].values())
    expect(layer_sum == unit_sum, f"per-layer cycles sum to {layer_sum}, per-unit busy cycles to {unit_sum}")
    expect("TensorE" in prof["layers"]["conv1+relu1"][1], "conv1+relu1 ran on TensorE")

    text = open(report).read()
    total_us = float(re.search(r"^total (\S+) us", text, re.M).group(1))
    engines = {m.group(1): (int(m.group(2)), m.group(3), float(m.group(4)))
               for m in re.finditer(r"^  (\S+) +(\d+) instr +(\d+) (?:cycles|\(dma\)) +busy (\S+) us", text, re.M)}
    instructions = sum(v[0] for v in engines.values())
    busy_cycles = sum(v[2] for v in engines.values()) * 1e-6 * CLOCK
    # each step's length is rounded to a whole cycle (<= 0.5 off) and the report prints busy µs to 1 ns (<= 1.4 cycles)
    slack = 0.5 * instructions + 1.4 * len(engines)
    expect(abs(layer_sum - busy_cycles) <= slack, f"per-layer sum {layer_sum} vs the report's busy time {busy_cycles:.0f} cycles (slack {slack:.0f})")
    expect(abs(prof["total"] - total_us * 1e-6 * CLOCK) <= 1.5, f"cycles per run {prof['total']} vs the report's {total_us} us")
    expect(prof["units"].get("TensorE") == int(engines["TensorE"][1]), f"TensorE {prof['units'].get('TensorE')} vs report {engines['TensorE'][1]}")
    for unit, hz in (("VectorE", 1.12e9), ("ScalarE", 1.4e9)):
        want = int(engines[unit][1]) * CLOCK / hz
        expect(abs(prof["units"].get(unit, -1) - want) <= 0.5 * engines[unit][0], f"{unit} {prof['units'].get(unit)} vs report {want:.0f}")

    rows = trace_rows(trace)
    expect({"TensorE", "VectorE", "ScalarE"} <= set(rows) and any(r.startswith("DMA") for r in rows), f"trace rows {sorted(rows)}")
    expect(sum(rows.values()) == instructions, f"trace has {sum(rows.values())} device events for {instructions} instructions")
    print(f"e2e_profile: layers {', '.join(f'{k} {v[0]}' for k, v in prof['layers'].items())} cycles; sum {layer_sum} = units {unit_sum}, "
          f"report {busy_cycles:.0f} (2.8 GHz); {prof['total']} cycles per run; trace rows {len(rows)}")
    finish()


if __name__ == "__main__":
    main()
