"""What kiln.spark and kiln.ray share: a per-process model cache, the mapping of table columns to model inputs,
and the conversion of whole column batches (Arrow, pandas or NumPy) to input tensors and of outputs back to
columns, without a Python loop over rows. Neither Spark nor Ray is imported here."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import InvalidArgumentError, Model, ValueInfo, load

#: Which columns feed which model input: a list of column names for a model with one input (several scalar
#: columns become the features of a [rows, features] tensor; one array column becomes [rows, *shape]), or a
#: mapping of input name to a column name or a list of column names.
InputColumns = Union[Sequence[str], Mapping[str, Union[str, Sequence[str]]]]


class Runner(Protocol):
    """What the scorers need of a loaded model: `kiln.Model` is one; a benchmark may pass another engine."""

    @property
    def inputs(self) -> List[ValueInfo]: ...

    @property
    def outputs(self) -> List[ValueInfo]: ...

    def run(self, feeds: Mapping[str, Any]) -> Mapping[str, npt.NDArray[Any]]: ...


#: Loads the model at a path with a thread count; `_kiln_loader` by default.
Loader = Callable[[str, int], Runner]


def _kiln_loader(path: str, threads: int) -> Runner:
    return load(path, threads=threads)


_cache_lock = threading.Lock()
_cache: Dict[Tuple[str, int, int, int, str], Runner] = {}


def cached_model(path: str, threads: int, loader: Optional[Loader] = None) -> Runner:
    """The model at `path` loaded with `threads` threads, loaded once per process: the cache is keyed by the
    file's real path, modification time and size (a replaced artifact is loaded again) and the thread count.
    Loading errors (a corrupt artifact: kiln.InvalidArtifactError...) propagate unchanged and are not cached."""
    real = os.path.realpath(path)
    st = os.stat(real)
    use = loader or _kiln_loader
    key = (real, st.st_mtime_ns, st.st_size, threads, getattr(use, "__qualname__", repr(use)))
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            for old in [k for k in _cache if k[0] == real and k != key]:
                del _cache[old]  # a replaced file: drop the stale model
            model = use(real, threads)
            _cache[key] = model
        return model


def clear_cache() -> None:
    """Forgets every cached model of this process (they are freed when no scorer uses them)."""
    with _cache_lock:
        _cache.clear()


@dataclass(frozen=True)
class OutputColumn:
    """One output column: the model output `name`, its element dtype and the shape of one row's value
    (() for a scalar column: an output of shape [rows] or [rows, 1])."""
    name: str
    dtype: np.dtype
    row_shape: Tuple[int, ...]


def _static_row_shape(info: ValueInfo) -> Optional[Tuple[int, ...]]:
    """The shape of one row of a value whose first dimension is the batch, if every other dimension is known."""
    if info.shape is None or len(info.shape) == 0:
        return None
    rest = info.shape[1:]
    if not all(isinstance(d, int) for d in rest):
        return None
    return tuple(int(d) for d in rest)  # type: ignore[arg-type]


def describe_outputs(model: Runner) -> List[OutputColumn]:
    """The output columns of `model`: every output, a scalar column for [rows] and [rows, 1] outputs and a
    fixed-size array column otherwise. An output whose per-row shape is not static is an error (give
    `output_spec` then)."""
    columns = []
    for info in model.outputs:
        if info.dtype is None:
            raise InvalidArgumentError(f"output {info.name!r} has an element type NumPy cannot hold")
        row = _static_row_shape(info)
        if row is None:
            raise InvalidArgumentError(f"output {info.name!r} has shape {info.shape}: its size per row is not "
                                       "known, so give output_spec={name: (dtype, row_shape)}")
        columns.append(OutputColumn(info.name, np.dtype(info.dtype), () if row in ((), (1,)) else row))
    return columns


def output_columns(model: Optional[Runner],
                   output_spec: Optional[Mapping[str, Tuple[Any, Sequence[int]]]]) -> List[OutputColumn]:
    """The output columns from `output_spec` ({output name: (dtype, row shape)}) when given, else from `model`."""
    if output_spec is not None:
        if not output_spec:
            raise InvalidArgumentError("output_spec is empty: name at least one output, or pass None")
        return [OutputColumn(name, np.dtype(dtype), tuple(int(d) for d in shape) if tuple(shape) != (1,) else ())
                for name, (dtype, shape) in output_spec.items()]
    if model is None:
        raise InvalidArgumentError("no model and no output_spec to describe the outputs")
    return describe_outputs(model)


def normalize_inputs(input_cols: InputColumns, model_inputs: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """{input name: [column, ...]} from the `input_cols` a user gave. A plain list of columns needs a model
    with one input; its name is looked up from `model_inputs`, or left as "" (resolved at load)."""
    if isinstance(input_cols, str):
        input_cols = [input_cols]
    if isinstance(input_cols, Mapping):
        out: Dict[str, List[str]] = {}
        for name, cols in input_cols.items():
            out[str(name)] = [cols] if isinstance(cols, str) else [str(c) for c in cols]
            if not out[str(name)]:
                raise InvalidArgumentError(f"input {name!r} is given no columns")
        if not out:
            raise InvalidArgumentError("input_cols is empty")
        return out
    cols = [str(c) for c in input_cols]
    if not cols:
        raise InvalidArgumentError("input_cols is empty: name the columns that feed the model")
    if model_inputs is not None:
        if len(model_inputs) != 1:
            raise InvalidArgumentError(f"the model has {len(model_inputs)} inputs ({', '.join(model_inputs)}): "
                                       "give input_cols as {input name: columns}")
        return {model_inputs[0]: cols}
    return {"": cols}


def resolve_inputs(mapping: Dict[str, List[str]], model: Runner) -> Dict[str, List[str]]:
    """`mapping` with a "" input name replaced by the model's only input, every name checked against the model."""
    names = [i.name for i in model.inputs]
    if "" in mapping:
        return normalize_inputs(mapping[""], names)
    missing = sorted(set(names) - set(mapping))
    unknown = sorted(set(mapping) - set(names))
    if unknown or missing:
        raise InvalidArgumentError(f"input_cols names inputs {sorted(mapping)} but the model's inputs are {names}")
    return mapping


