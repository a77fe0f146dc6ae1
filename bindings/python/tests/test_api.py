"""The typed Python API: typed errors, context managers and close(), timeout_ms, memory_budget_mb, the GIL, and
the planned per-call path (in C through kiln._fastrun, and through ctypes)."""
import os
import sys
import threading
import time

import numpy as np
import pytest

import kiln
from conftest import CHAIN_SIZE, chain_expected, expected

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 10


def test_package_is_typed():
    assert os.path.exists(os.path.join(os.path.dirname(kiln.__file__), "py.typed"))


def test_errors_are_typed_subclasses_that_keep_code_and_message(model_path):
    model = kiln.load(model_path)
    with pytest.raises(kiln.InvalidArgumentError) as e:
        model.run({"x": np.zeros((2, 5), np.float32)})
    assert isinstance(e.value, kiln.KilnError) and isinstance(e.value, ValueError)
    assert e.value.code == kiln.INVALID_ARGUMENT and "input 'x'" in e.value.message
    with pytest.raises(kiln.KilnIOError) as e:
        kiln.load("/nonexistent/model.onnx")
    assert e.value.code == kiln.IO and isinstance(e.value, OSError)
    with pytest.raises(kiln.InvalidModelError):
        kiln.load(b"not a model at all")
    with pytest.raises(kiln.InvalidArgumentError, match="feeds must be a mapping"):
        model.run([X])  # type: ignore[arg-type]
    with pytest.raises(kiln.InvalidArgumentError, match="load takes a path or bytes"):
        kiln.load(42)  # type: ignore[arg-type]
    assert type(kiln.KilnError.of(kiln.RUNTIME, "run exceeded its deadline of 0.001 s")) is kiln.RunTimeoutError
    assert type(kiln.KilnError.of(kiln.INTERNAL, "bug")) is kiln.InternalError


def test_model_is_a_context_manager_and_close_is_deterministic(model_path):
    with kiln.load(model_path) as model:
        assert not model.closed
        np.testing.assert_allclose(model.run({"x": X})["y"], expected(X)["y"], rtol=1e-6, atol=1e-6)
    assert model.closed
    assert model._handle.pointer.value is None  # the native model was freed on exit, not at garbage collection
    with pytest.raises(kiln.InvalidArgumentError, match="closed"):
        model.run({"x": X})
    with pytest.raises(kiln.InvalidArgumentError, match="closed"):
        model.partition
    model.close()  # idempotent
    assert "closed" in repr(model)


def test_close_waits_for_a_run_in_progress(chain_model_path):
    model = kiln.load(chain_model_path, threads=1)
    x = np.ones((CHAIN_SIZE, CHAIN_SIZE), np.float32) / CHAIN_SIZE
    result = {}

    def work():
        result["y"] = model.run({"x": x})["y"]

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(0.005)
    model.close()  # must not free the model under the running thread
    worker.join()
    np.testing.assert_allclose(result["y"], chain_expected(x), rtol=1e-3, atol=1e-4)
    assert model.closed


def test_timeout_ms_stops_a_long_run_with_a_typed_error(chain_model_path):
    model = kiln.load(chain_model_path, threads=1)
    x = np.ones((CHAIN_SIZE, CHAIN_SIZE), np.float32)
    start = time.perf_counter()
    model.run({"x": x})
    full = time.perf_counter() - start
    assert full > 0.01, f"the chain model ran in {full * 1e3:.2f} ms: too fast to test a deadline"
    with pytest.raises(kiln.RunTimeoutError) as e:
        model.run({"x": x}, timeout_ms=1)
    assert e.value.code == kiln.RUNTIME and "deadline" in e.value.message
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, kiln.KilnRuntimeError)
    # A generous deadline does not interfere, and the model still runs after a timed-out run.
    np.testing.assert_allclose(model.run({"x": x}, timeout_ms=600_000)["y"], chain_expected(x), rtol=1e-3, atol=1e-4)
    for bad in (-1, "10", True, float("nan")):
        with pytest.raises(kiln.InvalidArgumentError, match="timeout_ms"):
            model.run({"x": x}, timeout_ms=bad)


def test_memory_budget_mb_refuses_a_plan_over_budget(tmp_path):
    # x: f32[1024, 1024] -> Relu -> Tanh: the value between them is 4 MiB of kiln.cpu's memory plan.
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Tanh", ["r"], ["y"], name="tanh")],
        "budget", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024, 1024])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = str(tmp_path / "budget.onnx")
    onnx.save(model, path)
    with pytest.raises(kiln.MemoryBudgetError) as e:
        kiln.load(path, backend="kiln.cpu", memory_budget_mb=1)
    assert e.value.code == kiln.UNSUPPORTED and "memory_budget_mb" in e.value.message
    assert isinstance(e.value, MemoryError) and isinstance(e.value, kiln.UnsupportedError)
    for bad in (-5, 1.5, True):
        with pytest.raises(kiln.InvalidArgumentError, match="memory_budget_mb"):
            kiln.load(path, memory_budget_mb=bad)
    # A budget that holds the plan loads and runs.
    with kiln.load(path, backend="kiln.cpu", memory_budget_mb=64) as fits:
        x = np.linspace(-1, 1, 1024 * 1024, dtype=np.float32).reshape(1024, 1024)
        np.testing.assert_allclose(fits.run({"x": x})["y"], np.tanh(np.maximum(x, 0)), rtol=1e-5, atol=1e-6)


