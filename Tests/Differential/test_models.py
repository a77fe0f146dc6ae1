"""Whole-model differential tests: Kiln against ONNX Runtime on the models scripts/make-models builds.

Each model runs through `kiln run` (release build) and through onnxruntime on the same seeded inputs;
the outputs must agree to max |kiln - ort| <= 1e-4 * max |ort|.
"""
import os
import re
import subprocess

import numpy as np
import pytest

from differential import KILN, MODELS, expect_matches, onnxruntime_outputs, run_kiln


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


@pytest.mark.parametrize("name", ["mlp", "resnet18", "mobilenetv2", "bert"])
def test_matches_onnxruntime(name, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    inputs = inputs_for(name)
    expected = onnxruntime_outputs(model, inputs)
    run_kiln(model, inputs, tmp_path)
    expect_matches(name, tmp_path / "out", expected)


def test_wrong_input_shape_is_a_clear_error(tmp_path):
    model = os.path.join(MODELS, "mlp.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 783), np.float32))
    done = subprocess.run([KILN, "run", model, "--input", f"input={tmp_path / 'x.npy'}"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "input" in done.stderr and "784" in done.stderr


@pytest.mark.parametrize("name", ["mlp", "resnet18", "mobilenetv2", "bert"])
def test_opencl_matches_onnxruntime(name, tmp_path):
    """`kiln compile --target opencl` (kiln.gpu; on PoCL's CPU device here) with each input's symbolic dims fixed
    to the test input's shape (`--input-shape`), then `kiln run`: ONNX Runtime's answers, with most of the graph on
    kiln.gpu (what falls back: BERT's int64 embedding lookups and mask arithmetic, which kiln.gpu does not run)."""
    model = os.path.join(MODELS, f"{name}.onnx")
    inputs = inputs_for(name)
    expected = onnxruntime_outputs(model, inputs)
    artifact = str(tmp_path / "gpu.kiln")
    shapes = [f"--input-shape={k}={','.join(map(str, v.shape))}" for k, v in inputs.items()]
    done = subprocess.run([KILN, "compile", model, "-o", artifact, "--target", "opencl", *shapes], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = done.stdout + done.stderr
    whole = re.search(r"fallback: none \(all (\d+) nodes on kiln\.gpu\)", report)
    placed = {b: int(n) for b, n in re.findall(r"(kiln\.\w+): (\d+) nodes", report)}
    on_gpu, total = (int(whole.group(1)),) * 2 if whole else (placed.get("kiln.gpu", 0), sum(placed.values()))
    assert total > 0 and on_gpu >= 0.8 * total, f"{name}: {on_gpu} of {total} nodes on kiln.gpu:\n{report[-2000:]}"
    run_kiln(artifact, inputs, tmp_path)
    expect_matches(name, tmp_path / "out", expected)
