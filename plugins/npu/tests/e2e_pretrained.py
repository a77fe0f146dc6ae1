#!/usr/bin/env python3
"""kiln.npu on a real pretrained CNN: PP-OCR's text-orientation classifier (rapidocr-onnxruntime's
ch_ppocr_mobile_v2.0_cls, fetched from its wheel as scripts/quantize-accuracy does) compiled with `kiln compile MODEL
--target npu-nc2 --input-shape x=1,3,48,192 --plugin libkiln_npu.so` in each auto-cast mode, run in the plugin's functional simulator, and
compared with ONNX Runtime running the fp32 model on the same held-out inputs.

The inputs are text lines drawn with NumPy (scripts/quantize-accuracy's `drawn_line`, half of them turned 180 degrees,
the classifier's task), normalized as PP-OCR does.

Asserts, for auto-cast none and matmul (`--backend-option auto-cast=MODE`):
  * every node runs on sampleneuron.nc2 (all 53 Convs, depthwise ones included, hard-swish's Add/Clip/Mul/Div, the
    squeeze-excitation's HardSigmoid and broadcasting Mul, the head), in one NPU program;
  * on every held-out line the class (argmax) equals ONNX Runtime's;
  * none: the two class probabilities are within NONE_BOUND of ONNX Runtime's (fp32 all the way; only the order of
    summation differs);
  * matmul: they differ (the cast happened) and by at most MATMUL_BOUND (bf16 operands of every Conv and MatMul on
    the NPU, about 2^-8 relative each, through the network's twenty-odd NPU convolutions).
It prints the accuracy (class agreement, largest probability difference) and the simulated time of one image on
the NPU (the sum over its programs' KILN_NPU_REPORT totals), the rows of NPU.md's tables.
Usage: [E2E_HELD_OUT=N] e2e_pretrained.py KILN PLUGIN WORKDIR   (N held-out lines, 8 unless given)
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, expect, finish, placements, quantize_accuracy, run  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
NPU = "sampleneuron.nc2"
NONE_BOUND = 1e-4
MATMUL_BOUND = 0.05
HELD_OUT = int(os.environ.get("E2E_HELD_OUT", "8"))  # run-tests: 8; NPU.md's table: E2E_HELD_OUT=200


def main():
    kiln, plugin, work = arguments()
    qa = quantize_accuracy()
    qa.real_models_module = qa.real_models()
    entry = next(e for e in qa.real_models_module.CORPUS if e["name"] == "ppocr-cls-v2")
    _, model = qa.prepare_model(entry, os.path.join(ROOT, ".cache"))
    import onnxruntime as ort
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    lines = list(qa.ocr_samples("ppocr-cls-v2", HELD_OUT, 5000, qa.drawn_line))
    expected = [session.run(None, {"x": s["x"]})[0] for s in lines]
    paths = []
    for i, sample in enumerate(lines):
        paths.append(os.path.join(work, f"x{i}.npy"))
        np.save(paths[-1], sample["x"])

    env = {k: v for k, v in os.environ.items() if k != "KILN_NPU_AUTO_CAST"}
    summary = {}
    for mode in ("none", "matmul"):
        artifact = os.path.join(work, f"cls-{mode}.kiln")
        # The model's input is [?, 3, ?, ?]: the NPU compiles for one shape, the lines' (--input-shape).
        shape = ",".join(str(d) for d in lines[0]["x"].shape)
        run([kiln, "compile", model, "-o", artifact, "--plugin", plugin, "--target", "npu-nc2", "--input-shape", f"x={shape}",
             "--backend-option", f"auto-cast={mode}"], env)
        inspect = run([kiln, "inspect", artifact, "--partitions", "--plugin", plugin])
        where = placements(inspect)
        convs = where.get("Conv", [])
        on_npu = sum(v.count(NPU) for v in where.values())
        # Every node, in one program.
        nodes = sum(len(v) for v in where.values())
        programs = len(re.findall(r"^\s+\d+: " + re.escape(NPU), inspect, re.M))
        expect(convs.count(NPU) == len(convs) == 53 and on_npu == nodes and programs == 1,
               f"{mode}: {convs.count(NPU)} of {len(convs)} Convs and {on_npu} of {nodes} nodes on {NPU}, in {programs} programs:\n{inspect}")
        worst, agree, cycles = 0.0, 0, {}
        for i, path in enumerate(paths):
            out = os.path.join(work, f"out-{mode}-{i}")
            # One report per NPU program run ({run} numbers them).
            report = os.path.join(work, f"report-{mode}-{i}-{{run}}.txt")
            run([kiln, "run", artifact, "--plugin", plugin, "--input", f"x={path}", "--output-dir", out],
                dict(env, KILN_NPU_REPORT=report))
            files = sorted(os.listdir(out))
            got = np.load(os.path.join(out, files[0]))
            want = expected[i]
            expect(got.shape == want.shape, f"{mode}: line {i}: shape {got.shape} vs ONNX Runtime's {want.shape}")
            same = int(np.argmax(got)) == int(np.argmax(want))
            expect(same, f"{mode}: line {i}: class {np.argmax(got)} vs ONNX Runtime's {np.argmax(want)} ({got} vs {want})")
            agree += same
            worst = max(worst, float(np.abs(got - want).max()))
            if i == 0:
                texts = [open(os.path.join(work, f)).read() for f in os.listdir(work) if f.startswith(f"report-{mode}-0-")]
                totals = [float(m) for t in texts for m in re.findall(r"^total (\S+) us", t, re.M)]
                expect(len(totals) >= 1, f"{mode}: no KILN_NPU_REPORT written")
                cycles = {"npu_programs": len(totals), "simulated_us_per_image": round(sum(totals), 3)}
        if mode == "none":
            expect(worst <= NONE_BOUND, f"none: probabilities differ from ONNX Runtime's by {worst:.3g} > {NONE_BOUND}")
        else:
            expect(0 < worst <= MATMUL_BOUND, f"matmul: probabilities differ from ONNX Runtime's by {worst:.3g}, outside (0, {MATMUL_BOUND}]")
        summary[mode] = {"convs_on_npu": f"{convs.count(NPU)}/{len(convs)}", "nodes_on_npu": on_npu,
                         "nodes": sum(len(v) for v in where.values()), "class_equal": f"{agree}/{HELD_OUT}",
                         "largest_probability_difference": round(worst, 6), "simulated": cycles}
    print(json.dumps(summary))
    finish()


if __name__ == "__main__":
    main()
