"""Whole models through the artifact: each model is compiled by `kiln compile` (release build, opt level 2)
into a .kiln file, the artifact runs through `kiln run`, and its outputs must match ONNX Runtime with the
same tolerance as the direct run (max |kiln - ort| <= 1e-4 * max |ort|).
"""
import os
import subprocess

import pytest

from differential import KILN, MODELS, expect_matches, onnxruntime_outputs, run_kiln
from test_models import inputs_for


@pytest.mark.parametrize("name", ["mlp", "resnet18", "mobilenetv2", "bert"])
def test_artifact_matches_onnxruntime(name, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    artifact = tmp_path / f"{name}.kiln"
    done = subprocess.run([KILN, "compile", model, "-o", str(artifact)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "nodes:" in done.stdout and artifact.exists()
    inputs = inputs_for(name)
    expected = onnxruntime_outputs(model, inputs)
    run_kiln(str(artifact), inputs, tmp_path)
    expect_matches(f"{name}.kiln", tmp_path / "out", expected)
