"""Whole-model differential tests of kiln.cpu on the path a user gets with no flags: the
scripts/make-models models through `kiln compile MODEL -o M.kiln` then `kiln run M.kiln` (release build),
which must put every node on kiln.cpu, against ONNX Runtime on the same seeded inputs, within
max |kiln - ort| <= 1e-4 * max |ort| (the tolerance of test_models.py).
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


@pytest.fixture(scope="module", autouse=True)
def models():
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-models"), MODELS], check=True, stdout=subprocess.DEVNULL)


def inputs_for(name, batch=1):
    rng = np.random.default_rng(4321)
    if name == "bert":
        ids = rng.integers(0, 1000, (batch, 128)).astype(np.int64)
        mask = np.ones((batch, 128), np.int64)
        mask[:, 100:] = 0
        return {"input_ids": ids, "attention_mask": mask}
    if name == "mlp":
        return {"input": rng.standard_normal((5, 784)).astype(np.float32)}
    return {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}


def run_kiln(model, inputs, tmp_path):
    artifact = str(tmp_path / "model.kiln")
    compiled = subprocess.run([KILN, "compile", model, "-o", artifact], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    assert "fallback: none (all " in compiled.stderr and " nodes on kiln.cpu)" in compiled.stderr, compiled.stderr
    args = [KILN, "run", artifact, "--output-dir", str(tmp_path / "out")]
    for name, value in inputs.items():
        path = tmp_path / f"{name}.npy"
        np.save(path, value)
        args += ["--input", f"{name}={path}"]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("name,batch", [("mlp", 1), ("resnet18", 1), ("mobilenetv2", 1), ("bert", 1), ("bert", 2)])
def test_cpu_backend_matches_onnxruntime(name, batch, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    inputs = inputs_for(name, batch)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    run_kiln(model, inputs, tmp_path)
    for out_name, want in expected.items():
        got = np.load(tmp_path / "out" / f"{out_name}.npy")
        assert got.shape == want.shape and got.dtype == want.dtype
        err = float(np.abs(got.astype(np.float64) - want).max())
        bound = 1e-4 * float(np.abs(want).max())
        assert err <= bound, f"{name}/{out_name}: max abs error {err:.3g} > {bound:.3g}"


def test_cpu_backend_rejects_what_it_cannot_run(tmp_path):
    """A model with an op kiln.cpu has no kernel for is refused with the op named, not run partly."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Einsum", ["a", "a"], ["y"], equation="ij,ij->ij")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    path = tmp_path / "einsum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    done = subprocess.run([KILN, "run", str(path), "--backend", "kiln.cpu", "--random"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "Einsum" in done.stderr and "kiln.cpu" in done.stderr
    # With no flags, the node kiln.cpu cannot run falls back to kiln.reference, and one line says so.
    fallback = subprocess.run([KILN, "run", str(path), "--random"], capture_output=True, text=True)
    assert fallback.returncode == 0, fallback.stderr
    assert "fallback: 1 of 1 nodes on kiln.reference: Einsum (rejected by kiln.cpu:" in fallback.stderr, fallback.stderr
