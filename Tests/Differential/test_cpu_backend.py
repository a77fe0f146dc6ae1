"""Whole-model differential tests of kiln.cpu: the scripts/make-models models through
`kiln run --backend kiln.cpu` (release build) against ONNX Runtime on the same seeded inputs, within
max |kiln - ort| <= 1e-4 * max |ort| (the tolerance of test_models.py).
"""
import os
import subprocess

import numpy as np
import pytest

from differential import KILN, MODELS, expect_matches, onnxruntime_outputs, run_kiln


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
    run_kiln(model, inputs, tmp_path, "--backend", "kiln.cpu")
    expect_matches(name, tmp_path / "out", expected)


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
