"""Whole-model differential tests: Kiln against ONNX Runtime on the models scripts/make-models builds.

Each model runs through `kiln run` (release build) and through onnxruntime on the same seeded inputs;
the outputs must agree to max |kiln - ort| <= 1e-4 * max |ort|.
"""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILN = os.environ.get("KILN", os.path.join(ROOT, ".build", "release", "kiln"))
MODELS = os.path.join(ROOT, "out", "models")


@pytest.fixture(scope="session", autouse=True)
def models():
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-models"), MODELS], check=True, stdout=subprocess.DEVNULL)


def inputs_for(name):
    rng = np.random.default_rng(1234)
    if name == "bert":
        ids = rng.integers(0, 1000, (1, 128)).astype(np.int64)
        mask = np.ones((1, 128), np.int64)
        mask[0, 96:] = 0
        return {"input_ids": ids, "attention_mask": mask}
    if name == "mlp":
        return {"input": rng.standard_normal((8, 784)).astype(np.float32)}
    return {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}


def run_kiln(model, inputs, tmp_path, *extra):
    args = [KILN, "run", model, "--output-dir", str(tmp_path / "out"), *extra]
    for name, value in inputs.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("name", ["mlp", "resnet18", "mobilenetv2", "bert"])
def test_matches_onnxruntime(name, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    inputs = inputs_for(name)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    run_kiln(model, inputs, tmp_path)
    for out_name, want in expected.items():
        got = np.load(tmp_path / "out" / f"{out_name}.npy")
        assert got.shape == want.shape and got.dtype == want.dtype
        err = float(np.abs(got.astype(np.float64) - want).max())
        bound = 1e-4 * float(np.abs(want).max())
        assert err <= bound, f"{name}/{out_name}: max abs error {err:.3g} > {bound:.3g}"


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    model = os.path.join(MODELS, "mlp.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 783), np.float32))
    done = subprocess.run([KILN, "run", model, "--input", f"input={tmp_path / 'x.npy'}"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "input" in done.stderr and "784" in done.stderr
