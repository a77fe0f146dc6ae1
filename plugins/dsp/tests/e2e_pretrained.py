#!/usr/bin/env python3
"""kiln.dsp on a real pretrained CNN quantized by Kiln's own calibration: PP-OCR's text-orientation classifier
(rapidocr-onnxruntime's ch_ppocr_mobile_v2.0_cls, fetched from its wheel as scripts/quantize-accuracy does), `kiln compile MODEL --quantize
int8 --calibration DIR --target dsp-hvx --plugin libkiln_dsp.so`, against the same quantization run whole on
kiln.reference (`--backend kiln.reference`: the same calibration samples, so the same int8 graph).

Calibration and held-out inputs are text lines drawn with NumPy (scripts/quantize-accuracy's `drawn_line`, half of
the held-out ones turned 180 degrees, as the classifier's task is), normalized as PP-OCR does.

Asserts:
  * every Conv runs on sampledsp.hvx (as a QLinearConv), and so does the head's MatMul (a QDQ MatMul with per-column
    weight scales, as a QLinearMatMul); at least half of the hard-swish Divs run there (the hard-swish chains between a
    DequantizeLinear and a QuantizeLinear become lookup tables; the ones whose float result also feeds a squeeze-excitation
    pool cannot); what the DSP does not run (squeeze-excitation pooling and gating, residual Adds, the float head)
    falls back to kiln.cpu, by name;
  * on every held-out line, the class (argmax) equals kiln.reference's;
  * the two class probabilities are within PROB_BOUND of kiln.reference's. kiln.dsp requantizes with a Q31
    multiplier and two roundings half up, kiln.reference in float with one rounding half to even (DSP.md); each
    of the model's 50-odd quantized layers can differ by one quantum, and those differences add up through the
    network: about 0.02 of probability on these lines, which the bound states with room.
Usage: e2e_pretrained.py KILN PLUGIN WORKDIR
"""
import json
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import placements, quantize_accuracy, run  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
DSP = "sampledsp.hvx"
PROB_BOUND = 0.08
CALIBRATION, HELD_OUT = 8, 8


def main():
    kiln, plugin, work = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    # The model file only, through scripts/quantize-accuracy's own fetch (scripts/real-models' download and
    # extraction code, no corpus venv), into the cache scripts/quantize-accuracy --ci uses too.
    qa = quantize_accuracy()
    qa.real_models_module = qa.real_models()
    entry = next(e for e in qa.real_models_module.CORPUS if e["name"] == "ppocr-cls-v2")
    _, model = qa.prepare_model(entry, os.path.join(ROOT, ".cache"))
    calibration = os.path.join(work, "calibration")
    os.makedirs(calibration, exist_ok=True)
    for i, sample in enumerate(qa.ocr_samples("ppocr-cls-v2", CALIBRATION, 1000, qa.drawn_line)):
        np.save(os.path.join(calibration, f"{i:03d}.npy"), sample["x"])

    def compile_(name, *extra):
        out = os.path.join(work, name + ".kiln")
        done = subprocess.run([kiln, "compile", model, "-o", out, "--quantize", "int8", "--calibration", calibration, *extra],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return out

    dsp = compile_("dsp", "--target", "dsp-hvx", "--plugin", plugin)
    reference = compile_("reference", "--backend", "kiln.reference")
    inspect = run([kiln, "inspect", dsp, "--partitions", "--plugin", plugin])
    where = placements(inspect)
    convs = where.get("Conv", [])
    assert convs and set(convs) == {DSP}, f"Conv placed on {sorted(set(convs))}, expected only {DSP}"
    assert where.get("MatMul") == [DSP], f"MatMul placed on {where.get('MatMul')}, expected {DSP}"
    divs = where.get("Div", [])
    assert divs and 2 * divs.count(DSP) >= len(divs), f"hard-swish Div placed on {divs}: fewer than half on {DSP}"
    nodes = sum(len(v) for v in where.values())
    on_dsp = sum(v.count(DSP) for v in where.values())
    partitions = int(re.search(r"partitions \((\d+)\)", inspect).group(1))

    worst, agree = 0.0, 0
    for i, sample in enumerate(qa.ocr_samples("ppocr-cls-v2", HELD_OUT, 5000, qa.drawn_line)):
        path = os.path.join(work, f"x{i}.npy")
        np.save(path, sample["x"])
        outputs = {}
        for name, artifact, extra in (("dsp", dsp, ["--plugin", plugin]), ("reference", reference, [])):
            out_dir = os.path.join(work, f"out-{name}-{i}")
            done = subprocess.run([kiln, "run", artifact, "--input", f"x={path}", "--output-dir", out_dir, *extra],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            files = sorted(os.listdir(out_dir))
            assert len(files) == 1, files
            outputs[name] = np.load(os.path.join(out_dir, files[0]))
        got, want = outputs["dsp"], outputs["reference"]
        assert got.shape == want.shape, (got.shape, want.shape)
        assert int(np.argmax(got)) == int(np.argmax(want)), f"line {i}: class {np.argmax(got)} vs kiln.reference {np.argmax(want)} ({got} vs {want})"
        agree += 1
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= PROB_BOUND, f"probabilities differ by {worst:.4f} > {PROB_BOUND}"
    print(json.dumps({"conv_on_dsp": len(convs), "nodes_on_dsp": on_dsp, "nodes": nodes, "partitions": partitions, "held_out": HELD_OUT, "class_equal": agree,
                      "largest_probability_difference": round(worst, 5), "bound": PROB_BOUND}))
    print(f"e2e_pretrained: PASS — PP-OCR classifier, {len(convs)} Convs and {on_dsp} of {nodes} nodes on {DSP} ({partitions} partitions); the class equals kiln.reference's on "
          f"{agree}/{HELD_OUT} held-out lines; probabilities within {worst:.4f} (bound {PROB_BOUND})")


if __name__ == "__main__":
    main()
