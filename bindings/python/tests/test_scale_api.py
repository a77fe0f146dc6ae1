"""kiln.spark and kiln.ray without a cluster: what `import kiln` leaves alone, the batching and column
conversion the workers use, the model cache, and the errors raised before any job starts. The cluster tests
are test_spark.py and test_ray.py."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import kiln
from kiln import _scale
from conftest import WEIGHTS, BIAS


def test_import_kiln_imports_no_engine():
    code = ("import sys, kiln; bad = [m for m in ('pyspark', 'ray', 'pandas', 'pyarrow') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import kiln imported {out}"


@pytest.mark.parametrize("rows,batch", [(1, 4), (10, 4), (100, 30), (65, 64), (4096, 4096), (4097, 4096)])
def test_slices_cover_rows_without_tiny_tails(rows, batch):
    parts = _scale.slices(rows, batch)
    assert parts[0][0] == 0 and parts[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [b - a for a, b in parts]
    assert max(sizes) <= batch and max(sizes) - min(sizes) <= 1
    assert len(parts) == -(-rows // batch)


@pytest.fixture(scope="module")
def artifact(model_path, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("scale-api") / "tiny.kiln")
    kiln.compile(model_path, path)
    return path


def _y(x):
    return np.maximum(x @ WEIGHTS + BIAS, 0).astype(np.float32)


def test_spark_scorer_scores_pandas_frames_like_a_worker(artifact):
    pd = pytest.importorskip("pandas")
    import kiln.spark
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    frame = pd.DataFrame({f"c{j}": x[:, j] for j in range(4)})
    scorer = kiln.spark.predict_udf(artifact, [f"c{j}" for j in range(4)], output_spec={"y": (np.float32, (3,))},
                                    batch_size=300, ship=False)
    assert scorer.udf_return_type() == "array<float>"
    np.testing.assert_allclose(scorer.score_pandas(frame)["y"], _y(x), rtol=1e-6, atol=1e-6)
    # One array column instead of four scalar ones: the same tensor.
    arrays = pd.DataFrame({"v": list(x)})
    single = kiln.spark.predict_udf(artifact, ["v"], output_spec={"y": (np.float32, (3,))}, ship=False)
    np.testing.assert_array_equal(single.score_pandas(arrays)["y"], scorer.score_pandas(frame)["y"])
    # Three columns for four features: refused, naming the input.
    short = kiln.spark.predict_udf(artifact, ["c0", "c1", "c2"], output_spec={"y": (np.float32, (3,))}, ship=False)
    with pytest.raises(kiln.InvalidArgumentError, match="input schema does not match the model: input 'x'"):
        short.score_pandas(frame)


def test_outputs_without_a_row_dimension_need_an_output_spec(artifact):
    pytest.importorskip("pandas")
    import kiln.spark
    # The tiny model's output `s` is Shape(x), i64[2]: not one value per row.
    scorer = kiln.spark.predict_udf(artifact, ["c0", "c1", "c2", "c3"], ship=False)
    import pandas as pd
    frame = pd.DataFrame({f"c{j}": np.ones(5, np.float32) for j in range(4)})
    with pytest.raises(kiln.InvalidArgumentError, match="output 's' has shape"):
        scorer.score_pandas(frame)


def test_predict_udf_refuses_bad_arguments_before_any_job(artifact, tmp_path):
    import kiln.spark
    with pytest.raises(kiln.InvalidArgumentError, match="no artifact"):
        kiln.spark.predict_udf(str(tmp_path / "missing.kiln"), ["a"])
    with pytest.raises(kiln.InvalidArgumentError, match="batch_size"):
        kiln.spark.predict_udf(artifact, ["a"], batch_size=0)
    with pytest.raises(kiln.InvalidArgumentError, match="threads"):
        kiln.spark.predict_udf(artifact, ["a"], threads=0)
    with pytest.raises(kiln.InvalidArgumentError, match="input_cols names inputs"):
        kiln.spark.predict_udf(artifact, {"nope": ["a"]}, output_spec={"y": (np.float32, (3,))}).score_pandas(
            __import__("pandas").DataFrame({"a": [1.0]}))
    bad = tmp_path / "bad.kiln"
    bad.write_bytes(b"KILN" + b"\0" * 100)
    with pytest.raises(kiln.KilnError, match="kiln.spark could not load"):
        kiln.spark.predict_udf(str(bad), ["a"])


def test_cache_loads_once_and_again_when_the_file_changes(artifact, tmp_path):
    copy = tmp_path / "cached.kiln"
    copy.write_bytes(open(artifact, "rb").read())
    first = _scale.cached_model(str(copy), 1)
    assert _scale.cached_model(str(copy), 1) is first
    assert _scale.cached_model(str(copy), 2) is not first  # another thread count is another model
    time.sleep(0.01)
    copy.write_bytes(open(artifact, "rb").read())
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert _scale.cached_model(str(copy), 1) is not first


def test_ray_predictor_called_directly_with_artifact_bytes(artifact):
    import kiln.ray
    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    predictor = kiln.ray.KilnPredictor(open(artifact, "rb").read(), ["features"], keep=["id"],
                                       output_spec={"y": (np.float32, (3,))}, batch_size=16)
    assert os.path.basename(predictor.path).startswith("kiln-ray-")
    out = predictor({"id": np.arange(50), "features": x})
    assert sorted(out) == ["id", "y"]
    np.testing.assert_allclose(out["y"], _y(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(kiln.InvalidArgumentError, match="the batch has no column"):
        predictor({"id": np.arange(3)})
