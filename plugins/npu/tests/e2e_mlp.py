"""e2e_mlp.py — a transformer-ish MLP block compiled for --target npu-nc2 and run, compared with kiln.reference.

The model (built here with the onnx package, fixed shapes so that the NPU lowering can tile it):
    h = Relu(MatMul(x[600,300], W1[300,200]) + b1)          -> one fused MatMul, bias and ReLU drain
    s = Sigmoid(Gemm(h, W2[160,200], c2, transB=1, alpha, beta))
    u = MatMul(s, W3[160,160]) + b3
    res = u + s                                             -> VectorE (residual, equal shapes)
    m = res * g[160]                                        -> VectorE, a row broadcast by DMA
    y = Tanh(Softmax(LogSoftmax(m)))                        -> LogSoftmax is not supported: kiln.cpu; Softmax, Tanh back on the NPU
Outputs res and y. Shapes cross the tile sizes (M 600 = 512 + 88, K 300 = 2·128 + 44, N 200 = 128 + 72).

First, one 512x128x128 MatMul whose cycle-model report (TensorE cycles, DMA bytes) is computed by hand.
Then, for auto-cast none, matmul and all (given as `--backend-option auto-cast=MODE`, which plugin ABI 1.3 passes to
the plugin's compile; for none, KILN_NPU_AUTO_CAST=all is also set, and the option must win; a value outside the
option's choices must be refused by the host):
  * placement: every MatMul/Gemm/Add/Mul/Relu/Sigmoid/Softmax/Tanh on sampleneuron.nc2, LogSoftmax on kiln.cpu, with its
    reason;
  * none:   max|npu - ref| / max|ref| <= 1e-5 on both outputs;
  * matmul: the same error <= 3 * 2^-7 (three chained matmuls whose inputs are rounded to bf16, each adding at most
            about 2^-8 of sum|x||w| relative error, doubled for the ReLU/sigmoid/residual mixing) and > 0, which
            shows that the cast happened;
  * all:    the same bound (elementwise operands rounded too add at most 2^-9 relative each), and an error different
            from matmul's, which shows the elementwise cast happened;
  * the cycle model's Chrome traces (KILN_NPU_TRACE, one per NPU partition run) have one row per engine and events on TensorE, ScalarE, VectorE and DMA,
    and the text report (KILN_NPU_REPORT) names the auto-cast mode.
And a 4-tile matmul whose trace must show prefetch loads overlapping TensorE work (double buffering).
    python e2e_mlp.py KILN PLUGIN WORKDIR
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NONE_BOUND = 1e-5
MATMUL_BOUND = 3 * 2.0 ** -7


def build(path, rng):
    """Writes the model to `path`."""
    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
    inits = [init("W1", (300, 200), 300 ** -0.5), init("b1", (200,), 0.1), init("W2", (160, 200), 200 ** -0.5),
             init("c2", (160,), 0.1), init("W3", (160, 160), 160 ** -0.5), init("b3", (160,), 0.1), init("g", (160,), 1.0)]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("Gemm", ["h", "W2", "c2"], ["s0"], transB=1, alpha=0.75, beta=1.5),
        helper.make_node("Sigmoid", ["s0"], ["s"]),
        helper.make_node("MatMul", ["s", "W3"], ["u0"]),
        helper.make_node("Add", ["u0", "b3"], ["u"]),
        helper.make_node("Add", ["u", "s"], ["res"]),
        helper.make_node("Mul", ["res", "g"], ["m"]),
        helper.make_node("LogSoftmax", ["m"], ["lp"], axis=-1),
        helper.make_node("Softmax", ["lp"], ["p"], axis=-1),
        helper.make_node("Tanh", ["p"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "mlp_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [600, 300])],
                              [helper.make_tensor_value_info("res", TensorProto.FLOAT, [600, 160]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [600, 160])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def single_matmul(kiln, plugin, work, rng):
    """One 512x128 @ 128x128 MatMul: one tile of each dimension, so the cycle model's report can be computed by
    hand. TensorE: LoadStationary ceil(128/4) = 32 cycles + MultiplyMoving max(512, 64) = 512 (bf16) or 4 * 512
    (fp32). DMA bytes: x and W in at 2 bytes (bf16) or 4, the fp32 result out at 4:
    matmul 512*128*2 + 128*128*2 + 512*128*4 = 425984, none 512*128*4 + 128*128*4 + 512*128*4 = 589824."""
    path = os.path.join(work, "matmul.onnx")
    w = numpy_helper.from_array(rng.standard_normal((128, 128)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "one_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512, 128])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512, 128])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    x = os.path.join(work, "mx.npy")
    xv = rng.standard_normal((512, 128)).astype(np.float32)
    np.save(x, xv)
    want = xv.astype(np.float64) @ numpy_helper.to_array(w).astype(np.float64)
    for mode, cycles, dma in (("matmul", 544, 425984), ("none", 32 + 4 * 512, 589824)):
        env = dict(os.environ, KILN_NPU_AUTO_CAST=mode)
        art = os.path.join(work, f"matmul-{mode}.kiln")
        run([kiln, "compile", path, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "deny"], env)
        report = os.path.join(work, f"matmul-{mode}.txt")
        run([kiln, "run", art, "--plugin", plugin, "--input", f"x={x}", "--output-dir", os.path.join(work, f"mm-{mode}")],
            dict(env, KILN_NPU_REPORT=report))
        text = open(report).read()
        got_cycles = re.search(r"TensorE\s+2 instr\s+(\d+) cycles", text)
        got_dma = re.search(r"DMA bytes (\d+)", text)
        if not got_cycles or int(got_cycles.group(1)) != cycles or not got_dma or int(got_dma.group(1)) != dma:
            sys.exit(f"e2e_mlp: one 512x128x128 matmul ({mode}): want TensorE 2 instructions, {cycles} cycles, {dma} DMA bytes; report:\n{text}")
        got = np.load(os.path.join(work, f"mm-{mode}", "y.npy"))
        err = float(np.abs(got - want).max() / np.abs(want).max())
        if err > (NONE_BOUND if mode == "none" else 2.0 ** -7):
            sys.exit(f"e2e_mlp: one matmul ({mode}) differs from numpy float64 by {err:.3g}")
        print(f"one matmul ({mode}): TensorE {cycles} cycles, {dma} DMA bytes, as computed by hand; error vs float64 {err:.2g}")


def double_buffering(kiln, plugin, work, rng):
    """x[2048,128] @ W[128,128]: four M tiles through two moving slots. The third tile's loads must wait for
    TensorE to free slot 0 and then run while TensorE works on the second tile: in the trace, some DmaLoad that
    starts after the first MultiplyMoving overlaps a MultiplyMoving in time."""
    path = os.path.join(work, "tall.onnx")
    w = numpy_helper.from_array(rng.standard_normal((128, 128)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "tall_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2048, 128])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2048, 128])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    x = os.path.join(work, "tx.npy")
    np.save(x, rng.standard_normal((2048, 128)).astype(np.float32))
    art, trace = os.path.join(work, "tall.kiln"), os.path.join(work, "tall-trace.json")
    run([kiln, "compile", path, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "deny"])
    run([kiln, "run", art, "--plugin", plugin, "--input", f"x={x}", "--output-dir", os.path.join(work, "tall")],
        dict(os.environ, KILN_NPU_TRACE=trace))
    events = json.load(open(trace))["traceEvents"]
    mms = [e for e in events if e.get("name") == "MultiplyMoving"]
    first = min(e["ts"] for e in mms)
    later = [e for e in events if e.get("name") == "DmaLoad" and e["ts"] > first]
    if not later or not any(a["ts"] < b["ts"] + b["dur"] and b["ts"] < a["ts"] + a["dur"] for a in later for b in mms):
        sys.exit("e2e_mlp: no prefetch overlaps TensorE work in the trace of a 4-tile matmul: the double buffering does not show")
    print(f"double buffering: {len(later)} loads start after TensorE does, and they overlap its MultiplyMoving")


def run(cmd, env=None):
    """Runs a command, exiting with its output when it fails; returns stdout + stderr."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"e2e_mlp: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def main():
    kiln, plugin, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(11)
    model = os.path.join(work, "mlp.onnx")
    build(model, rng)
    x = rng.standard_normal((600, 300)).astype(np.float32)
    xin = os.path.join(work, "x.npy")
    np.save(xin, x)
    ref = os.path.join(work, "ref")
    run([kiln, "run", model, "--backend", "kiln.reference", "--input", f"x={xin}", "--output-dir", ref])
    single_matmul(kiln, plugin, work, rng)
    double_buffering(kiln, plugin, work, rng)
    errors = {}
    refused = subprocess.run([kiln, "compile", model, "--output", os.path.join(work, "bad.kiln"), "--plugin", plugin,
                              "--target", "npu-nc2", "--backend-option", "auto-cast=fp8"], capture_output=True, text=True)
    if refused.returncode == 0 or "option auto-cast='fp8': expected one of none, matmul, all" not in refused.stderr:
        sys.exit(f"e2e_mlp: auto-cast=fp8 was not refused by name: {refused.returncode} {refused.stderr}")
    for mode in ("none", "matmul", "all"):
        env = {k: v for k, v in os.environ.items() if k != "KILN_NPU_AUTO_CAST"}
        if mode == "none":
            env["KILN_NPU_AUTO_CAST"] = "all"  # the compile option must win over the environment
        art = os.path.join(work, f"mlp-{mode}.kiln")
        run([kiln, "compile", model, "--output", art, "--plugin", plugin, "--target", "npu-nc2", "--fallback", "allow",
             "--backend-option", f"auto-cast={mode}"], env)
        inspect = run([kiln, "inspect", art, "--partitions"])
        placed = {}
        for m in re.finditer(r"node \d+ (?:'[^']*' )?\((\w+)\) → ([\w.]+):", inspect):
            placed.setdefault(m.group(1), set()).add(m.group(2))
        print(f"placement ({mode}):", {op: sorted(b) for op, b in sorted(placed.items())})
        for op in ("MatMul", "Add", "Relu", "Gemm", "Sigmoid", "Mul", "Softmax", "Tanh"):
            if op in placed and placed[op] != {"sampleneuron.nc2"}:
                sys.exit(f"e2e_mlp: {op} is not placed (only) on sampleneuron.nc2: {placed[op]}\n{inspect}")
        if not placed.get("LogSoftmax") or "sampleneuron.nc2" in placed["LogSoftmax"] or "LogSoftmax is not supported on npu-nc2" not in inspect:
            sys.exit("e2e_mlp: LogSoftmax did not fall back with its reason:\n" + inspect)
        if not {"Gemm", "Sigmoid", "Softmax", "Tanh"} <= set(placed):
            sys.exit(f"e2e_mlp: the compiled model lost ops the test relies on: {placed}")
        out = os.path.join(work, f"npu-{mode}")
        trace, report = os.path.join(work, f"trace-{mode}-{{run}}.json"), os.path.join(work, f"report-{mode}-{{run}}.txt")
        run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xin}", "--output-dir", out],
            dict(env, KILN_NPU_TRACE=trace, KILN_NPU_REPORT=report))
        worst = 0.0
        for name in ("res", "y"):
            got, want = np.load(os.path.join(out, f"{name}.npy")), np.load(os.path.join(ref, f"{name}.npy"))
            if got.shape != want.shape:
                sys.exit(f"e2e_mlp: {name} has shape {got.shape}, the reference {want.shape}")
            err = float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())
            worst = max(worst, err)
        errors[mode] = worst
        traces = sorted(f for f in os.listdir(work) if f.startswith(f"trace-{mode}-"))
        if len(traces) != 2:  # the NPU partitions before and after the LogSoftmax
            sys.exit(f"e2e_mlp: expected 2 traces (one per NPU partition run), found {traces}")
        events = [e for f in traces for e in json.load(open(os.path.join(work, f)))["traceEvents"]]
        rows = {e["args"]["name"] for e in events if e.get("ph") == "M"}
        busy = {e["tid"] for e in events if e.get("ph") == "X"}
        names = {e["name"] for e in events if e.get("ph") == "X"}
        if not {"TensorE", "VectorE", "ScalarE", "DMA0"} <= rows or not {0, 1, 2, 3} <= busy:
            sys.exit(f"e2e_mlp: the trace lacks engine rows or events: rows {sorted(rows)}, busy {sorted(busy)}")
        if not {"LoadStationary", "MultiplyMoving", "Activate", "Vector", "DmaLoad", "DmaStore"} <= names:
            sys.exit(f"e2e_mlp: the trace lacks instruction kinds: {sorted(names)}")
        text = open(os.path.join(work, f"report-{mode}-0.txt")).read()  # the first NPU partition: the matmuls
        if f"auto-cast {mode}" not in text or "TensorE" not in text:
            sys.exit("e2e_mlp: the report does not describe the run:\n" + text)
        print(f"cycle model ({mode}): " + " | ".join(line.strip() for line in text.splitlines()[1:5]))
    print(json.dumps({"max_error_over_max_ref": errors, "bounds": {"none": NONE_BOUND, "matmul": MATMUL_BOUND}}))
    if errors["none"] > NONE_BOUND:
        sys.exit(f"e2e_mlp: FAIL — auto-cast none differs from kiln.reference by {errors['none']:.3g} (bound {NONE_BOUND})")
    if not 0 < errors["matmul"] <= MATMUL_BOUND:
        sys.exit(f"e2e_mlp: FAIL — auto-cast matmul error {errors['matmul']:.3g} is outside (0, {MATMUL_BOUND:.3g}]")
    if not 0 < errors["all"] <= MATMUL_BOUND or errors["all"] == errors["matmul"]:
        sys.exit(f"e2e_mlp: FAIL — auto-cast all error {errors['all']:.3g} is outside (0, {MATMUL_BOUND:.3g}] or equals matmul's (the cast of elementwise operands had no effect)")
    print(f"e2e_mlp: PASS — none {errors['none']:.3g} (<= {NONE_BOUND}), matmul {errors['matmul']:.3g}, all {errors['all']:.3g} (<= {MATMUL_BOUND:.3g}, bf16 inputs)")


if __name__ == "__main__":
    main()