def test_run_releases_the_gil(chain_model_path):
    """While one thread is inside libkiln, a pure-Python thread keeps running. The spinner notes each
    millisecond in which it ran. The switch interval is raised to 1 s, so a thread holding the GIL is never
    forced to give it up: had kiln_run_alloc kept the GIL, the spinner would run in none of the runner's
    milliseconds (it yields the GIL itself with sleep(0), so the runner gets it back at once)."""
    model = kiln.load(chain_model_path, threads=1)
    x = np.ones((CHAIN_SIZE, CHAIN_SIZE), np.float32)
    model.run({"x": x})
    done = threading.Event()
    running = threading.Event()
    buckets = set()

    def spin():
        clock = time.perf_counter
        running.set()
        while not done.is_set():
            buckets.add(int(clock() * 1000))
            time.sleep(0)

    def runs():
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:
            model.run({"x": x})

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    try:
        spinner = threading.Thread(target=spin)
        spinner.start()
        running.wait()
        runner = threading.Thread(target=runs)
        start = time.perf_counter()
        runner.start()
        runner.join()
        end = time.perf_counter()
        done.set()
        spinner.join()
    finally:
        sys.setswitchinterval(interval)
    window = range(int(start * 1000) + 1, int(end * 1000))
    progressed = sum(1 for ms in window if ms in buckets)
    assert len(window) >= 150
    assert progressed >= 0.1 * len(window), f"the Python thread ran in {progressed} of {len(window)} ms of kiln runs"


@pytest.fixture(params=["fastrun", "ctypes"])
def run_path(request, monkeypatch):
    """Runs a test twice: with the planned path in C (kiln._fastrun, which the package builds) and through
    ctypes (as on a Python without the extension). Models loaded inside the test take that path."""
    if request.param == "ctypes":
        monkeypatch.setattr(kiln, "_fast", None)
    return request.param


def test_the_c_run_path_is_built_and_gives_what_ctypes_gives(model_path, tmp_path, monkeypatch):
    """kiln._fastrun is built with the package (scripts/test installs it with pip), serves the second call of a
    signature, and its outputs equal the ctypes path's for several signatures, read-only and fresh arrays."""
    assert kiln._fast is not None, "kiln._fastrun was not built (needs a C compiler and CPython 3.11+ headers)"
    fast = _compiled(model_path, tmp_path, "fast.kiln")
    monkeypatch.setattr(kiln, "_fast", None)
    slow = _compiled(model_path, tmp_path, "slow.kiln")
    monkeypatch.undo()
    for rows in [2, 5, 2, 1]:
        x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) / 7
        for readonly in (False, True):
            x.setflags(write=not readonly)
            for _ in range(3):
                a, b = fast.run({"x": x}), slow.run({"x": x})
                assert list(a) == list(b) == ["y", "s", "xi"]
                for name in a:
                    assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
                    np.testing.assert_array_equal(a[name], b[name])
                    assert a[name].flags.c_contiguous and a[name].flags.writeable
    assert type(fast._plans.fast).__name__ == "Plan" and getattr(slow._plans, "fast", None) is None
    # The C plan declines what it was not made for (another dtype, a view, extra keys); the general path
    # answers, with its typed errors.
    with pytest.raises(kiln.InvalidArgumentError):
        fast.run({"x": np.ones((1, 4), np.float64)})
    with pytest.raises(kiln.InvalidArgumentError, match="no input named"):
        fast.run({"x": np.ones((1, 4), np.float32), "z": np.ones(1)})
    view = np.ones((1, 8), np.float32)[:, ::2]
    np.testing.assert_allclose(fast.run({"x": view})["y"], expected(np.ones((1, 4), np.float32))["y"], rtol=1e-6)
    fast.close()
    with pytest.raises(kiln.InvalidArgumentError, match="closed"):
        fast.run({"x": np.ones((1, 4), np.float32)})


def test_close_waits_for_a_run_in_progress_on_the_c_path(chain_model_path):
    """A run through kiln._fastrun (the second call of a signature) holds close() until it ends."""
    assert kiln._fast is not None
    model = kiln.load(chain_model_path, threads=1)
    x = np.ones((CHAIN_SIZE, CHAIN_SIZE), np.float32) / CHAIN_SIZE
    model.run({"x": x})  # the first call takes the general path and makes the plan
    result = {}

    def work():
        result["y"] = model.run({"x": x})["y"]

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 5
    while not model._gate.active and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0002)
    model.close()  # must not free the model under the running thread
    assert model._handle.pointer.value is None
    worker.join()
    np.testing.assert_allclose(result["y"], chain_expected(x), rtol=1e-3, atol=1e-4)
    assert model._gate.active == 0


