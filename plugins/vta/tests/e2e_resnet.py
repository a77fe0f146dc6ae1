#!/usr/bin/env python3
"""e2e_resnet.py — samplevta.fpga end to end through the kiln CLI, compared bit for bit with kiln.reference.

1. The ResNet-18-like model of resnet_model.py, quantized by onnxruntime's quantize_static (QDQ, int8, seeded
   random calibration) with power-of-two scales, its stem and last-block int8 tensors added as outputs:
   * placement: every Conv, Add and Gemm (and their DequantizeLinear/QuantizeLinear) on samplevta.fpga; MaxPool,
     GlobalAveragePool, Flatten and the input QuantizeLinear fall back to the host;
   * for 4 seeded inputs on fpga-vta-pynq and 2 on fpga-vta-zcu104: every output equal to kiln.reference's (the int8
     tensors and the final float logits), also when 2 of them run in a random order that only the dependency tokens
     constrain (KILN_VTA_ORDER=random:SEED); kiln.cpu is compared too when it runs the model;
   * the per-layer report (KILN_VTA_REPORT): one row per lowered layer, MACs equal to those computed here from the
     model, the same simulator counters on both targets, and a shorter latency on zcu104 (3.33x the clock, 2x the bus).
2. The same model with the Gemm's scales left as quantize_static chose them: the Gemm must fall back to the host with
   the requantization reason, and the int8 tensors stay bit-exact.
3. quantize_static with QDQKeepRemovableActivations: the 7 standalone DequantizeLinear -> Relu -> QuantizeLinear
   are lowered too, and the outputs stay bit-exact.
4. A QLinearMatMul with multiplier 5·2^-10 built directly: claimed and bit-exact; with multiplier 0.3·2^-8 it is
   refused with its reason and still runs (on the host).
Writes the pynq per-layer table to WORKDIR/report-pynq.md and prints it.

    python e2e_resnet.py KILN PLUGIN WORKDIR
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resnet_model  # noqa: E402

BACKEND = "samplevta.fpga"
EXTRA_OUTPUTS = ["stem.r_QuantizeLinear_Output", "b3.out_QuantizeLinear_Output"]


def run(cmd, env=None):
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"e2e_resnet: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def placement(kiln, art):
    inspect = run([kiln, "inspect", art, "--partitions"])
    placed = {}
    for m in re.finditer(r"node \d+ (?:'([^']*)' )?\((\w+)\) → ([\w.]+):?(.*)", inspect):
        placed[(m.group(1) or "", m.group(2))] = (m.group(3), m.group(4))
    return placed, inspect


def add_outputs(model, names):
    for n in names:
        model.graph.output.append(helper.make_tensor_value_info(n, TensorProto.INT8, None))


def layer_macs(model):
    """MACs of every Conv/Gemm of the float-shaped model, from the shapes (computed independently of the plugin)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    out = {}
    hw = {"stem": 32, "b1.c1": 16, "b1.c2": 16, "b2.c1": 8, "b2.c2": 8, "b2.down": 8, "b3.c1": 4, "b3.c2": 4, "b3.down": 4, "fc": 1}
    for n in model.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            w = inits[producer[n.input[1]].input[0]]
            out[n.name] = int(np.prod(w.shape)) * hw[n.name] ** 2
        if n.op_type == "Add":
            out[n.name] = 0
    return out


