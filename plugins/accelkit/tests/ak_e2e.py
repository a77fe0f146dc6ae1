"""ak_e2e.py — what the accelerator plugins' end-to-end scripts share: their arguments, running the kiln CLI,
reading the placement from `kiln inspect --partitions`, and saving a model built with the onnx package.

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


def run(cmd, env=None):
    """Runs a command, exiting (named after the calling script) with its output when it fails; returns stdout + stderr."""
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def placements(inspect):
    """{op type: [backend of each node of that type, in node order]} from `kiln inspect --partitions` output."""
    placed = {}
    for m in re.finditer(r"node \d+ (?:'[^']*' )?\((\w+)\) → ([\w.]+):", inspect):
        placed.setdefault(m.group(1), []).append(m.group(2))
    return placed


def save_model(path, nodes, inputs, outputs, initializers, opset=17):
    """Checks and saves a model of the default domain at `opset` (IR version 8)."""
    graph = helper.make_graph(nodes, os.path.splitext(os.path.basename(path))[0], inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
