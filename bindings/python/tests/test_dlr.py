"""kiln.dlr.DLRModel: the behaviour DLR documents for its DLRModel (input as a dict or a single array, outputs as a
list in output order, names and dtypes as lists of strings, the version, get_input, ValueError for a wrong input
name or model path), over .kiln artifacts."""
import shutil

import numpy as np
import pytest

import kiln
from kiln.dlr import DLRError, DLRModel
from conftest import expected

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


@pytest.fixture(scope="module")
def two_input_dir(tmp_path_factory):
    """A folder holding one artifact: a: f32[2,3], b: i64[3] -> sum = a + float(b): f32[2,3], neg = -b: i64[3]."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT, name="cast"),
            helper.make_node("Add", ["a", "bf"], ["sum"], name="add"),
            helper.make_node("Neg", ["b"], ["neg"], name="neg"),
        ],
        "dlr-two-inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("b", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("neg", TensorProto.INT64, [3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = tmp_path_factory.mktemp("dlr")
    source = folder.parent / "two_inputs.onnx"
    onnx.save(model, str(source))
    kiln.compile(str(source), str(folder / "compiled.kiln"))
    return folder


A = np.arange(6, dtype=np.float32).reshape(2, 3)
B = np.array([10, 20, 30], dtype=np.int64)


def test_loads_a_folder_or_a_file_and_reports_names_dtypes_and_version(two_input_dir):
    for path in (two_input_dir, str(two_input_dir), str(two_input_dir / "compiled.kiln")):
        model = DLRModel(path, "cpu", 0)
        assert model.get_input_names() == ["a", "b"]
        assert model.get_output_names() == ["sum", "neg"]
        assert model.get_input_dtypes() == ["float32", "int64"]
        assert model.get_output_dtypes() == ["float32", "int64"]
        assert model.get_input_name(1) == "b" and model.get_output_name(0) == "sum"
        assert model.get_input_dtype(0) == "float32" and model.get_output_dtype(1) == "int64"
        assert model.get_version() == kiln.version() and isinstance(model.get_version(), str)
        assert model.model_path.endswith("compiled.kiln")
    with pytest.raises(DLRError):
        DLRModel(two_input_dir).get_output_name(2)


def test_run_with_a_dict_returns_outputs_in_output_order(two_input_dir):
    with DLRModel(two_input_dir) as model:
        outputs = model.run({"a": A, "b": B})
        assert isinstance(outputs, list) and len(outputs) == 2
        np.testing.assert_array_equal(outputs[0], A + B.astype(np.float32))
        np.testing.assert_array_equal(outputs[1], -B)
        assert outputs[0].dtype == np.float32 and outputs[1].dtype == np.int64
        # Values are converted to each input's dtype, as DLR converts them: float64 lists work.
        outputs = model.run({"b": [1.0, 2.0, 3.0], "a": A.astype(np.float64).tolist()})
        np.testing.assert_array_equal(outputs[0], A + np.array([1, 2, 3], np.float32))
        np.testing.assert_array_equal(outputs[1], [-1, -2, -3])


def test_run_with_a_single_array_feeds_the_only_input(model_path, tmp_path):
    artifact = tmp_path / "tiny.kiln"
    kiln.compile(model_path, artifact)
    model = DLRModel(str(artifact))
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    outputs = model.run(x)
    want = expected(x)
    assert [o.shape for o in outputs] == [(2, 3), (2,), (2, 4)]
    np.testing.assert_allclose(outputs[0], want["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(outputs[1], want["s"])
    np.testing.assert_array_equal(outputs[2], x)
    # A float64 array is converted to the input's float32.
    np.testing.assert_allclose(model.run(x.astype(np.float64))[0], want["y"], rtol=1e-6, atol=1e-6)


def test_wrong_input_name_and_wrong_values_are_value_errors(two_input_dir):
    model = DLRModel(two_input_dir)
    with pytest.raises(ValueError, match="c is not a valid input name"):
        model.run({"a": A, "b": B, "c": A})
    with pytest.raises(DLRError, match="input b is missing"):
        model.run(A)  # a single array feeds only the first input
    with pytest.raises(DLRError, match="must be a dict"):
        model.run([A, B])  # type: ignore[arg-type]
    with pytest.raises(kiln.InvalidArgumentError, match="input 'a'"):
        model.run({"a": np.zeros((3, 3), np.float32), "b": B})
    err = pytest.raises(ValueError, model.run, {"x": A}).value
    assert isinstance(err, kiln.KilnError) and err.code == kiln.INVALID_ARGUMENT


def test_get_input_returns_the_last_value_given(two_input_dir):
    model = DLRModel(two_input_dir)
    with pytest.raises(DLRError, match="never set"):
        model.get_input("a")
    assert model.get_input("a", shape=[2, 3]).shape == (2, 3)
    model.run({"a": A.tolist(), "b": B})
    got = model.get_input("a")
    np.testing.assert_array_equal(got, A)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(model.get_input("b", shape=(3, 1)), B.reshape(3, 1))
    with pytest.raises(DLRError, match="not a valid input name"):
        model.get_input("nope")


def test_model_path_and_device_errors(two_input_dir, tmp_path):
    with pytest.raises(ValueError, match="doesn't exist"):
        DLRModel(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no .kiln"):
        DLRModel(empty)
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(two_input_dir / "compiled.kiln", two / "one.kiln")
    shutil.copy(two_input_dir / "compiled.kiln", two / "other.kiln")
    with pytest.raises(ValueError, match="multiple .kiln files"):
        DLRModel(two)
    with pytest.raises(DLRError, match="gpu"):
        DLRModel(two_input_dir, "gpu", 0)
    with pytest.raises(DLRError, match="dev_type"):
        DLRModel(two_input_dir, "tpu")
    with pytest.raises(DLRError, match="dev_id"):
        DLRModel(two_input_dir, "cpu", 1)
    # DLR's defaults: None means cpu / 0.
    assert DLRModel(two_input_dir, None, None).get_input_names() == ["a", "b"]