def compare(kiln, plugin, art, qp, work, tag, cases, with_cpu, env_extra=None):
    rng = np.random.default_rng(99)
    cpu_state = "not tried"
    for case in range(cases):
        x = (rng.standard_normal((1, 3, 32, 32)) * (1 + 0.5 * case)).astype(np.float32)
        xin = os.path.join(work, f"x{case}.npy")
        np.save(xin, x)
        d_vta, d_ref, d_cpu = (os.path.join(work, f"{tag}-{k}{case}") for k in ("vta", "ref", "cpu"))
        env = dict(os.environ, **(env_extra or {}))
        if env_extra and "KILN_VTA_REPORT" in env_extra:
            env["KILN_VTA_REPORT"] = env_extra["KILN_VTA_REPORT"].replace("{case}", str(case))
        run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xin}", "--output-dir", d_vta], env=env)
        run([kiln, "run", qp, "--backend", "kiln.reference", "--input", f"x={xin}", "--output-dir", d_ref])
        names = ["y"] + EXTRA_OUTPUTS
        for name in names:
            got, want = np.load(os.path.join(d_vta, f"{name}.npy")), np.load(os.path.join(d_ref, f"{name}.npy"))
            if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
                bad = int((got != want).sum()) if got.shape == want.shape else -1
                sys.exit(f"e2e_resnet: FAIL ({tag}, input {case}): output {name} differs from kiln.reference in {bad} of {want.size} elements")
        if case < 2:
            # the same program in a random order that only the dependency tokens constrain: the same outputs
            d_rand = os.path.join(work, f"{tag}-rand{case}")
            run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xin}", "--output-dir", d_rand], env=dict(os.environ, KILN_VTA_ORDER=f"random:{case + 11}"))
            for name in names:
                if not np.array_equal(np.load(os.path.join(d_rand, f"{name}.npy")), np.load(os.path.join(d_ref, f"{name}.npy"))):
                    sys.exit(f"e2e_resnet: FAIL ({tag}, input {case}): run in a random token-respecting order, {name} differs from kiln.reference")
        if with_cpu:
            done = subprocess.run([kiln, "run", qp, "--backend", "kiln.cpu", "--input", f"x={xin}", "--output-dir", d_cpu], capture_output=True, text=True)
            if done.returncode != 0:
                cpu_state = "kiln.cpu does not run this model here: " + (done.stderr.strip().splitlines() or ["?"])[-1][:160]
            else:
                for name in names:
                    if not np.array_equal(np.load(os.path.join(d_vta, f"{name}.npy")), np.load(os.path.join(d_cpu, f"{name}.npy"))):
                        sys.exit(f"e2e_resnet: FAIL ({tag}, input {case}): output {name} differs from kiln.cpu")
                cpu_state = "bit-exact vs kiln.cpu too"
    return cpu_state


def parse_report(path):
    rows, counters = {}, None
    for line in open(path):
        m = re.match(r"\| ([\w.]+) \| (add|relu|conv/dense) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", line)
        if m:
            rows[m.group(1)] = {"macs": int(m.group(3)), "cycles": int(m.group(4)), "us": float(m.group(5))}
        m = re.match(r"\| total \| \| (\d+) \| (\d+) \| ([\d.]+) \|", line)
        if m:
            rows["total"] = {"macs": int(m.group(1)), "cycles": int(m.group(2)), "us": float(m.group(3))}
        if line.startswith("fsim:"):
            counters = line.strip()
    return rows, counters


def resnet(kiln, plugin, work):
    rng = np.random.default_rng(5)
    fp, qp = os.path.join(work, "resnet.onnx"), os.path.join(work, "resnet.q.onnx")
    resnet_model.build_float(fp, rng)
    q = resnet_model.quantize(fp, qp, rng)
    add_outputs(q, EXTRA_OUTPUTS)
    onnx.save(q, qp)
    expected_macs = layer_macs(q)
    reports = {}
    for target in ("fpga-vta-pynq", "fpga-vta-zcu104"):
        art = os.path.join(work, f"resnet-{target}.kiln")
        run([kiln, "compile", qp, "--output", art, "--plugin", plugin, "--target", target, "--fallback", "allow"])
        placed, inspect = placement(kiln, art)
        for (name, op), (backend, why) in placed.items():
            on_vta = op in ("Conv", "Add", "Gemm") or (op in ("DequantizeLinear",) and (name.endswith(".w_DequantizeLinear") or name.endswith(".b_DequantizeLinear")))
            if on_vta and backend != BACKEND:
                sys.exit(f"e2e_resnet: {op} '{name}' is on {backend}, not {BACKEND}:{why}\n{inspect}")
            if op in ("MaxPool", "GlobalAveragePool", "Flatten") and backend == BACKEND:
                sys.exit(f"e2e_resnet: {op} '{name}' was claimed by {BACKEND}")
        report = os.path.join(work, f"report-{target}-{{case}}-{{run}}.md")
        cpu = compare(kiln, plugin, art, qp, work, target, 4 if target.endswith("pynq") else 2, target.endswith("pynq"), {"KILN_VTA_REPORT": report})
        print(f"e2e_resnet: {target}: {len(layer_macs(q))} layers on {BACKEND}, outputs y, {', '.join(EXTRA_OUTPUTS)} bit-exact vs kiln.reference on "
              f"{4 if target.endswith('pynq') else 2} inputs (2 also in random token-respecting orders); {cpu}")
        files = sorted(f for f in os.listdir(work) if f.startswith(f"report-{target}-0-"))
        if not files:
            sys.exit(f"e2e_resnet: no KILN_VTA_REPORT file for {target}")
        reports[target] = [os.path.join(work, f) for f in files]
    # the report: all layers, MACs as computed here, the same counters on both targets, zcu104 faster
    tables = {}
    for target, paths in reports.items():
        merged, counters = {}, []
        for p in paths:
            rows, c = parse_report(p)
            merged.update({k: v for k, v in rows.items() if k != "total"})
            counters.append(c)
            merged.setdefault("_total_us", 0.0)
            merged["_total_us"] += rows["total"]["us"]
        tables[target] = (merged, counters)
        for name, macs in expected_macs.items():
            if name not in merged:
                sys.exit(f"e2e_resnet: the {target} report has no row for layer {name}")
            if merged[name]["macs"] != macs:
                sys.exit(f"e2e_resnet: the {target} report gives {name} {merged[name]['macs']} MACs, the model has {macs}")
    (pm, pc), (zm, zc) = tables["fpga-vta-pynq"], tables["fpga-vta-zcu104"]
    if pc != zc:
        sys.exit(f"e2e_resnet: the functional counters differ between targets:\n{pc}\n{zc}")
    if not zm["_total_us"] < pm["_total_us"] / 2:
        sys.exit(f"e2e_resnet: zcu104 ({zm['_total_us']:.1f} us) is not well below pynq ({pm['_total_us']:.1f} us)")
    print(f"e2e_resnet: per-layer reports list all {len(expected_macs)} layers with the model's MACs; fsim counters equal on both targets; "
          f"latency pynq {pm['_total_us']:.1f} us, zcu104 {zm['_total_us']:.1f} us (VTA partitions only)")
    with open(os.path.join(work, "report-pynq.md"), "w") as out:
        for p in reports["fpga-vta-pynq"]:
            out.write(open(p).read() + "\n")
    return q


