"""Tests of the kiln Python package over libkiln (set KILN_LIBRARY to the .so under test)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kiln
from conftest import expected

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 10


def test_version_and_library():
    assert kiln.version()
    assert kiln.abi_version()[0] == kiln.ABI_MAJOR
    assert "kiln.reference" in kiln.backends()
    if os.environ.get("KILN_LIBRARY"):
        assert kiln.library_path() == os.environ["KILN_LIBRARY"]


def test_introspection(model_path):
    model = kiln.load(model_path)
    assert [(i.name, i.dtype, i.shape) for i in model.inputs] == [("x", np.dtype(np.float32), ("batch", 4))]
    assert [(o.name, o.dtype, o.shape) for o in model.outputs] == [
        ("y", np.dtype(np.float32), ("batch", 3)),
        ("s", np.dtype(np.int64), (2,)),
        ("xi", np.dtype(np.float32), ("batch", 4)),
    ]
    assert model.inputs[0].elem_type == 1
    report = model.partition
    # With no backend named, the host target's kiln.cpu claims what it runs.
    assert [(e.node, e.op, e.backend) for e in report][:3] == [
        ("matmul", "MatMul", "kiln.cpu"), ("add", "Add", "kiln.cpu"), ("relu", "Relu", "kiln.cpu")]
    assert all(e.reason for e in report)


def test_compile_with_no_options_is_for_the_host_target(model_path, tmp_path):
    artifact = tmp_path / "default.kiln"
    kiln.compile(model_path, artifact)
    compiled = kiln.load(str(artifact))
    assert compiled.partition[0].backend == "kiln.cpu"
    assert {e.backend for e in compiled.partition} <= {"kiln.cpu", "kiln.reference"}
    # Whatever did not go to kiln.cpu says why it fell back.
    assert all("claimed by kiln.cpu" == e.reason or "fallback kiln.reference" in e.reason for e in compiled.partition)
    np.testing.assert_allclose(compiled.run({"x": X})["y"], expected(X)["y"], rtol=1e-5, atol=1e-6)


def test_compile_with_input_shapes_fixes_the_dims(model_path, tmp_path):
    artifact = tmp_path / "fixed.kiln"
    kiln.compile(model_path, artifact, input_shapes={"x": (2, 4)})
    compiled = kiln.load(str(artifact))
    assert [(i.name, i.shape) for i in compiled.inputs] == [("x", (2, 4))]
    out = compiled.run({"x": X})
    np.testing.assert_allclose(out["y"], expected(X)["y"], rtol=1e-5, atol=1e-6)
    assert out["s"].tolist() == [2, 4]
    with pytest.raises(kiln.KilnError):  # the artifact takes that shape only
        compiled.run({"x": np.zeros((3, 4), np.float32)})
    with pytest.raises(kiln.InvalidArgumentError) as e:
        kiln.compile(model_path, tmp_path / "bad.kiln", input_shapes={"x": (2, 5)})
    assert "dim 1 is 4 in the model, not 5" in e.value.message
    assert not (tmp_path / "bad.kiln").exists()


def test_run_matches_numpy(model_path):
    out = kiln.load(model_path).run({"x": X})
    want = expected(X)
    assert set(out) == {"y", "s", "xi"}
    np.testing.assert_allclose(out["y"], want["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out["s"], want["s"])
    np.testing.assert_array_equal(out["xi"], X)
    assert out["y"].dtype == np.float32 and out["s"].dtype == np.int64


def test_symbolic_batch_and_non_contiguous_inputs(model_path):
    model = kiln.load(model_path)
    big = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(model.run({"x": big})["y"], expected(big)["y"], rtol=1e-5, atol=1e-6)
    # A transposed view (column-major strides) and a reversed view (negative strides) are read as they are.
    column_major = np.asfortranarray(big)
    assert not column_major.flags.c_contiguous
    np.testing.assert_allclose(model.run({"x": column_major})["y"], expected(big)["y"], rtol=1e-5, atol=1e-6)
    reversed_rows = big[::-1]
    np.testing.assert_allclose(model.run({"x": reversed_rows})["y"], expected(big[::-1].copy())["y"], rtol=1e-5, atol=1e-6)
    # A list is converted to the input's dtype.
    np.testing.assert_allclose(model.run({"x": X.tolist()})["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)


def test_outputs_are_independent_copies(model_path):
    model = kiln.load(model_path)
    x = X.copy()
    out = model.run({"x": x})
    x[:] = 42
    np.testing.assert_array_equal(out["xi"], X)  # the Identity output does not alias the input
    out["y"][:] = -1  # writable, and writing does not disturb the model
    np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)


def test_dlpack_inputs(model_path):
    class Producer:
        """A minimal DLPack producer wrapping an array (stands in for a PyTorch or JAX CPU tensor)."""

        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    out = kiln.load(model_path).run({"x": Producer(X)})
    np.testing.assert_allclose(out["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)
    # Outputs are NumPy arrays, themselves DLPack producers.
    assert np.from_dlpack(out["y"]).shape == (2, 3)


def test_load_from_bytes_and_threads(model_path):
    with open(model_path, "rb") as f:
        data = f.read()
    model = kiln.load(data, threads=2)
    np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(model_path, threads=0)
    assert e.value.code == kiln.INVALID_ARGUMENT


def test_cpu_backend_with_threads(model_path, tmp_path):
    model = kiln.load(model_path, backend="kiln.cpu", threads=2)
    assert {e.backend for e in model.partition} == {"kiln.cpu"}
    np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-5, atol=1e-6)
    artifact = tmp_path / "cpu.kiln"
    kiln.compile(model_path, artifact, backend="kiln.cpu")
    compiled = kiln.load(str(artifact), threads=3)
    assert {e.backend for e in compiled.partition} == {"kiln.cpu"}
    np.testing.assert_allclose(compiled.run({"x": X})["y"], expected(X)["y"], rtol=1e-5, atol=1e-6)
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(str(artifact), backend="kiln.reference")
    assert "kiln.cpu" in e.value.message


def test_errors_carry_code_and_message(model_path, tmp_path):
    model = kiln.load(model_path)
    with pytest.raises(kiln.KilnError) as e:
        model.run({"x": np.zeros((2, 5), np.float32)})
    assert e.value.code == kiln.INVALID_ARGUMENT
    assert "input 'x'" in e.value.message and "[2,5]" in e.value.message.replace(" ", "")
    with pytest.raises(kiln.KilnError) as e:
        model.run({"x": X.astype(np.float64)})
    assert e.value.code == kiln.INVALID_ARGUMENT and "f64" in e.value.message and "f32" in e.value.message
    with pytest.raises(kiln.KilnError) as e:
        model.run({})
    assert "'x' is missing" in e.value.message
    with pytest.raises(kiln.KilnError) as e:
        model.run({"x": X, "z": X})
    assert "'z'" in e.value.message
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(str(tmp_path / "missing.onnx"))
    assert e.value.code == kiln.IO and "missing.onnx" in e.value.message
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(b"definitely not a model")
    assert e.value.code == kiln.INVALID_MODEL
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(model_path, backend="acme.npu")
    assert "acme.npu" in e.value.message


def test_compile_then_load_the_artifact(model_path, tmp_path):
    artifact = tmp_path / "tiny.kiln"
    kiln.compile(model_path, artifact, target="host", opt_level=1, **{"metadata.author": "tests"})
    data = artifact.read_bytes()
    assert data[:4] == b"KILN"
    for source in (str(artifact), data):
        model = kiln.load(source)
        assert [i.name for i in model.inputs] == ["x"]
        np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)
    with pytest.raises(kiln.KilnError) as e:
        kiln.compile(model_path, tmp_path / "bad.kiln", no_such_option=1)
    assert e.value.code == kiln.INVALID_ARGUMENT and "no_such_option" in e.value.message
    assert not (tmp_path / "bad.kiln").exists()
    with pytest.raises(kiln.KilnError) as e:
        kiln.compile(model_path, tmp_path / "bad.kiln", target="riscv-vector-9000")
    assert "riscv-vector-9000" in e.value.message


def test_missing_library_is_a_clear_error(tmp_path):
    env = dict(os.environ, KILN_LIBRARY=str(tmp_path / "nowhere" / "libkiln.so"))
    code = "import kiln\ntry:\n    kiln.version()\nexcept kiln.KilnError as e:\n    print(e.code, e.message)\n"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.startswith(f"{kiln.IO} cannot load libkiln") and "KILN_LIBRARY" in result.stdout


@pytest.fixture(scope="session")
def sample_plugin(tmp_path_factory) -> str:
    """The sample vendor plugin (backend "sample.bytecode"): $KILN_SAMPLE_PLUGIN, else built from the source tree
    with cc; the tests that need it are skipped when neither works."""
    given = os.environ.get("KILN_SAMPLE_PLUGIN")
    if given:
        return given
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    folder = os.path.join(root, "bindings", "c", "examples", "vendor-plugin")
    if not os.path.exists(os.path.join(folder, "sample_plugin.c")):
        pytest.skip("the sample plugin's sources are not here and KILN_SAMPLE_PLUGIN is not set")
    output = str(tmp_path_factory.mktemp("plugin") / "libkiln_sample_plugin.so")
    command = [os.environ.get("CC", "cc"), "-std=c11", "-O1", "-shared", "-fPIC", "-fvisibility=hidden",
               "-I", os.path.join(root, "include"), "-I", os.path.join(root, "bindings", "c", "proto"), "-o", output,
               os.path.join(folder, "sample_plugin.c"), os.path.join(folder, "bytecode.c"),
               os.path.join(root, "bindings", "c", "proto", "kiln", "ir.pb-c.c"), "-lprotobuf-c"]
    try:
        built = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
        pytest.skip(f"no C compiler to build the sample plugin: {error}")
    if built.returncode != 0:
        pytest.skip(f"building the sample plugin failed (needs cc and libprotobuf-c-dev): {built.stderr[:300]}")
    return output


def test_register_plugin_compile_and_run_on_it(model_path, sample_plugin, tmp_path):
    with pytest.raises(kiln.KilnError) as e:
        kiln.register_plugin(tmp_path / "no-such-plugin.so")
    assert "no-such-plugin.so" in e.value.message
    with pytest.raises(kiln.KilnError) as e:
        kiln.compile(model_path, tmp_path / "early.kiln", backends="sample.bytecode")
    assert "sample.bytecode" in e.value.message
    added = kiln.register_plugin(sample_plugin)
    assert added == ["sample.bytecode"]
    assert "sample.bytecode" in kiln.backends()
    assert kiln.register_plugin(sample_plugin) == []
    artifact = tmp_path / "sample.kiln"
    kiln.compile(model_path, artifact, backends=["sample.bytecode"], fallback="allow", min_group_size=1)
    model = kiln.load(str(artifact))
    on_plugin = {entry.op for entry in model.partition if entry.backend == "sample.bytecode"}
    assert "MatMul" in on_plugin
    np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-5, atol=1e-6)
    with pytest.raises(kiln.KilnError) as e:
        kiln.compile(model_path, tmp_path / "bad.kiln", backends="sample.bytecode", fallback="sometimes")
    assert e.value.code == kiln.INVALID_ARGUMENT and "sometimes" in e.value.message


def test_one_model_runs_from_eight_threads_at_once(model_path, tmp_path):
    """The concurrency contract (Documentation/CABI.md, "Threads"): 8 threads x 500 runs on one model give
    the single-threaded outputs, for the ONNX model and its artifact."""
    import threading

    artifact = tmp_path / "threads.kiln"
    kiln.compile(model_path, artifact)
    for source in (model_path, str(artifact)):
        model = kiln.load(source)
        single = model.run({"x": X})
        failures = []

        def work(index):
            x = X.copy()
            for r in range(500):
                out = model.run({"x": x})
                if set(out) != set(single) or any(
                    out[k].dtype != single[k].dtype or out[k].shape != single[k].shape
                    or out[k].tobytes() != single[k].tobytes() for k in single):
                    failures.append((index, r))
                    return

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == [], f"{source}: runs whose outputs differ (thread, run): {failures[:5]}"
