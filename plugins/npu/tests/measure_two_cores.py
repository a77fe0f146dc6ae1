#!/usr/bin/env python3
"""measure_two_cores.py — simulated throughput and per-image latency of npu-nc2 on one core and on the device's two
cores (placement batch and pipeline) at batch 1, 4 and 8, beside kiln.cpu measured on this machine: the table in
Documentation/targets/NPU.md ("Two cores"). Not part of run-tests (it takes minutes: the functional simulator
executes every instruction).

Models:
  * detector: a small single-shot detector built here with onnx (random weights; what matters is its shape):
    x[B,3,128,128] -> Conv 3->16 3x3 s2 + Relu -> [depthwise 3x3 + Relu -> pointwise Conv + Relu -> MaxPool 2x2] x2
    -> depthwise 3x3 + Relu -> pointwise 64->64 + Relu -> heads: Conv 1x1 -> 12 class scores (3 anchors x 4 classes)
    + Sigmoid, Conv 1x1 -> 12 box offsets (3 anchors x 4), on a 16x16 grid. It runs whole on the NPU (one program).
  * encoder: out/real-models/models/minilm-l6 (all-MiniLM-L6-v2, 6 BERT layers), sequence 128, compiled with
    --input-shape; its MatMuls, LayerNormalizations and Adds run on the NPU (13 programs), the rest (Gather,
    attention's Q·Kᵀ and ·V, Reshape/Transpose, Erf, Div, Softmax between them) on kiln.cpu.
For each model, batch and placement: `kiln compile MODEL --plugin libkiln_npu.so --target npu-nc2 --input-shape
NAME=B,... --backend-option cores=1|2 --backend-option placement=batch|pipeline`, then one `kiln run` with
KILN_NPU_REPORT. The NPU time of a run is the sum of its programs' simulated totals (kiln.cpu's share and the
host<->device copies at partition boundaries are not in it; the programs run one after another). Image i of the
batch is done when the last program has stored its rows: latency_i = the earlier programs' totals + that program's
"done by batch row" time for row i (all images arrive together when the batch starts). Throughput = B / NPU time.
Every run's outputs are compared with kiln.reference (detector: <= 1e-5 relative; encoder: <= 1e-4, kiln.reference
and the NPU summing 384- and 1536-long rows in different orders) — auto-cast none, fp32 everywhere, so the placements
must agree to rounding.
kiln.cpu: `kiln bench MODEL --input ... --runs 20 --warmup 3` on this machine (its median and p90 latency of a whole
batch; throughput B / median), with the kiln of --cpu-kiln (default KILN): time kiln.cpu with a release build, a
debug build's kiln.cpu is some 50 times slower. The machine is shared: those numbers vary from run to run.
Usage: measure_two_cores.py KILN PLUGIN WORKDIR [--batches 1,4,8] [--models detector,encoder] [--cpu-kiln KILN]
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import run, save_model  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
MINILM = os.path.join(ROOT, "out", "real-models", "models", "minilm-l6", "model.onnx")
SEQ = 128
PLACEMENTS = (("1 core", 1, "batch"), ("2 cores, batch", 2, "batch"), ("2 cores, pipeline", 2, "pipeline"))


def detector(path):
    """Writes the small single-shot detector (symbolic batch)."""
    rng = np.random.default_rng(7)
    inits, nodes = [], []

    def conv(x, y, cin, cout, k, stride=1, group=1, act="Relu"):
        w = f"{y}_w"
        inits.append(numpy_helper.from_array((rng.standard_normal((cout, cin // group, k, k)) * (cin // group * k * k) ** -0.5).astype(np.float32), w))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32), f"{y}_b"))
        out = f"{y}_pre" if act else y
        nodes.append(helper.make_node("Conv", [x, w, f"{y}_b"], [out], name=y, group=group, strides=[stride, stride], pads=[k // 2] * 4))
        if act:
            nodes.append(helper.make_node(act, [out], [y], name=f"{y}_{act.lower()}"))
        return y

    h = conv("x", "stem", 3, 16, 3, stride=2)
    cin = 16
    for i, cout in enumerate((32, 64)):
        h = conv(h, f"dw{i}", cin, cin, 3, group=cin)
        h = conv(h, f"pw{i}", cin, cout, 1)
        nodes.append(helper.make_node("MaxPool", [h], [f"pool{i}"], name=f"pool{i}", kernel_shape=[2, 2], strides=[2, 2]))
        h, cin = f"pool{i}", cout
    h = conv(h, "dw2", 64, 64, 3, group=64)
    h = conv(h, "pw2", 64, 64, 1)
    conv(h, "scores", 64, 12, 1, act="Sigmoid")
    conv(h, "boxes", 64, 12, 1, act=None)
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    save_model(path, nodes, [vi("x", ["B", 3, 128, 128])], [vi("scores", ["B", 12, 16, 16]), vi("boxes", ["B", 12, 16, 16])], inits)


def inputs(work, model, batch):
    """Writes the inputs of `model` at `batch`; returns ([--input args], [--input-shape args])."""
    rng = np.random.default_rng(batch)
    if model == "detector":
        files = {"x": rng.standard_normal((batch, 3, 128, 128)).astype(np.float32)}
    else:
        files = {"input_ids": rng.integers(1000, 20000, (batch, SEQ)).astype(np.int64), "attention_mask": np.ones((batch, SEQ), np.int64),
                 "token_type_ids": np.zeros((batch, SEQ), np.int64)}
    args, shapes = [], []
    for name, value in files.items():
        path = os.path.join(work, f"{model}-{name}-{batch}.npy")
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
        shapes += ["--input-shape", f"{name}=" + ",".join(str(d) for d in value.shape)]
    return args, shapes


def percentile(values, q):
    """Nearest-rank percentile."""
    v = sorted(values)
    return v[max(0, int(np.ceil(q / 100 * len(v))) - 1)]


def simulate(kiln, plugin, work, model, path, batch, cores, placement, args, shapes, ref_dir, bound):
    tag = f"{model}-b{batch}-c{cores}-{placement}"
    art = os.path.join(work, f"{tag}.kiln")
    run([kiln, "compile", path, "-o", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "allow", *shapes,
         "--backend-option", "auto-cast=none", "--backend-option", f"cores={cores}", "--backend-option", f"placement={placement}"])
    out, reports = os.path.join(work, f"{tag}-out"), os.path.join(work, f"{tag}-reports")
    os.makedirs(reports, exist_ok=True)
    for f in os.listdir(reports):
        os.remove(os.path.join(reports, f))
    run([kiln, "run", art, "--plugin", plugin, *args, "--output-dir", out], dict(os.environ, KILN_NPU_REPORT=os.path.join(reports, "{run}.txt")))
    texts = [open(os.path.join(reports, f"{i}.txt")).read() for i in range(len(os.listdir(reports)))]
    totals = [float(re.search(r"^total (\S+) us", t, re.M).group(1)) for t in texts]
    last = re.search(r"^done by batch row \(us\): (.*)$", texts[-1], re.M)
    done = [float(v) for v in last.group(1).split()] if last else [totals[-1]] * batch
    latency = [sum(totals[:-1]) + d for d in done]
    worst = 0.0
    for f in sorted(os.listdir(ref_dir)):
        want, got = np.load(os.path.join(ref_dir, f)), np.load(os.path.join(out, f))
        worst = max(worst, float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30)))
    if worst > bound:
        sys.exit(f"measure_two_cores: {tag}: outputs differ from kiln.reference by {worst:.3g} > {bound}")
    total = sum(totals)
    return {"programs": len(totals), "npu_us": round(total, 3), "images_per_s": round(batch / total * 1e6, 1),
            "p50_us": round(percentile(latency, 50), 3), "p90_us": round(percentile(latency, 90), 3), "error_vs_reference": worst}


def cpu(kiln, path, args, batch):
    out = run([kiln, "bench", path, *args, "--runs", "20", "--warmup", "3"])
    m = re.search(r"median_ms: (\S+) p90_ms: (\S+)", out)
    median, p90 = float(m.group(1)), float(m.group(2))
    return {"median_ms": median, "p90_ms": p90, "images_per_s": round(batch / median * 1e3, 1)}


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    kiln, plugin, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    batches = [1, 4, 8]
    cpu_kiln = kiln
    models = ["detector", "encoder"]
    rest = sys.argv[4:]
    while rest:
        key, value = rest[0], rest[1]
        if key == "--batches":
            batches = [int(b) for b in value.split(",")]
        elif key == "--models":
            models = value.split(",")
        elif key == "--cpu-kiln":
            cpu_kiln = value
        rest = rest[2:]
    os.makedirs(work, exist_ok=True)
    paths = {"detector": os.path.join(work, "detector.onnx"), "encoder": MINILM}
    detector(paths["detector"])
    rows = []
    for model in models:
        for batch in batches:
            args, shapes = inputs(work, model, batch)
            ref = os.path.join(work, f"{model}-b{batch}-ref")
            run([kiln, "run", paths[model], "--backend", "kiln.reference", *args, "--output-dir", ref])
            cpu_row = cpu(cpu_kiln, paths[model], args, batch)
            for label, cores, placement in PLACEMENTS:
                r = simulate(kiln, plugin, work, model, paths[model], batch, cores, placement, args, shapes, ref, 1e-5 if model == "detector" else 1e-4)
                row = {"model": model, "batch": batch, "placement": label, **r, "kiln_cpu": cpu_row}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| model | batch | npu-nc2 placement | NPU programs | simulated NPU time per batch | images/s (simulated) | P50 / P90 latency (simulated) | kiln.cpu median / p90 per batch (measured) | kiln.cpu images/s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c = r["kiln_cpu"]
        print(f"| {r['model']} | {r['batch']} | {r['placement']} | {r['programs']} | {r['npu_us']:.1f} µs | {r['images_per_s']:,.0f} | "
              f"{r['p50_us']:.1f} / {r['p90_us']:.1f} µs | {c['median_ms']:.2f} / {c['p90_ms']:.2f} ms | {c['images_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
