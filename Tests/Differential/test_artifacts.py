"""Whole models through the artifact: each model is compiled by `kiln compile` (release build, opt level 2)
into a .kiln file, the artifact runs through `kiln run`, and its outputs must match ONNX Runtime with the
same tolerance as the direct run (max |kiln - ort| <= 1e-4 * max |ort|).
"""
import os
import subprocess

import numpy as np
import onnxruntime as ort
import pytest

from test_models import KILN, MODELS, inputs_for, models, run_kiln  # noqa: F401 (models: the session fixture)


@pytest.mark.parametrize("name", ["mlp", "resnet18", "mobilenetv2", "bert"])
def test_artifact_matches_onnxruntime(name, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    artifact = tmp_path / f"{name}.kiln"
    done = subprocess.run([KILN, "compile", model, "-o", str(artifact)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "nodes:" in done.stdout and artifact.exists()
    inputs = inputs_for(name)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    run_kiln(str(artifact), inputs, tmp_path)
    for out_name, want in expected.items():
        got = np.load(tmp_path / "out" / f"{out_name}.npy")
        assert got.shape == want.shape and got.dtype == want.dtype
        err = float(np.abs(got.astype(np.float64) - want).max())
        bound = 1e-4 * float(np.abs(want).max())
        assert err <= bound, f"{name}.kiln/{out_name}: max abs error {err:.3g} > {bound:.3g}"