def fallback_gemm(kiln, plugin, work):
    rng = np.random.default_rng(5)
    fp, qp = os.path.join(work, "resnet-keep.onnx"), os.path.join(work, "resnet-keep.q.onnx")
    resnet_model.build_float(fp, rng)
    q = resnet_model.quantize(fp, qp, rng, keep=("fc",))
    add_outputs(q, EXTRA_OUTPUTS)
    onnx.save(q, qp)
    art = os.path.join(work, "resnet-keep.kiln")
    run([kiln, "compile", qp, "--output", art, "--plugin", plugin, "--target", "fpga-vta-pynq", "--fallback", "allow"])
    placed, inspect = placement(kiln, art)
    fc = [v for (name, op), v in placed.items() if op == "Gemm"]
    if not fc or fc[0][0] == BACKEND or "power of two" not in inspect:
        sys.exit("e2e_resnet: the Gemm with non-power-of-two scales was not refused with its reason:\n" + inspect)
    rng2 = np.random.default_rng(3)
    x = rng2.standard_normal((1, 3, 32, 32)).astype(np.float32)
    xin = os.path.join(work, "xkeep.npy")
    np.save(xin, x)
    run([kiln, "run", art, "--plugin", plugin, "--input", f"x={xin}", "--output-dir", os.path.join(work, "keep-vta")])
    run([kiln, "run", qp, "--backend", "kiln.reference", "--input", f"x={xin}", "--output-dir", os.path.join(work, "keep-ref")])
    for name in EXTRA_OUTPUTS:
        if not np.array_equal(np.load(os.path.join(work, "keep-vta", f"{name}.npy")), np.load(os.path.join(work, "keep-ref", f"{name}.npy"))):
            sys.exit(f"e2e_resnet: FAIL: {name} differs from kiln.reference when the Gemm falls back")
    print(f"e2e_resnet: a Gemm whose scales are not powers of two falls back to {fc[0][0]} ({fc[0][1].strip()[:90]}...); int8 tensors still bit-exact")


def kept_relus(kiln, plugin, work):
    """quantize_static with QDQKeepRemovableActivations: each Relu stands alone between a DequantizeLinear and a
    QuantizeLinear; it must be lowered (an elementwise layer) and the outputs stay bit-exact."""
    rng = np.random.default_rng(5)
    fp, qp = os.path.join(work, "resnet-relu.onnx"), os.path.join(work, "resnet-relu.q.onnx")
    resnet_model.build_float(fp, rng)
    q = resnet_model.quantize(fp, qp, rng, keep_relus=True)
    add_outputs(q, EXTRA_OUTPUTS)
    onnx.save(q, qp)
    relus = [n.name for n in q.graph.node if n.op_type == "Relu"]
    if len(relus) != 7:
        sys.exit(f"e2e_resnet: expected 7 standalone Relus from QDQKeepRemovableActivations, got {len(relus)}")
    art = os.path.join(work, "resnet-relu.kiln")
    run([kiln, "compile", qp, "--output", art, "--plugin", plugin, "--target", "fpga-vta-pynq", "--fallback", "allow"])
    placed, inspect = placement(kiln, art)
    for (name, op), (backend, why) in placed.items():
        if op in ("Relu", "Conv", "Add", "Gemm") and backend != BACKEND:
            sys.exit(f"e2e_resnet: {op} '{name}' of the kept-Relu model is on {backend}:{why}")
    compare(kiln, plugin, art, qp, work, "relu", 2, False)
    print(f"e2e_resnet: with QDQKeepRemovableActivations the 7 standalone Relus are lowered too; outputs bit-exact on 2 inputs")


