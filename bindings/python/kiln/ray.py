"""Scoring Ray Datasets with a compiled Kiln model (Documentation/ScaleOut.md).

    import kiln.ray
    scored = kiln.ray.predict(ds, "model.kiln", ["f0", "f1", "f2"], keep=["id"], concurrency=2)
    # or by hand:
    ds.map_batches(kiln.ray.KilnPredictor, fn_constructor_kwargs={"artifact": "model.kiln",
                   "input_cols": ["image"]}, batch_format="numpy",
                   compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)

KilnPredictor is a callable class: Ray Data makes one per actor, which loads the artifact once (from a path
every node can read, or from a ray ObjectRef of the artifact's bytes, written to a temporary file once per
node) with as many threads as the actor has CPUs. Each call takes a NumPy batch ({column: array}), runs the
model on whole columns and returns the kept columns plus one column per output. A corrupt artifact or columns
that do not fit the model raise kiln.KilnError subclasses in the actor, which Ray reports on the driver.

ray is imported only when this module's functions run; `import kiln` never imports it.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import InvalidArgumentError, KilnError
from ._scale import (InputColumns, Loader, OutputColumn, Runner, assemble_feeds, cached_model, crash_once,
                     normalize_inputs, output_columns, resolve_inputs, slices, split_output)

__all__ = ["KilnPredictor", "predict", "put_artifact", "artifact_file"]


def _ray() -> Any:
    """The ray module, imported on first use."""
    try:
        return importlib.import_module("ray")
    except ImportError as error:
        raise ImportError(f"kiln.ray needs ray ({error}); pip install 'ray[data]'") from error


def put_artifact(path: str) -> Any:
    """Puts the artifact's bytes in Ray's object store; pass the ObjectRef as `artifact` when the nodes do not
    share a filesystem."""
    with open(path, "rb") as f:
        return _ray().put(f.read())


def artifact_file(data: bytes, folder: Optional[str] = None) -> str:
    """Writes artifact bytes to a file named by their SHA-256 in `folder` (default: the temp folder) unless it is
    already there, and returns its path: once per node however many actors need it (written to a temporary
    name and renamed, so concurrent writers never expose a partial file)."""
    digest = hashlib.sha256(data).hexdigest()[:32]
    target = os.path.join(folder or tempfile.gettempdir(), f"kiln-ray-{digest}.kiln")
    if not os.path.exists(target):
        fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".kiln-ray-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(partial, target)
    return target


def _actor_cpus() -> int:
    """The CPUs Ray assigned to this actor or task (at least 1; 1 outside Ray)."""
    try:
        resources = _ray().get_runtime_context().get_assigned_resources()
        return max(1, int(resources.get("CPU", 1)))
    except Exception:
        return 1


class KilnPredictor:
    """A callable class for ray.data.Dataset.map_batches(batch_format="numpy"): one model per actor.

    `artifact`: a path every node can read, artifact bytes, or an ObjectRef of the bytes (put_artifact).
    `input_cols`: as in kiln.spark.predict_udf (scalar columns → [rows, features], one tensor column →
    [rows, *input shape]). `keep`: columns copied through to the result. `output_spec`: {output: (dtype, row
    shape)}, None for all outputs as the artifact declares. `threads`: None for the actor's CPUs.
    `batch_size`: the most rows per model run. `loader`: (path, threads) → model (default kiln.load).
    `crash_once_marker` is a test hook: the first batch to find that file missing creates it and kills the
    actor's process."""

    def __init__(self, artifact: Any, input_cols: InputColumns, keep: Sequence[str] = (),
                 output_spec: Optional[Mapping[str, Tuple[Any, Sequence[int]]]] = None,
                 threads: Optional[int] = None, batch_size: int = 65536, loader: Optional[Loader] = None,
                 crash_once_marker: Optional[str] = None):
        if isinstance(artifact, (bytes, bytearray, memoryview)):
            path = artifact_file(bytes(artifact))
        elif isinstance(artifact, (str, os.PathLike)):
            path = os.fspath(artifact)
        else:  # an ObjectRef of the bytes
            data = _ray().get(artifact)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidArgumentError(f"the artifact ObjectRef holds {type(data).__name__}, not bytes")
            path = artifact_file(bytes(data))
        self.path = path
        self.keep = list(keep)
        self.batch_size = batch_size
        self.crash_once_marker = crash_once_marker
        try:
            self.model: Runner = cached_model(path, threads or _actor_cpus(), loader)
        except KilnError as error:
            raise KilnError.of(error.code, f"kiln.ray could not load {path}: {error.message}") from None
        self.mapping = resolve_inputs(normalize_inputs(input_cols, [i.name for i in self.model.inputs]), self.model)
        self.outputs: List[OutputColumn] = output_columns(self.model, output_spec)

    def __call__(self, batch: Dict[str, npt.NDArray[Any]]) -> Dict[str, npt.NDArray[Any]]:
        """Scores one NumPy batch: the `keep` columns plus one array per output ([rows] or [rows, *row shape])."""
        crash_once(self.crash_once_marker)
        missing = [c for cols in self.mapping.values() for c in cols if c not in batch]
        missing += [c for c in self.keep if c not in batch]
        if missing:
            raise InvalidArgumentError(f"input schema does not match the model: the batch has no column(s) "
                                       f"{missing} (it has {sorted(batch)})")
        rows = len(next(iter(batch.values()))) if batch else 0

        def column(name: str) -> Tuple[str, npt.NDArray[Any]]:
            values = np.asarray(batch[name])
            if values.dtype == object:
                raise InvalidArgumentError(f"input schema does not match the model: column {name!r} holds "
                                           "objects (ragged arrays?), not numbers")
            if values.ndim == 1:
                return "scalar", values
            return "array", values.reshape(len(values), -1)

        feeds_all = assemble_feeds(self.model, self.mapping, rows, column)
        parts: Dict[str, List[npt.NDArray[Any]]] = {o.name: [] for o in self.outputs}
        for start, stop in slices(rows, self.batch_size):
            feeds = {k: v[start:stop] for k, v in feeds_all.items()}
            try:
                result = self.model.run(feeds)
            except KilnError as error:
                raise KilnError.of(error.code, f"kiln.ray: running {self.path} failed: {error.message}") from None
            for o in self.outputs:
                flat = split_output(np.asarray(result[o.name]), o, stop - start)
                parts[o.name].append(flat.reshape((stop - start,) + o.row_shape))
        out: Dict[str, npt.NDArray[Any]] = {c: np.asarray(batch[c]) for c in self.keep}
        for o in self.outputs:
            out[o.name] = (np.concatenate(parts[o.name]) if parts[o.name]
                           else np.empty((0,) + o.row_shape, o.dtype))
        return out


