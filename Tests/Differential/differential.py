"""Shared by the differential tests: where `kiln` and the scripts/make-models models are, running a model
through `kiln run` and through ONNX Runtime, and the comparison (max |kiln - ort| <= 1e-4 * max |ort|).
"""
import os
import subprocess
import sys

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KILN = os.environ.get("KILN", os.path.join(ROOT, ".build", "release", "kiln"))
MODELS = os.path.join(ROOT, "out", "models")


def make_models():
    """Writes the models (same seed, same files every time)."""
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-models"), MODELS], check=True, stdout=subprocess.DEVNULL)


def run_kiln(model, inputs, tmp_path, *extra):
    """`kiln run model` on `inputs` (saved as .npy in tmp_path), outputs to tmp_path/out; must succeed."""
    args = [KILN, "run", model, "--output-dir", str(tmp_path / "out"), *extra]
    for name, value in inputs.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


def compile_with_no_flags(model, tmp_path):
    """`kiln compile model -o tmp_path/model.kiln` with no flags, as a user would; returns the artifact's path and
    the compile's fallback line ("fallback: none (…)" or "fallback: N of M nodes on …")."""
    artifact = str(tmp_path / "model.kiln")
    done = subprocess.run([KILN, "compile", model, "-o", artifact], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    fallback = [line for line in done.stderr.splitlines() if line.startswith("fallback: ")]
    assert len(fallback) == 1, done.stderr
    return artifact, fallback[0]


def onnxruntime_outputs(model, inputs):
    """ONNX Runtime's outputs for `inputs`, by name."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def expect_matches(label, out_dir, expected):
    """Every output in `expected` was written to out_dir with its shape and dtype, within the tolerance."""
    for out_name, want in expected.items():
        got = np.load(out_dir / f"{out_name}.npy")
        assert got.shape == want.shape and got.dtype == want.dtype
        err = float(np.abs(got.astype(np.float64) - want).max())
        bound = 1e-4 * float(np.abs(want).max())
        assert err <= bound, f"{label}/{out_name}: max abs error {err:.3g} > {bound:.3g}"
