"""e2e_profile.py — `kiln run --profile --trace` on an fpga-vta-pynq artifact reports per-layer cycles (plugin ABI 1.4).

The quantized ResNet-18-like model of resnet_model.py (power-of-two scales) is compiled for --target fpga-vta-pynq
(several VTA partitions around host fallbacks) and run with `--random --profile --trace T.json`, with KILN_VTA_REPORT
writing the plugin's own per-layer table of each partition's run. Checks, per device program:
  * the per-layer lines name exactly the layers of one run's report table (graph node names of the quantized model),
    in order, plus "(program)" for the final drain and FINISH;
  * the per-layer cycles sum to the per-unit busy cycles, and those are the report's "modules busy" load, compute and
    store cycles exactly;
  * cycles per run are the report's total, at the target's 100 MHz;
  * the trace has the device rows load, compute and store.
    python e2e_profile.py KILN PLUGIN WORKDIR
"""
import os
import re
import sys

import numpy as np
import onnx

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, device_profiles, expect, finish, run, trace_rows  # noqa: E402
from resnet_model import build_float, quantize  # noqa: E402

def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(3)
    fp, qp = os.path.join(work, "resnet.onnx"), os.path.join(work, "resnet.q.onnx")
    build_float(fp, rng)
    quantize(fp, qp, rng)
    nodes = {n.name for n in onnx.load(qp).graph.node}
    art, trace = os.path.join(work, "resnet.kiln"), os.path.join(work, "t.json")
    run([kiln, "compile", qp, "--output", art, "--plugin", plugin, "--target", "fpga-vta-pynq", "--fallback", "allow"])
    out = run([kiln, "run", art, "--plugin", plugin, "--random", "--profile", "--trace", trace],
              env=dict(os.environ, KILN_VTA_REPORT=os.path.join(work, "report-{run}.txt")))
    programs = device_profiles(out)
    reports = []
    for k in range(len(programs)):
        text = open(os.path.join(work, f"report-{k}.txt")).read()
        busy = re.search(r"^modules busy: load (\d+), compute (\d+), store (\d+) cycles", text, re.M)
        reports.append({"layers": [m.group(1) for m in re.finditer(r"^\| ([^|]+?) \| (?:conv/dense|add|relu) \|", text, re.M)],
                        "total": int(re.search(r"^\| total \| \| \d+ \| (\d+) \|", text, re.M).group(1)),
                        "busy": {"load": int(busy.group(1)), "compute": int(busy.group(2)), "store": int(busy.group(3))}})
    expect(len(programs) >= 2, f"{len(programs)} device programs (the model has several VTA partitions)")
    all_layers = [name for r in reports for name in r["layers"]]
    expect(len(all_layers) >= 8 and all(name in nodes for name in all_layers), f"the reports' layers {all_layers} are node names of the model")
    summary = []
    for prof in programs:
        # the report of this program's run: the one whose layer table is the profile's layers
        mine = [r for r in reports if r["layers"] + ["(program)"] == list(prof["layers"])]
        expect(len(mine) == 1, f"program {prof['program']}: layers {list(prof['layers'])} match {len(mine)} reports")
        if len(mine) != 1:
            continue
        rep = mine[0]
        expect(prof["clock_ghz"] == 0.1, f"the profile's clock is the pynq target's 100 MHz, not {prof['clock_ghz']} GHz")
        layer_sum = sum(c for c, _ in prof["layers"].values())
        unit_sum = sum(prof["units"].values())
        expect(layer_sum == unit_sum, f"{prof['program']}: per-layer cycles sum to {layer_sum}, per-unit busy cycles to {unit_sum}")
        expect(prof["units"] == {k: v for k, v in rep["busy"].items() if v}, f"{prof['program']}: units {prof['units']} vs the report's {rep['busy']}")
        expect(layer_sum == sum(rep["busy"].values()), f"{prof['program']}: per-layer sum {layer_sum} vs the report's busy {rep['busy']}")
        expect(prof["total"] == rep["total"], f"{prof['program']}: cycles per run {prof['total']} vs the report's {rep['total']}")
        summary.append(f"{prof['program'].rsplit('.', 1)[-1]}: {len(rep['layers'])} layers, sum {layer_sum} = busy {sum(rep['busy'].values())}, "
                       f"{prof['total']} cycles per run")

    rows = trace_rows(trace)
    expect(set(rows) == {"load", "compute", "store"}, f"trace rows {sorted(rows)}")
    print(f"e2e_profile: {'; '.join(summary)} (KILN_VTA_REPORT); trace rows {sorted(rows)}")
    finish()


if __name__ == "__main__":
    main()
