"""kiln.spark on real Spark: local[2] (this module) and a standalone master with two workers started here on
127.0.0.1 (the second half). Each scores the XGBoost model over tabular rows and the CNN over images, and the
scores equal kiln.load(...).run on the same data exactly; a corrupt artifact and a wrong input schema fail the
job with Kiln's typed error in the driver's exception; a Python worker killed mid-job is retried by Spark and
the result is unchanged. Sizes: scale_models.sizes() (KILN_SCALE_FULL=1 for 1,000,000 rows and 2,000 images).
"""
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import kiln
import kiln.spark
import scale_models as sm

import pyspark  # scripts/setup installs it: a missing pyspark is a failure, not a skip
from pyspark.sql import SparkSession  # noqa: E402

ROWS, IMAGES = sm.sizes()
BATCH = 50  # Arrow batch rows for images: every run sees >= 5 rows (scale_models.reference's batching is exact)


def _session(master: str, extra: dict) -> "SparkSession":
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    builder = (SparkSession.builder.master(master).appName("kiln-scale-test")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "3g" if ROWS > 100_000 else "1g"))
    for key, value in sm.worker_env().items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    for key, value in extra.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _tabular_frame(spark, x):
    import pandas as pd
    frame = pd.DataFrame({f"f{j}": x[:, j] for j in range(x.shape[1])})
    frame.insert(0, "id", np.arange(len(x), dtype=np.int64))
    schema = "id bigint, " + ", ".join(f"f{j} float" for j in range(x.shape[1]))
    return spark.createDataFrame(frame, schema)


def _image_frame(spark, images):
    import pandas as pd
    flat = images.reshape(len(images), -1)
    frame = pd.DataFrame({"id": np.arange(len(images), dtype=np.int64), "image": list(flat)})
    return spark.createDataFrame(frame, "id bigint, image array<float>")


def _collect(df, column):
    """The `column` of df ordered by id, as a NumPy array (array columns stacked)."""
    frame = df.toPandas().sort_values("id")
    assert frame["id"].tolist() == list(range(len(frame))), "rows lost or duplicated"
    values = frame[column].to_numpy()
    return np.stack(values) if values.dtype == object else values


FEATURES = [f"f{j}" for j in range(sm.FEATURES)]


def _check_scoring(spark, scale_models, scale_data, scale_expected, tmp_path, ways=("map_in_pandas", "pandas_udf", "map_in_arrow")):
    """The shared body of the local and standalone tests: tabular rows and images, each the given `ways`."""
    timings = {}
    trees = kiln.spark.predict_udf(scale_models["trees"], FEATURES)
    assert trees.udf_return_type() == "float"
    tab = _tabular_frame(spark, scale_data["x"]).cache()
    tab.count()
    for how in ways:
        start = time.perf_counter()
        if how == "pandas_udf":
            scored = tab.select("id", trees(*FEATURES).alias("predictions"))
        else:
            scored = getattr(trees, how)(tab, keep=["id"])
        got = _collect(scored, "predictions")
        timings[f"trees {how}"] = time.perf_counter() - start
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, scale_expected["trees"], err_msg=how)

    cnn = kiln.spark.predict_udf(scale_models["cnn"], ["image"])
    assert cnn.udf_return_type() == "array<float>"
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH))
    try:
        img = _image_frame(spark, scale_data["images"]).cache()
        img.count()
        for how in ways:
            start = time.perf_counter()
            if how == "pandas_udf":
                scored = img.select("id", cnn("image").alias("probabilities"))
            else:
                scored = getattr(cnn, how)(img, keep=["id"])
            got = _collect(scored, "probabilities")
            timings[f"cnn {how}"] = time.perf_counter() - start
            assert got.shape == (IMAGES, sm.CLASSES)
            np.testing.assert_array_equal(got, scale_expected["cnn"], err_msg=how)
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    print("\n" + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))


def _check_failures(spark, scale_models, scale_data, scale_expected, tmp_path):
    """A corrupt artifact and a wrong schema fail with Kiln's typed error; a killed worker is retried."""
    tab = _tabular_frame(spark, scale_data["x"][:2000])
    bad = sm.corrupt_copy(scale_models["trees"], str(tmp_path / f"corrupt-{time.time_ns()}.kiln"))
    # Described from the artifact: the driver loads it and refuses at once.
    with pytest.raises(kiln.InvalidArtifactError, match="checksum mismatch"):
        kiln.spark.predict_udf(bad, FEATURES)
    # With output_spec the driver never opens it: the executors do, and the job fails with their error.
    scorer = kiln.spark.predict_udf(bad, FEATURES, output_spec={"predictions": (np.float32, (1,))})
    start = time.perf_counter()
    with pytest.raises(Exception) as failure:
        scorer.map_in_pandas(tab, keep=["id"]).collect()
    text = str(failure.value)
    assert "InvalidArtifactError" in text and "checksum mismatch" in text, text[-2000:]
    assert "Python worker exited unexpectedly" not in text
    assert time.perf_counter() - start < 120

    # Five of the eight feature columns: refused on the executors at the first batch.
    short = kiln.spark.predict_udf(scale_models["trees"], FEATURES[:5])
    with pytest.raises(Exception) as failure:
        short.map_in_pandas(tab, keep=["id"]).collect()
    text = str(failure.value)
    assert "InvalidArgumentError" in text and "input schema does not match the model" in text, text[-2000:]
    assert "5 scalar column(s)" in text
    # A column the DataFrame lacks: refused on the driver before any task.
    with pytest.raises(kiln.InvalidArgumentError, match="no column"):
        kiln.spark.predict_udf(scale_models["trees"], FEATURES[:7] + ["nope"]).map_in_pandas(tab)

    # A worker that dies (os._exit) in its first batch: Spark retries the task and the result is the same.
    rows = min(ROWS, 20_000)
    marker = str(tmp_path / f"crash-{time.time_ns()}")
    crashing = kiln.spark.predict_udf(scale_models["trees"], FEATURES, _crash_once_marker=marker)
    got = _collect(crashing.map_in_pandas(_tabular_frame(spark, scale_data["x"][:rows]), keep=["id"]), "predictions")
    assert os.path.exists(marker), "the crash hook never ran"
    np.testing.assert_array_equal(got, scale_expected["trees"][:rows])


