"""Symbolic dims as ONNX Runtime treats them (issue 10, item 5): `?`, empty and unnamed dims are anonymous,
and a named dim bound to different sizes by different inputs runs, with a warning, as ONNX Runtime runs it.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

from differential import expect_matches, onnxruntime_outputs, run_kiln


def _save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def test_dims_all_named_question_mark_match_onnxruntime(tmp_path):
    # An exporter that names every unknown dim "?": a Conv over [1, 3, ?, ?] and a Reshape to [1, -1].
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "?"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(5).standard_normal(108).astype(np.float32))
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "question-marks", [x], [y], initializer=[w, shape])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "q.onnx")
    inputs = {"x": np.random.default_rng(6).standard_normal((1, 3, 48, 192)).astype(np.float32)}
    expected = onnxruntime_outputs(model, inputs)
    done = run_kiln(model, inputs, tmp_path)
    assert "warning" not in done.stderr
    expect_matches("question-marks", tmp_path / "out", expected)


def test_a_named_dim_of_different_sizes_runs_with_a_warning(tmp_path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 3])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["z"])], "named", [a, b], [z])
    model = _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "n.onnx")
    rng = np.random.default_rng(7)
    inputs = {"a": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal((1, 3)).astype(np.float32)}
    expected = onnxruntime_outputs(model, inputs)  # ONNX Runtime runs it (broadcasting)
    done = run_kiln(model, inputs, tmp_path)
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ") and "'n'" in line]
    assert len(warnings) == 1, done.stderr
    expect_matches("named", tmp_path / "out", expected)