def _compiled(path, tmp_path, name="m.kiln"):
    artifact = str(tmp_path / name)
    kiln.compile(path, artifact)
    return kiln.load(artifact, threads=1)


def test_repeated_runs_take_the_planned_path_and_return_new_arrays(model_path, tmp_path, run_path):
    """The second call with the same input signature runs through the prepared plan (kiln_run into new
    arrays): same values as the first, fresh arrays every call, and another signature gets its own plan."""
    m = _compiled(model_path, tmp_path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    first = m.run({"x": x})
    assert len(m._plans.plans) == 1  # the first call made the plan for f32[2,4]
    second = m.run({"x": x})
    third = m.run({"x": x * 2})
    for name, want in expected(x).items():
        np.testing.assert_allclose(first[name], want, rtol=1e-6)
        np.testing.assert_array_equal(second[name], first[name])
    for name, want in expected(x * 2).items():
        np.testing.assert_allclose(third[name], want, rtol=1e-6)
    assert second["y"] is not first["y"] and not np.shares_memory(second["y"], third["y"])
    assert not np.shares_memory(second["xi"], x)  # an output equal to an input is still a copy
    x5 = np.ones((5, 4), np.float32)
    for _ in range(2):
        got = m.run({"x": x5})
        np.testing.assert_allclose(got["y"], expected(x5)["y"], rtol=1e-6)
        assert got["s"].tolist() == [5, 4]
    assert len(m._plans.plans) == 2
    # Inputs the plan cannot take as they are (a strided view, a list) go the general way, with the same result.
    view = np.ones((5, 8), np.float32)[:, ::2]
    np.testing.assert_allclose(m.run({"x": view})["y"], expected(x5)["y"], rtol=1e-6)
    np.testing.assert_allclose(m.run({"x": x5.tolist()})["y"], expected(x5)["y"], rtol=1e-6)
    # A wrong dtype is still the general path's typed error, every time.
    for _ in range(2):
        with pytest.raises(kiln.InvalidArgumentError):
            m.run({"x": x.astype(np.float64)})
    m.close()
    with pytest.raises(kiln.InvalidArgumentError):
        m.run({"x": x})


def test_planned_path_leaves_empty_outputs_and_odd_feeds_to_the_general_path(tmp_path, model_path, run_path):
    """An output with no elements makes a plan that is never used (no crash on the call that learns it), and
    feeds that are not a dict (an array, a list) still get the general path's typed error."""
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "start", "end"], ["y"])], "empty",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [numpy_helper.from_array(np.array([2], np.int64), "start"), numpy_helper.from_array(np.array([2], np.int64), "end")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "empty.onnx"
    onnx.save(model, str(path))
    m = _compiled(str(path), tmp_path)
    for _ in range(3):
        assert m.run({"x": np.arange(4, dtype=np.float32)})["y"].shape == (0,)
    tiny = _compiled(model_path, tmp_path, "tiny.kiln")
    for feeds in [np.ones((2, 4), np.float32), [np.ones((2, 4), np.float32)]]:
        with pytest.raises(kiln.InvalidArgumentError):
            tiny.run(feeds)  # type: ignore[arg-type]


def test_outputs_whose_shape_depends_on_values_leave_the_planned_path(tmp_path, run_path):
    """NonZero's output length depends on the values, not the input shape: the plan learned from the first
    call fails kiln_run's output check on the next, and the signature then takes the general path."""
    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "zero"], ["g"]), helper.make_node("NonZero", ["g"], ["i"])],
        "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
        [helper.make_tensor_value_info("i", TensorProto.INT64, [1, None])],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "nonzero.onnx"
    onnx.save(model, str(path))
    m = _compiled(str(path), tmp_path)
    for x in [[1, -1, 2, 0, 3, 0], [1, 1, 1, 1, 1, 1], [-1, -1, -1, -1, 5, -1], [1, 1, 1, 1, 1, 1]]:
        a = np.array(x, np.float32)
        assert m.run({"x": a})["i"].tolist() == [list(np.nonzero(a > 0)[0])]


def test_planned_runs_from_many_threads_keep_their_own_buffers(model_path, tmp_path, run_path):
    """Each thread has its own plans, so concurrent calls never share a kiln_tensor's data pointer."""
    m = _compiled(model_path, tmp_path)
    errors = []

    def work(k):
        x = np.full((3, 4), float(k), np.float32)
        want = expected(x)["y"]
        for _ in range(300):
            got = m.run({"x": x})["y"]
            if not np.allclose(got, want, rtol=1e-6):
                errors.append((k, got))
                return

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
