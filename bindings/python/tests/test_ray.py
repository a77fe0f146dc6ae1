"""kiln.ray on a real local Ray cluster (ray.init(num_cpus=2)): the XGBoost model over tabular rows and the
CNN over images through Dataset.map_batches with KilnPredictor actors; the scores equal kiln.load(...).run
exactly; the artifact travels as a path or as an ObjectRef of its bytes; a corrupt artifact and a wrong input
schema fail with Kiln's typed error on the driver; an actor killed mid-job is restarted by Ray and the
result is unchanged. Sizes: scale_models.sizes() (KILN_SCALE_FULL=1 for the full ones)."""
import os
import time

import numpy as np
import pytest

import kiln
import kiln.ray
import scale_models as sm
import ray  # scripts/setup installs ray[data]: a missing ray is a failure, not a skip

ROWS, IMAGES = sm.sizes()
FEATURES = [f"f{j}" for j in range(sm.FEATURES)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": sm.worker_env()})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


def _tabular(x, blocks=4):
    """A Dataset of id + f0..f7 scalar columns in `blocks` equal blocks."""
    import pandas as pd
    frames = []
    for part in np.array_split(np.arange(len(x)), blocks):
        frame = pd.DataFrame({f"f{j}": x[part, j] for j in range(x.shape[1])})
        frame.insert(0, "id", part.astype(np.int64))
        frames.append(frame)
    return ray.data.from_pandas(frames)


def _images(images, blocks=4):
    """A Dataset of id + image ([3, 32, 32] tensor) columns in `blocks` equal blocks."""
    import pandas as pd
    from ray.data.extensions import TensorArray
    parts = np.array_split(np.arange(len(images)), blocks)
    return ray.data.from_pandas([pd.DataFrame({"id": p.astype(np.int64), "image": TensorArray(images[p])})
                                 for p in parts])


def _collect(ds, column):
    batches = list(ds.iter_batches(batch_format="numpy", batch_size=None))
    ids = np.concatenate([b["id"] for b in batches])
    values = np.concatenate([b[column] for b in batches])
    order = np.argsort(ids, kind="stable")
    assert np.array_equal(ids[order], np.arange(len(ids))), "rows lost or duplicated"
    return values[order]


def test_ray_scores_equal_kiln(cluster, scale_models, scale_data, scale_expected):
    timings = {}
    start = time.perf_counter()
    scored = kiln.ray.predict(_tabular(scale_data["x"]), scale_models["trees"], FEATURES, keep=["id"], concurrency=2,
                              batch_size=4096)
    got = _collect(scored, "predictions")
    timings["trees (path)"] = time.perf_counter() - start
    assert got.dtype == np.float32 and got.shape == (ROWS,)
    np.testing.assert_array_equal(got, scale_expected["trees"])

    # The artifact as an ObjectRef of its bytes: each node writes it to a temporary file once.
    start = time.perf_counter()
    ref = kiln.ray.put_artifact(scale_models["cnn"])
    scored = kiln.ray.predict(_images(scale_data["images"]), ref, ["image"], keep=["id"], concurrency=2,
                              batch_size=50)
    got = _collect(scored, "probabilities")
    timings["cnn (ObjectRef)"] = time.perf_counter() - start
    assert got.shape == (IMAGES, sm.CLASSES)
    np.testing.assert_array_equal(got, scale_expected["cnn"])
    print("\n" + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))


def test_ray_actor_threads_follow_num_cpus(cluster, scale_models):
    @ray.remote(num_cpus=2)
    def threads_in_actor_with_two_cpus():
        return kiln.ray._actor_cpus()
    assert ray.get(threads_in_actor_with_two_cpus.remote()) == 2


def test_ray_corrupt_artifact_fails_with_kiln_error(cluster, scale_models, scale_data, tmp_path):
    bad = sm.corrupt_copy(scale_models["trees"], str(tmp_path / "corrupt.kiln"))
    start = time.perf_counter()
    with pytest.raises(Exception) as failure:
        kiln.ray.predict(_tabular(scale_data["x"][:1000], blocks=2), bad, FEATURES, keep=["id"], concurrency=1,
                         ray_remote_args={"max_restarts": 1}).materialize()
    text = str(failure.value)
    assert "InvalidArtifactError" in text and "checksum mismatch" in text, text[-3000:]
    assert time.perf_counter() - start < 120


def test_ray_wrong_schema_fails_with_kiln_error(cluster, scale_models, scale_data):
    with pytest.raises(Exception) as failure:
        kiln.ray.predict(_tabular(scale_data["x"][:1000], blocks=2), scale_models["trees"], FEATURES[:5], keep=["id"],
                         concurrency=1, ray_remote_args={"max_restarts": 1}).materialize()
    text = str(failure.value)
    assert "InvalidArgumentError" in text and "input schema does not match the model" in text, text[-3000:]


def test_ray_killed_actor_is_restarted_with_identical_results(cluster, scale_models, scale_data, scale_expected, tmp_path):
    marker = str(tmp_path / "crash-once")
    scored = kiln.ray.predict(_tabular(scale_data["x"]), scale_models["trees"], FEATURES, keep=["id"], concurrency=2,
                              batch_size=4096, crash_once_marker=marker,
                              ray_remote_args={"max_restarts": 2, "max_task_retries": 2})
    got = _collect(scored, "predictions")
    assert os.path.exists(marker), "the crash hook never ran"
    np.testing.assert_array_equal(got, scale_expected["trees"])