# --- local[2] -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_spark():
    # local[2,2]: two task slots, a task may fail twice (one retry), so a crash is retried but errors
    # do not loop.
    spark = _session("local[2,2]", {})
    yield spark
    spark.stop()


def test_local_scores_equal_kiln(local_spark, scale_models, scale_data, scale_expected, tmp_path):
    _check_scoring(local_spark, scale_models, scale_data, scale_expected, tmp_path)


def _check_shipping(spark, scale_models, scale_data, scale_expected, tmp_path):
    """predict_udf ships the artifact with addFile: the tasks load their SparkFiles copy, not the driver's path."""
    copy = str(tmp_path / f"shipped-{time.time_ns()}.kiln")
    shutil.copyfile(scale_models["trees"], copy)
    scorer = kiln.spark.predict_udf(copy, FEATURES)
    inner = scorer._scorer

    def where(frames):
        import pandas as pd
        for frame in frames:
            yield pd.DataFrame({"path": [inner.local_path()] * len(frame), "threads": [inner.task_threads()] * len(frame)})
    tab = _tabular_frame(spark, scale_data["x"][:1000])
    seen = tab.mapInPandas(where, "path string, threads int").distinct().collect()
    assert {row.path for row in seen} and all(row.path != copy and row.path.endswith(os.path.basename(copy))
                                               for row in seen), seen
    assert {row.threads for row in seen} == {1}  # spark.task.cpus
    got = _collect(scorer.map_in_pandas(tab, keep=["id"]), "predictions")
    np.testing.assert_array_equal(got, scale_expected["trees"][:1000])


def test_local_artifact_is_shipped_with_the_job(local_spark, scale_models, scale_data, scale_expected, tmp_path):
    _check_shipping(local_spark, scale_models, scale_data, scale_expected, tmp_path)


def test_local_failures(local_spark, scale_models, scale_data, scale_expected, tmp_path):
    _check_failures(local_spark, scale_models, scale_data, scale_expected, tmp_path)


# --- standalone: a master and two workers on 127.0.0.1 ------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"{what} did not come up within {seconds}s")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, local_spark):
    """A Spark standalone master and two 1-core workers (spark-class from the pyspark install), then a
    session on it; everything stopped afterwards."""
    local_spark.stop()  # one SparkContext per process
    home = os.path.dirname(pyspark.__file__)
    folder = tmp_path_factory.mktemp("spark-standalone")
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               SPARK_LOG_DIR=str(folder), SPARK_WORKER_DIR=str(folder / "work"), **sm.worker_env())
    port = _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    spark_class = os.path.join(home, "bin", "spark-class")
    processes = []
    logs = []

    def start(name, *args):
        log = open(folder / f"{name}.log", "w")
        logs.append(log)
        processes.append(subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(_free_port()))

        def master_up():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        _wait_for(master_up, 60, "the Spark master")
        for k in range(2):
            start(f"worker{k}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                  "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(folder / f"work{k}"),
                  master_url)

        def workers_registered():
            text = (folder / "master.log").read_text()
            return text.count("Registering worker") >= 2
        _wait_for(workers_registered, 90, "two Spark workers")
        spark = _session(master_url, {"spark.task.maxFailures": "2", "spark.executor.cores": "1",
                                      "spark.executor.memory": "1g" if ROWS > 100_000 else "700m", "spark.cores.max": "2"})
        _wait_for(lambda: spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() >= 3, 90,
                  "two executors")
        yield spark
        spark.stop()
    finally:
        for p in processes:
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        for log in logs:
            log.close()


def test_standalone_scores_equal_kiln(standalone, scale_models, scale_data, scale_expected, tmp_path):
    assert standalone.sparkContext.master.startswith("spark://")
    assert standalone.sparkContext.defaultParallelism == 2
    # local[2] covers the three ways to call the model; here, the default one (mapInPandas).
    _check_scoring(standalone, scale_models, scale_data, scale_expected, tmp_path, ways=("map_in_pandas",))


def test_standalone_artifact_is_shipped_with_the_job(standalone, scale_models, scale_data, scale_expected, tmp_path):
    _check_shipping(standalone, scale_models, scale_data, scale_expected, tmp_path)


def test_standalone_failures(standalone, scale_models, scale_data, scale_expected, tmp_path):
    _check_failures(standalone, scale_models, scale_data, scale_expected, tmp_path)
