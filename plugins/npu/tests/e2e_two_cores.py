"""e2e_two_cores.py — the device's two NeuronCores (compile options cores=2, placement=batch|pipeline), each with its
own engines, SBUF and PSUM, their DMA queues sharing the device's 820 GB/s of memory, checked on a model whose time is
TensorE's (hand-checkable expectations) and on the CNN/transformer-style ops against kiln.reference.

Model: x[8, 16, 64, 64] -> depthwise Conv 3x3 pad 1 + bias (+ Relu, fused) -> depthwise Conv 3x3 pad 1 -> y, auto-cast
none. Most of its time is VectorE's (the taps: 152 of 201 us on one core; the rest is the planes' DMA before the first
tap and the last stores), and VectorE's cycles can be counted by hand:
  * one core, batch 8: N·C = 128 (image, channel) pairs fill the 128 partitions, one band of 64 output rows each; a
    padded row is Wq = 66 columns, a run ⌊512/66⌋ = 7 rows, so 9 runs of 462 columns and one of 66; every run is 9
    taps, one VECTOR each at 2·cols + 100 cycles (fp32): per Conv 9·(9·1024 + 232) = 85032 cycles, 170064 for both —
    the report's VectorE cycles must be exactly that;
  * two cores, placement batch: each core runs 4 images (64 pairs: 2 bands of 32 rows on 128 partitions: 4 runs of
    462 columns and one of 264): 85032 VectorE cycles per core, half of one core's, so the run takes about half as
    long (asserted within [0.45, 0.6] of one core's time; the planes' DMA does not halve: the two cores share the
    device's 820 GB/s);
The simulated times come from running the programs in the simulator (KILN_NPU_REPORT); further:
  * every placement's result matches kiln.reference (<= 1e-5 relative: the same fp32 arithmetic, split differently);
  * two cores, placement pipeline: the stage boundary falls between the two Convs (the plugin balances the
    simulated time of the stages: here equal halves), so images leave the pipeline one stage-time apart: every gap
    between consecutive images' completion is within 15% of half the one-core time of one image (T1(batch 1) / 2),
    never below 0.9 of it (throughput is bounded by the slower stage), the first image takes about a whole
    one-image time (both stages one after the other: within [0.9, 1.3]·T1(batch 1)), and the run is about
    (N + 1)/2 one-image times;
  * batch 1 with placement batch leaves core 1 idle: the time is within 5% of one core's;
  * data movement keeps the batch split when dim 0 stays the batch: x[4,6,200] -> Transpose [0,2,1] -> Relu -> Reshape
    [0, -1] (= [4, 1200]; a fixed 4 there would not fit a core's half of the batch) runs on 2 cores; adding a Transpose [2,0,1] (axis 0 moves) makes the program one core's (the report says
    so); both match kiln.reference;
  * bad option values (cores=3, placement=diagonal) are refused at compile time.
Usage: e2e_two_cores.py KILN PLUGIN WORKDIR
"""
import os
import re
import subprocess
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
from ak_e2e import arguments, expect, finish, run, save_model  # noqa: E402

N, C, H = 8, 16, 64
VECTOR_CYCLES_ONE_CORE = 2 * 9 * (9 * (2 * 462 + 100) + (2 * 66 + 100))   # 170064, counted above


def model(path, batch, rng):
    inits = [numpy_helper.from_array((rng.standard_normal((C, 1, 3, 3)) / 3).astype(np.float32), "W1"),
             numpy_helper.from_array((rng.standard_normal(C) * 0.1).astype(np.float32), "B1"),
             numpy_helper.from_array((rng.standard_normal((C, 1, 3, 3)) / 3).astype(np.float32), "W2")]
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["h0"], name="dw1", group=C, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h0"], ["h"], name="relu"),
             helper.make_node("Conv", ["h", "W2"], ["y"], name="dw2", group=C, pads=[1, 1, 1, 1])]
    vi = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, C, H, H])
    save_model(path, nodes, [vi("x")], [vi("y")], inits)


def simulate(kiln, plugin, work, onnx_path, x_path, tag, cores, placement):
    """Compiles and runs one placement; returns (y, total us, per-image completion us, VectorE cycles per core)."""
    art = os.path.join(work, f"{tag}.kiln")
    run([kiln, "compile", onnx_path, "-o", art, "--plugin", plugin, "--target", "npu-nc2", "--backend-option", "auto-cast=none",
         "--backend-option", f"cores={cores}", "--backend-option", f"placement={placement}"])
    out, report = os.path.join(work, f"{tag}-out"), os.path.join(work, f"{tag}-report.txt")
    run([kiln, "run", art, "--plugin", plugin, "--input", f"x={x_path}", "--output-dir", out], dict(os.environ, KILN_NPU_REPORT=report))
    text = open(report).read()
    total = float(re.search(r"^total (\S+) us", text, re.M).group(1))
    done = [float(v) for v in re.search(r"^done by batch row \(us\): (.*)$", text, re.M).group(1).split()]
    expect(f"{cores} core" in text.splitlines()[0], f"{tag}: the report names {cores} core(s): {text.splitlines()[0]}")
    vector = [int(v) for v in re.findall(r"^\s+(?:core1\.)?VectorE\s+\d+ instr\s+(\d+) cycles", text, re.M)]
    return np.load(os.path.join(out, "y.npy")), total, done, vector