def predict(ds: Any, artifact: Union[str, bytes, Any], input_cols: InputColumns, *, keep: Sequence[str] = (),
            output_spec: Optional[Mapping[str, Tuple[Any, Sequence[int]]]] = None, concurrency: int = 1,
            num_cpus: float = 1, batch_size: Optional[int] = 4096, threads: Optional[int] = None,
            loader: Optional[Loader] = None, ray_remote_args: Optional[Dict[str, Any]] = None,
            crash_once_marker: Optional[str] = None) -> Any:
    """`ds` scored by KilnPredictor actors: ds.map_batches with batch_format="numpy", `concurrency` actors of
    `num_cpus` CPUs each (each runs the model with that many threads unless `threads` is given) and
    `batch_size` rows a batch. `ray_remote_args` go to map_batches (e.g. max_restarts). A path `artifact` that
    is not on shared storage can be passed as put_artifact(path)."""
    if isinstance(artifact, (str, os.PathLike)):
        artifact = os.path.abspath(os.fspath(artifact))
    kwargs = {"artifact": artifact, "input_cols": input_cols, "keep": list(keep), "output_spec": output_spec,
              "threads": threads, "loader": loader, "crash_once_marker": crash_once_marker}
    pool = importlib.import_module("ray.data").ActorPoolStrategy(size=concurrency)
    return ds.map_batches(KilnPredictor, fn_constructor_kwargs=kwargs, batch_format="numpy",
                          batch_size=batch_size, compute=pool, num_cpus=num_cpus, **(ray_remote_args or {}))
