"""Whole-model differential tests of kiln.cpu on the path a user gets with no flags: the
scripts/make-models models through `kiln compile MODEL -o M.kiln` then `kiln run M.kiln` (release build),
which must put every node on kiln.cpu, against ONNX Runtime on the same seeded inputs, within
max |kiln - ort| <= 1e-4 * max |ort| (the tolerance of test_models.py).
"""
import os
import subprocess

import numpy as np
import pytest

from differential import KILN, MODELS, compile_with_no_flags, expect_matches, onnxruntime_outputs, run_kiln


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


@pytest.mark.parametrize("name,batch", [("mlp", 1), ("resnet18", 1), ("mobilenetv2", 1), ("bert", 1), ("bert", 2)])
def test_cpu_backend_matches_onnxruntime(name, batch, tmp_path):
    model = os.path.join(MODELS, f"{name}.onnx")
    inputs = inputs_for(name, batch)
    expected = onnxruntime_outputs(model, inputs)
    artifact, fallback = compile_with_no_flags(model, tmp_path)
    assert fallback.startswith("fallback: none (all ") and fallback.endswith(" nodes on kiln.cpu)"), fallback
    run_kiln(artifact, inputs, tmp_path)
    expect_matches(name, tmp_path / "out", expected)


def test_cpu_backend_rejects_what_it_cannot_run(tmp_path):
    """A model with an op kiln.cpu has no kernel for is refused with the op named, not run partly."""
    import onnx
    from onnx import TensorProto, helper

    # LRN: an op kiln.cpu has no kernel for yet, so it is refused by name or falls back.
    node = helper.make_node("LRN", ["a"], ["y"], size=3)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])])
    path = tmp_path / "lrn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    done = subprocess.run([KILN, "run", str(path), "--backend", "kiln.cpu", "--random"], capture_output=True, text=True)
    assert done.returncode == 1
    assert "LRN" in done.stderr and "kiln.cpu" in done.stderr
    # With no flags, the node kiln.cpu cannot run falls back to kiln.reference, and one line says so.
    fallback = subprocess.run([KILN, "run", str(path), "--random"], capture_output=True, text=True)
    assert fallback.returncode == 0, fallback.stderr
    assert "fallback: 1 of 1 nodes on kiln.reference: LRN (rejected by kiln.cpu:" in fallback.stderr, fallback.stderr