def main():
    kiln, plugin, work = arguments()
    rng = np.random.default_rng(5)
    paths = {}
    for batch in (N, 1):
        paths[batch] = os.path.join(work, f"mm{batch}.onnx")
        model(paths[batch], batch, np.random.default_rng(5))
    x = rng.standard_normal((N, C, H, H)).astype(np.float32)
    xs = {N: os.path.join(work, "x8.npy"), 1: os.path.join(work, "x1.npy")}
    np.save(xs[N], x)
    np.save(xs[1], x[:1])
    ref = os.path.join(work, "ref")
    run([kiln, "run", paths[N], "--backend", "kiln.reference", "--input", f"x={xs[N]}", "--output-dir", ref])
    want = np.load(os.path.join(ref, "y.npy"))

    results = {}
    for tag, batch, cores, placement in (("one-8", N, 1, "batch"), ("one-1", 1, 1, "batch"), ("batch-8", N, 2, "batch"),
                                         ("pipeline-8", N, 2, "pipeline"), ("batch-1", 1, 2, "batch")):
        y, total, done, vector = simulate(kiln, plugin, work, paths[batch], xs[batch], tag, cores, placement)
        err = float(np.abs(y - want[:batch]).max() / np.abs(want[:batch]).max())
        expect(err <= 1e-5, f"{tag}: max|npu-ref|/max|ref| = {err:.3g} > 1e-5")
        results[tag] = (total, done, vector)
        print(f"{tag}: {cores} core(s), placement {placement}, batch {batch}: {total:.3f} us; VectorE cycles per core {vector}; images done at "
              + " ".join(f"{d:.2f}" for d in done) + f" us; error {err:.2g}")

    t1, t1_one = results["one-8"][0], results["one-1"][0]
    expect(results["one-8"][2] == [VECTOR_CYCLES_ONE_CORE], f"one core: VectorE cycles {results['one-8'][2]}, counted by hand {VECTOR_CYCLES_ONE_CORE}")
    expect(results["batch-8"][2] == [VECTOR_CYCLES_ONE_CORE // 2] * 2, f"batch placement: VectorE cycles per core {results['batch-8'][2]}, want {VECTOR_CYCLES_ONE_CORE // 2} each")
    ratio = results["batch-8"][0] / t1
    expect(0.45 <= ratio <= 0.6, f"batch placement on 2 cores takes {ratio:.3f} of one core's time (want about 1/2)")
    done = results["pipeline-8"][1]
    gaps = [b - a for a, b in zip(done, done[1:])]
    stage = t1_one / 2
    expect(all(0.9 * stage <= g <= 1.15 * stage for g in gaps), f"pipeline: gaps between images {gaps} vs half an image's one-core time {stage:.3f}")
    expect(0.9 * t1_one <= done[0] <= 1.3 * t1_one, f"pipeline: the first image takes {done[0]:.3f} us vs {t1_one:.3f} on one core")
    expect(results["pipeline-8"][0] >= N * 0.9 * stage, f"pipeline: {N} images in {results['pipeline-8'][0]:.3f} us: faster than the slower stage allows")
    one_ratio = results["batch-1"][0] / t1_one
    expect(0.95 <= one_ratio <= 1.05, f"batch placement of batch 1 on 2 cores: {one_ratio:.3f} of one core's time (want 1)")
    print(f"two cores: batch placement {ratio:.3f} x one core's time; pipeline images {np.mean(gaps):.3f} us apart "
          f"(half a one-image run: {stage:.3f} us), first image {done[0]:.3f} us (one-image run {t1_one:.3f} us)")

    for moves in (False, True):
        inits = [numpy_helper.from_array(np.array([0, -1], np.int64), "shape")]  # 0: dim 0 as the input's, so any batch slice reshapes
        nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]), helper.make_node("Relu", ["t"], ["r"]),
                 helper.make_node("Reshape", ["r", "shape"], ["y"])]
        outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1200])]
        if moves:
            nodes.append(helper.make_node("Transpose", ["x"], ["y2"], perm=[2, 0, 1]))
            outs.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, [200, 4, 6]))
        path = os.path.join(work, f"moves{int(moves)}.onnx")
        save_model(path, nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 6, 200])], outs, inits)
        xm = os.path.join(work, "xm.npy")
        np.save(xm, rng.standard_normal((4, 6, 200)).astype(np.float32))
        ref_m = os.path.join(work, f"ref-moves{int(moves)}")
        run([kiln, "run", path, "--backend", "kiln.reference", "--input", f"x={xm}", "--output-dir", ref_m])
        art, out, report = (os.path.join(work, f"moves{int(moves)}{ext}") for ext in (".kiln", "-out", "-report.txt"))
        run([kiln, "compile", path, "-o", art, "--plugin", plugin, "--target", "npu-nc2", "--backend-option", "cores=2"])
        run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xm}", "--output-dir", out], dict(os.environ, KILN_NPU_REPORT=report))
        first_line = open(report).readline()
        expect(("1 core" in first_line) == moves and ("2 cores" in first_line) != moves, f"copies (axis 0 moves: {moves}): {first_line}")
        for f in os.listdir(ref_m):
            expect(np.array_equal(np.load(os.path.join(out, f)), np.load(os.path.join(ref_m, f))), f"copies (axis 0 moves: {moves}): {f} differs from kiln.reference")
        print(f"copies with cores=2 (axis 0 moves: {moves}): {first_line.strip()}")

    for option, value in (("cores", "3"), ("placement", "diagonal")):
        done_ = subprocess.run([kiln, "compile", paths[N], "-o", os.path.join(work, "bad.kiln"), "--plugin", plugin, "--target", "npu-nc2",
                                "--backend-option", f"{option}={value}"], capture_output=True, text=True)
        expect(done_.returncode != 0 and value in done_.stdout + done_.stderr, f"{option}={value} is refused: {done_.stdout[-300:]}{done_.stderr[-300:]}")
    finish()


if __name__ == "__main__":
    main()