ColumnGetter = Callable[[str], Tuple[str, Any]]
"""Returns ("scalar", 1-D array) or ("array", 2-D [rows, elements] array) for a column name."""


def _fail_schema(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"input schema does not match the model: {message}")


def assemble_feeds(model: Runner, mapping: Dict[str, List[str]], rows: int,
                   column: ColumnGetter) -> Dict[str, npt.NDArray[Any]]:
    """The model's feeds for one batch of `rows` rows. For each input: several scalar columns are stacked
    into [rows, columns]; one scalar column is [rows] or [rows, 1] as the model declares; one array column
    ([rows, elements], already flat) is reshaped to [rows, *the input's row shape]. Wrong column kinds, counts
    or element counts raise InvalidArgumentError naming the input and the columns."""
    feeds: Dict[str, npt.NDArray[Any]] = {}
    infos = {i.name: i for i in model.inputs}
    for name, cols in mapping.items():
        info = infos[name]
        dtype = np.dtype(info.dtype) if info.dtype is not None else np.dtype(np.float32)
        row_shape = _static_row_shape(info)
        got = [column(c) for c in cols]
        kinds = {k for k, _ in got}
        if kinds == {"scalar"}:
            if len(cols) == 1 and info.shape is not None and len(info.shape) == 1:
                feeds[name] = np.ascontiguousarray(got[0][1], dtype=dtype)
                continue
            if row_shape is not None and (len(row_shape) != 1 or row_shape[0] != len(cols)):
                raise _fail_schema(f"input {name!r} takes rows of shape {list(row_shape)} "
                                   f"({info.shape}), but {len(cols)} scalar column(s) were given: {cols}")
            x = np.empty((rows, len(cols)), dtype=dtype)
            for j, (_, values) in enumerate(got):
                x[:, j] = values
            feeds[name] = x
        elif kinds == {"array"} and len(cols) == 1:
            flat = got[0][1]
            if row_shape is None:
                raise _fail_schema(f"input {name!r} has shape {info.shape}: an array column needs every "
                                   "dimension after the first to be known")
            need = int(np.prod(row_shape, dtype=np.int64))
            if flat.shape[1] != need:
                raise _fail_schema(f"input {name!r} takes {need} elements a row (shape {list(row_shape)}), "
                                   f"column {cols[0]!r} has {flat.shape[1]}")
            feeds[name] = np.ascontiguousarray(flat, dtype=dtype).reshape((rows,) + row_shape)
        else:
            raise _fail_schema(f"input {name!r} takes either scalar columns or exactly one array column; "
                               f"got {cols} ({', '.join(k for k, _ in got)})")
    return feeds


def split_output(values: npt.NDArray[Any], spec: OutputColumn, rows: int) -> npt.NDArray[Any]:
    """An output checked against its column spec: [rows] for a scalar column, [rows, elements] otherwise."""
    if values.shape[:1] != (rows,):
        raise InvalidArgumentError(f"output {spec.name!r} has shape {list(values.shape)}, not {rows} rows")
    need = int(np.prod(spec.row_shape, dtype=np.int64)) if spec.row_shape else 1
    flat = values.reshape(rows, -1) if rows else values.reshape(0, need)
    if flat.shape[1] != need:
        raise InvalidArgumentError(f"output {spec.name!r} has {flat.shape[1]} elements a row, the output spec "
                                   f"says {need} ({list(spec.row_shape)})")
    flat = flat.astype(spec.dtype, copy=False)
    return flat[:, 0] if not spec.row_shape else flat


def slices(rows: int, batch_size: int) -> List[Tuple[int, int]]:
    """[start, stop) ranges covering `rows` rows in the fewest runs of at most `batch_size` rows, of nearly
    equal sizes (no tiny tail run: kiln.cpu may pick a different kernel for a run of a few rows, whose
    rounding then differs in the last place from the same rows in a larger run)."""
    if rows <= 0:
        return []
    count = -(-rows // batch_size)
    bounds = [rows * k // count for k in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def crash_once(marker: Optional[str]) -> None:
    """Test-only fault injection: when `marker` is a path that does not exist yet, creates it and ends this
    process at once (os._exit), as a killed worker would; later calls (the engine's retry) go on."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os._exit(17)
