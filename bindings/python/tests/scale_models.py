"""The two models the scale-out tests (test_spark.py, test_ray.py) and scripts/bench-scale score: an XGBoost
regressor on tabular float32 features and a small CNN image classifier built with the onnx package, each
compiled to a .kiln artifact with kiln.compile; plus the data they are scored on."""
import os

import numpy as np

FEATURES = 8
IMAGE_SHAPE = (3, 32, 32)
CLASSES = 10


def tabular_data(rows: int, seed: int = 1) -> np.ndarray:
    """float32 [rows, FEATURES] features with ~5% NaNs (missing values)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.05] = np.nan
    return x


def image_data(count: int, seed: int = 2) -> np.ndarray:
    """float32 [count, 3, 32, 32] images in [0, 1)."""
    return np.random.default_rng(seed).random(size=(count,) + IMAGE_SHAPE, dtype=np.float32)


def make_tree_model(folder: str, trees: int = 60, depth: int = 6):
    """Trains an XGBoost regressor (reg:squarederror, `trees` trees of depth `depth`) on 5,000 rows and writes
    folder/trees.json (the framework's model), folder/trees.kiln (kiln.compile of it) and folder/trees.onnx
    (onnxmltools' conversion, for ONNX Runtime). Returns (kiln path, onnx path)."""
    import xgboost as xgb
    import kiln
    x = tabular_data(5000, seed=11)
    z = np.nan_to_num(x)
    y = z[:, 0] * 2 - z[:, 1] + z[:, 2] * z[:, 3] + np.sin(z[:, 4])
    booster = xgb.train({"max_depth": depth, "eta": 0.2, "seed": 1, "tree_method": "hist",
                         "objective": "reg:squarederror"}, xgb.DMatrix(x, label=y), trees)
    json_path = os.path.join(folder, "trees.json")
    booster.save_model(json_path)
    kiln_path = os.path.join(folder, "trees.kiln")
    kiln.compile(json_path, kiln_path)
    onnx_path = os.path.join(folder, "trees.onnx")
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
        onnx_model = onnxmltools.convert_xgboost(booster, initial_types=[("x", FloatTensorType([None, FEATURES]))],
                                                 target_opset=15)
        with open(onnx_path, "wb") as f:
            f.write(onnx_model.SerializeToString())
    except Exception as error:  # only the benchmark needs the ONNX copy
        onnx_path = f"unavailable: {error}"
    return kiln_path, onnx_path


def make_cnn_model(folder: str):
    """A small CNN over [N, 3, 32, 32] images, written with the onnx package: Conv 3→16 3x3 + Relu, MaxPool 2,
    Conv 16→32 3x3 + Relu, MaxPool 2, Conv 32→32 3x3 + Relu, GlobalAveragePool, Flatten, Gemm 32→10,
    Softmax; fixed random weights. Writes folder/cnn.onnx and folder/cnn.kiln; returns (kiln path, onnx path)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    import kiln
    rng = np.random.default_rng(5)

    def weight(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [weight("w1", 16, 3, 3, 3), numpy_helper.from_array(np.full(16, 0.01, np.float32), "b1"),
             weight("w2", 32, 16, 3, 3), numpy_helper.from_array(np.full(32, 0.01, np.float32), "b2"),
             weight("w3", 32, 32, 3, 3), numpy_helper.from_array(np.full(32, 0.01, np.float32), "b3"),
             weight("wf", CLASSES, 32), numpy_helper.from_array(np.zeros(CLASSES, np.float32), "bf")]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "w3", "b3"], ["c3"], **conv),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(nodes, "kiln-scale-cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", CLASSES])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx_path = os.path.join(folder, "cnn.onnx")
    onnx.save(model, onnx_path)
    kiln_path = os.path.join(folder, "cnn.kiln")
    kiln.compile(onnx_path, kiln_path)
    return kiln_path, onnx_path


def reference(kiln_path: str, name: str, x: np.ndarray, batch: int = 4096, threads: int = 1) -> np.ndarray:
    """kiln.load(kiln_path).run on `x` (fed as input `name`) in slices of `batch` rows: what every scale-out
    path must reproduce exactly."""
    import kiln
    model = kiln.load(kiln_path, threads=threads)
    out = [model.run({name: x[i:i + batch]})[model.outputs[0].name] for i in range(0, len(x), batch)]
    return np.concatenate(out)


def sizes():
    """(rows, images) to score: the CI's small sizes, or the full ones (1,000,000 rows, 2,000 images) when
    KILN_SCALE_FULL=1."""
    if os.environ.get("KILN_SCALE_FULL") == "1":
        return 1_000_000, 2_000
    return 20_000, 200


def worker_env() -> dict:
    """The environment an engine's worker processes need to import this kiln (its package folder on
    PYTHONPATH) and find the same libkiln (KILN_LIBRARY, when set)."""
    import kiln
    env = {"PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(kiln.__file__)))}
    if os.environ.get("KILN_LIBRARY"):
        env["KILN_LIBRARY"] = os.environ["KILN_LIBRARY"]
    return env


def corrupt_copy(path: str, out: str) -> str:
    """A copy of the artifact at `path` with bytes in its middle flipped: a corrupt artifact."""
    data = bytearray(open(path, "rb").read())
    middle = len(data) // 2
    for k in range(middle, min(len(data), middle + 64)):
        data[k] ^= 0x5A
    with open(out, "wb") as f:
        f.write(bytes(data))
    return out
