"""Fixtures for the kiln Python tests: the same small model the C and C++ tests use, built with onnx."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

WEIGHTS = ((np.arange(12, dtype=np.float32) - 5) / 10).reshape(4, 3)
BIAS = np.array([0.1, -0.2, 0.3], dtype=np.float32)


def expected(x: np.ndarray) -> dict:
    """What the model computes, in NumPy (float32 throughout)."""
    return {
        "y": np.maximum(x.astype(np.float32) @ WEIGHTS + BIAS, 0).astype(np.float32),
        "s": np.array(x.shape, dtype=np.int64),
        "xi": x,
    }


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> str:
    """x: f32[batch, 4] → y = Relu(x · W + b): f32[batch, 3], s = Shape(x): i64[2], xi = Identity(x)."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul"),
            helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
            helper.make_node("Relu", ["hb"], ["y"], name="relu"),
            helper.make_node("Shape", ["x"], ["s"], name="shape"),
            helper.make_node("Identity", ["x"], ["xi"], name="identity"),
        ],
        "kiln-python-test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [2]),
            helper.make_tensor_value_info("xi", TensorProto.FLOAT, ["batch", 4]),
        ],
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(model, str(path))
    return str(path)


CHAIN_SIZE = 256
CHAIN_LENGTH = 24


def chain_weights() -> list:
    """The weights of the MatMul chain: small enough that values stay finite after CHAIN_LENGTH products."""
    rng = np.random.default_rng(7)
    return [(rng.standard_normal((CHAIN_SIZE, CHAIN_SIZE)) / np.sqrt(CHAIN_SIZE)).astype(np.float32)
            for _ in range(CHAIN_LENGTH)]


@pytest.fixture(scope="session")
def chain_model_path(tmp_path_factory) -> str:
    """x: f32[256, 256] → CHAIN_LENGTH MatMuls by 256×256 weights with a Tanh after each (~0.8 GFLOP a run): a
    model whose run takes long enough to time (deadlines, the GIL) and whose memory plan needs megabytes."""
    weights = chain_weights()
    nodes, previous = [], "x"
    for k in range(CHAIN_LENGTH):
        nodes.append(helper.make_node("MatMul", [previous, f"W{k}"], [f"m{k}"], name=f"matmul{k}"))
        out = "y" if k == CHAIN_LENGTH - 1 else f"t{k}"
        nodes.append(helper.make_node("Tanh", [f"m{k}"], [out], name=f"tanh{k}"))
        previous = out
    graph = helper.make_graph(
        nodes, "kiln-python-chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [CHAIN_SIZE, CHAIN_SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [CHAIN_SIZE, CHAIN_SIZE])],
        [numpy_helper.from_array(w, f"W{k}") for k, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("models") / "chain.onnx"
    onnx.save(model, str(path))
    return str(path)


def chain_expected(x: np.ndarray) -> np.ndarray:
    """What the chain computes, in NumPy."""
    for w in chain_weights():
        x = np.tanh(x @ w)
    return x


@pytest.fixture(scope="session")
def scale_models(tmp_path_factory) -> dict:
    """The scale-out tests' models (tests/scale_models.py), built and compiled once: {"trees": .kiln path,
    "cnn": .kiln path, "trees_onnx": ..., "cnn_onnx": ...}."""
    import scale_models as sm
    folder = str(tmp_path_factory.mktemp("scale-models"))
    trees, trees_onnx = sm.make_tree_model(folder)
    cnn, cnn_onnx = sm.make_cnn_model(folder)
    return {"trees": trees, "cnn": cnn, "trees_onnx": trees_onnx, "cnn_onnx": cnn_onnx, "folder": folder}


@pytest.fixture(scope="module")
def scale_data() -> dict:
    """The scale-out tests' inputs at scale_models.sizes(): {"x": tabular rows, "images": NCHW images}."""
    import scale_models as sm
    rows, images = sm.sizes()
    return {"x": sm.tabular_data(rows), "images": sm.image_data(images)}


@pytest.fixture(scope="module")
def scale_expected(scale_models, scale_data) -> dict:
    """kiln.load(...).run's answers on `scale_data`, which every scale-out engine must reproduce exactly."""
    import scale_models as sm
    return {"trees": sm.reference(scale_models["trees"], "x", scale_data["x"])[:, 0],
            "cnn": sm.reference(scale_models["cnn"], "image", scale_data["images"], batch=64)}