def qlinear_matmul(kiln, plugin, work, scale_b, expect_claimed):
    rng = np.random.default_rng(11)
    a = helper.make_tensor_value_info("a", TensorProto.INT8, [6, 40])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [6, 24])
    b = rng.integers(-128, 128, size=(40, 24), dtype=np.int8)
    inits = [numpy_helper.from_array(b, "b"), numpy_helper.from_array(np.array(0.0625, np.float32), "sa"),
             numpy_helper.from_array(np.array(-4, np.int8), "za"), numpy_helper.from_array(np.array(scale_b, np.float32), "sb"),
             numpy_helper.from_array(np.array(0, np.int8), "zb"), numpy_helper.from_array(np.array(0.5, np.float32), "sy"),
             numpy_helper.from_array(np.array(3, np.int8), "zy")]
    node = helper.make_node("QLinearMatMul", ["a", "sa", "za", "b", "sb", "zb", "sy", "zy"], ["y"], name="qmm")
    model = helper.make_model(helper.make_graph([node], "qmm", [a], [y], inits), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = os.path.join(work, f"qmm-{expect_claimed}.onnx")
    onnx.save(model, path)
    art = path + ".kiln"
    run([kiln, "compile", path, "--output", art, "--plugin", plugin, "--target", "fpga-vta-zcu104", "--fallback", "allow"])
    placed, inspect = placement(kiln, art)
    backend = [v for (name, op), v in placed.items() if op == "QLinearMatMul"]
    if not backend or (backend[0][0] == BACKEND) != expect_claimed:
        sys.exit(f"e2e_resnet: QLinearMatMul with b scale {scale_b}: placement {backend}, expected {'claimed' if expect_claimed else 'refused'}\n{inspect}")
    if not expect_claimed and "m·2^-s" not in inspect:
        sys.exit("e2e_resnet: the refused QLinearMatMul does not say why:\n" + inspect)
    worst = 0
    for case in range(3):
        x = rng.integers(-128, 128, size=(6, 40), dtype=np.int8)
        xin = os.path.join(work, f"a{case}.npy")
        np.save(xin, x)
        dv, dr = os.path.join(work, f"qmm-v{case}"), os.path.join(work, f"qmm-r{case}")
        run([kiln, "run", art, "--plugin", plugin, "--input", f"a={xin}", "--output-dir", dv])
        run([kiln, "run", path, "--backend", "kiln.reference", "--input", f"a={xin}", "--output-dir", dr])
        got, want = np.load(os.path.join(dv, "y.npy")), np.load(os.path.join(dr, "y.npy"))
        if not np.array_equal(got, want):
            sys.exit(f"e2e_resnet: FAIL: QLinearMatMul (b scale {scale_b}) differs from kiln.reference in {int((got != want).sum())} elements")
        worst = max(worst, int(np.abs(want.astype(int)).max()))
    print(f"e2e_resnet: QLinearMatMul with multiplier {0.0625 * scale_b / 0.5:.9g}: {'on ' + BACKEND if expect_claimed else 'refused, on ' + backend[0][0]}, bit-exact vs kiln.reference")


def main():
    kiln, plugin, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    os.makedirs(work, exist_ok=True)
    resnet(kiln, plugin, work)
    fallback_gemm(kiln, plugin, work)
    kept_relus(kiln, plugin, work)
    qlinear_matmul(kiln, plugin, work, 5 * 2.0 ** -7, True)     # multiplier 5·2^-10
    qlinear_matmul(kiln, plugin, work, 0.3 * 2.0 ** -4, False)  # multiplier 0.3·2^-8: not m·2^-s
    print(open(os.path.join(work, "report-pynq.md")).read())
    print("e2e_resnet: PASS")


if __name__ == "__main__":
    main()
