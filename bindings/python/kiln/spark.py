"""Scoring Spark DataFrames with a compiled Kiln model (Documentation/ScaleOut.md).

    import kiln.spark
    scorer = kiln.spark.predict_udf("model.kiln", ["f0", "f1", "f2"])       # outputs read from the artifact
    scored = scorer.map_in_pandas(df, keep=["id"])                            # DataFrame.mapInPandas
    scored = df.select("id", scorer("f0", "f1", "f2").alias("pred"))          # a pandas_udf column
    scored = scorer.map_in_arrow(df, keep=["id"])                             # DataFrame.mapInArrow

Each executor Python worker loads the artifact once (a process-wide cache keyed by path, mtime and size) with
as many threads as a task has cores (spark.task.cpus), and converts whole Arrow/pandas batches to tensors:
scalar columns are stacked into [rows, features], one array<float> column becomes [rows, *input shape]. The
artifact is shipped with SparkContext.addFile and found with SparkFiles.get, or read from a path every
worker can read (ship=False). Errors (a corrupt artifact, columns that do not fit the model) are raised as
kiln.KilnError subclasses on the worker; Spark fails the job with their text in the driver's exception.

pyspark and pyarrow are imported only when this module's functions are called; `import kiln` never imports
them, and this module needs them only on a machine that runs Spark.
"""
from __future__ import annotations

import importlib
import os
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

from . import InvalidArgumentError, KilnError
from ._scale import (InputColumns, Loader, OutputColumn, Runner, assemble_feeds, cached_model, crash_once,
                     normalize_inputs, output_columns, resolve_inputs, slices, split_output)

__all__ = ["predict_udf", "SparkPredictor", "spark_type"]

_SPARK_TYPES = {"float32": "float", "float64": "double", "int64": "bigint", "int32": "int", "int16": "smallint",
                "int8": "tinyint", "bool": "boolean", "uint8": "smallint", "uint16": "int", "uint32": "bigint"}


def _module(name: str) -> Any:
    """Imports an optional dependency (pyspark, pyarrow, pandas) as an untyped module."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"kiln.spark needs {name.split('.')[0]} ({error}); pip install pyspark pyarrow pandas") from error


def spark_type(column: OutputColumn) -> str:
    """The Spark SQL type (DDL) of an output column: its element type, in an array<...> when a row holds
    several values (row_shape not ())."""
    base = _SPARK_TYPES.get(column.dtype.name)
    if base is None:
        raise InvalidArgumentError(f"output {column.name!r} has dtype {column.dtype}, which has no Spark type here")
    return f"array<{base}>" if column.row_shape else base


def _ddl_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _arrow_values(array: Any, name: str) -> Tuple[str, npt.NDArray[Any]]:
    """("scalar", [rows]) or ("array", [rows, elements]) from an Arrow array, without a loop over rows: an
    array column's child buffer is viewed as one flat NumPy array and reshaped."""
    pa = _module("pyarrow")
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    t = array.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if array.null_count:
            raise InvalidArgumentError(f"input schema does not match the model: column {name!r} has "
                                       f"{array.null_count} null arrays")
        rows = len(array)
        values = array.flatten()
        if pa.types.is_nested(values.type):
            raise InvalidArgumentError(f"input schema does not match the model: column {name!r} is a nested "
                                       "array; give the tensor flattened into one array<float> per row")
        if not pa.types.is_fixed_size_list(t) and rows:
            offsets = np.asarray(array.offsets)
            lengths = np.diff(offsets)
            if lengths.min() != lengths.max():
                raise InvalidArgumentError(f"input schema does not match the model: column {name!r} holds arrays "
                                           f"of different lengths ({lengths.min()} to {lengths.max()})")
        flat = values.to_numpy(zero_copy_only=False)
        return "array", flat.reshape(rows, -1) if rows else flat.reshape(0, 0)
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        return "scalar", array.to_numpy(zero_copy_only=False)
    raise InvalidArgumentError(f"input schema does not match the model: column {name!r} is {t}; a model input "
                               "takes numeric columns or one array column")


def _pandas_values(series: Any, name: str) -> Tuple[str, npt.NDArray[Any]]:
    """("scalar", [rows]) or ("array", [rows, elements]) from a pandas Series: numeric columns as they are, a
    column of arrays (what Arrow's array<...> becomes in pandas) stacked into one 2-D array by NumPy."""
    if series.dtype == object:
        values = series.to_numpy()
        if len(values) == 0:
            return "array", np.empty((0, 0), np.float32)
        if any(v is None for v in values[:1]) or series.isna().any():
            raise InvalidArgumentError(f"input schema does not match the model: column {name!r} has null arrays")
        try:
            stacked = np.stack(values)
        except ValueError as error:
            raise InvalidArgumentError(f"input schema does not match the model: column {name!r} holds arrays of "
                                       f"different shapes ({error})") from None
        if stacked.dtype == object or stacked.ndim < 2:
            raise InvalidArgumentError(f"input schema does not match the model: column {name!r} is not numeric")
        return "array", stacked.reshape(len(values), -1)
    if series.dtype.kind not in "fiub":
        raise InvalidArgumentError(f"input schema does not match the model: column {name!r} is {series.dtype}; "
                                   "a model input takes numeric columns or one array column")
    return "scalar", series.to_numpy(na_value=np.nan) if series.hasnans else series.to_numpy()


class _Scorer:
    """The picklable part of a SparkPredictor: everything an executor needs to load the model and score."""

    def __init__(self, path: str, shipped_name: Optional[str], mapping: Dict[str, List[str]],
                 outputs: List[OutputColumn], batch_size: int, threads: Optional[int], loader: Optional[Loader],
                 crash_marker: Optional[str]):
        self.path = path
        self.shipped_name = shipped_name
        self.mapping = mapping
        self.outputs = outputs
        self.batch_size = batch_size
        self.threads = threads
        self.loader = loader
        self.crash_marker = crash_marker

    def local_path(self) -> str:
        """The artifact on this machine: the SparkFiles copy when it was shipped, else the path as given."""
        if self.shipped_name:
            try:
                files = _module("pyspark").SparkFiles
                candidate: str = files.get(self.shipped_name)
                if os.path.exists(candidate):
                    return candidate
            except Exception:  # not in a Spark process (a direct call): fall back to the path
                pass
        return self.path

    def task_threads(self) -> int:
        """`threads` when given, else this task's cores (spark.task.cpus), else 1."""
        if self.threads:
            return self.threads
        try:
            context = _module("pyspark").TaskContext.get()
            if context is not None:
                return max(1, int(context.cpus()))
        except Exception:
            pass
        return 1

    def model(self) -> Tuple[Runner, Dict[str, List[str]]]:
        """This process's cached model and the resolved column mapping; load errors name the artifact."""
        path = self.local_path()
        try:
            model = cached_model(path, self.task_threads(), self.loader)
        except KilnError as error:
            raise KilnError.of(error.code, f"kiln.spark could not load {self.path}: {error.message}") from None
        return model, resolve_inputs(self.mapping, model)

    def score(self, rows: int, column: Callable[[str], Tuple[str, npt.NDArray[Any]]]) -> Dict[str, npt.NDArray[Any]]:
        """The output columns for one batch, run in slices of at most batch_size rows."""
        crash_once(self.crash_marker)
        model, mapping = self.model()
        if rows == 0:
            return {o.name: np.empty((0,) + ((int(np.prod(o.row_shape)),) if o.row_shape else ()), o.dtype)
                    for o in self.outputs}
        feeds_all = assemble_feeds(model, mapping, rows, column)
        parts: Dict[str, List[npt.NDArray[Any]]] = {o.name: [] for o in self.outputs}
        for start, stop in slices(rows, self.batch_size):
            feeds = {k: v[start:stop] for k, v in feeds_all.items()} if (start, stop) != (0, rows) else feeds_all
            try:
                result = model.run(feeds)
            except KilnError as error:
                raise KilnError.of(error.code, f"kiln.spark: running {self.path} failed: {error.message}") from None
            for o in self.outputs:
                if o.name not in result:
                    raise InvalidArgumentError(f"output_spec names {o.name!r}, the model's outputs are {sorted(result)}")
                parts[o.name].append(split_output(np.asarray(result[o.name]), o, stop - start))
        return {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in parts.items()}

    # --- the three ways Spark hands batches to Python -------------------------------------------------

    def pandas_frames(self, keep: Sequence[str]) -> Callable[[Iterable[Any]], Iterator[Any]]:
        """The function DataFrame.mapInPandas calls: pandas DataFrames in, `keep` columns plus outputs out."""
        scorer = self

        def score_frames(frames: Iterable[Any]) -> Iterator[Any]:
            pd = _module("pandas")
            for frame in frames:
                out = scorer.score(len(frame), lambda c: _pandas_values(frame[c], c))
                result = frame[list(keep)].reset_index(drop=True) if keep else pd.DataFrame(index=range(len(frame)))
                for o in scorer.outputs:
                    result[o.name] = _pandas_column(out[o.name], o)
                yield result
        return score_frames

    def arrow_batches(self, keep: Sequence[str], schema: Any) -> Callable[[Iterable[Any]], Iterator[Any]]:
        """The function DataFrame.mapInArrow calls: Arrow record batches in, `keep` columns plus outputs out."""
        scorer = self

        def score_batches(batches: Iterable[Any]) -> Iterator[Any]:
            pa = _module("pyarrow")
            for batch in batches:
                out = scorer.score(batch.num_rows, lambda c: _arrow_values(batch.column(c), c))
                arrays = [batch.column(c) for c in keep] + [_arrow_column(out[o.name], o) for o in scorer.outputs]
                names = list(keep) + [o.name for o in scorer.outputs]
                yield pa.RecordBatch.from_arrays(arrays, names=names)
        return score_batches

    def series_batches(self) -> Callable[[Iterable[Any]], Iterator[Any]]:
        """The iterator pandas_udf: tuples of Series (the input columns in order) in; one Series (one output)
        or a DataFrame (a struct of several outputs) out."""
        scorer = self
        columns = [c for cols in self.mapping.values() for c in cols]

        def score_series(batches: Iterable[Any]) -> Iterator[Any]:
            pd = _module("pandas")
            for batch in batches:
                series = batch if isinstance(batch, tuple) else (batch,)
                by_name = dict(zip(columns, series))
                rows = len(series[0])
                out = scorer.score(rows, lambda c: _pandas_values(by_name[c], c))
                if len(scorer.outputs) == 1:
                    yield _pandas_column(out[scorer.outputs[0].name], scorer.outputs[0])
                else:
                    yield pd.DataFrame({o.name: _pandas_column(out[o.name], o) for o in scorer.outputs})
        return score_series


def _arrow_column(values: npt.NDArray[Any], spec: OutputColumn) -> Any:
    """An Arrow array for an output column: a primitive array, or a list array built from the flat values and
    computed offsets (no per-row objects)."""
    pa = _module("pyarrow")
    if not spec.row_shape:
        return pa.array(values)
    rows, width = values.shape
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


def _pandas_column(values: npt.NDArray[Any], spec: OutputColumn) -> Any:
    """A pandas Series for an output column (array columns as Series of NumPy rows, made by Arrow)."""
    if not spec.row_shape:
        return _module("pandas").Series(values)
    return _arrow_column(values, spec).to_pandas()


class SparkPredictor:
    """A compiled Kiln model bound to input columns, applied to Spark DataFrames three ways:
    `map_in_pandas(df, keep)` and `map_in_arrow(df, keep)` (whole-batch functions, output columns named after
    the model's outputs) and `predictor(*columns)` (a pandas_udf column; a struct when there are several
    outputs). Made by `predict_udf`."""

    def __init__(self, scorer: _Scorer):
        self._scorer = scorer

    @property
    def outputs(self) -> List[OutputColumn]:
        """The output columns this predictor adds."""
        return list(self._scorer.outputs)

    @property
    def input_columns(self) -> List[str]:
        """The DataFrame columns that feed the model, in order."""
        return [c for cols in self._scorer.mapping.values() for c in cols]

    def output_schema(self, df: Any = None, keep: Sequence[str] = ()) -> str:
        """The DDL schema of map_in_pandas/map_in_arrow's result: the `keep` columns (typed from `df`'s schema)
        followed by the outputs."""
        fields = []
        if keep:
            if df is None:
                raise InvalidArgumentError("output_schema needs the DataFrame to type the kept columns")
            types = {f.name: f.dataType.simpleString() for f in df.schema.fields}
            for name in keep:
                if name not in types:
                    raise InvalidArgumentError(f"keep names {name!r}, which the DataFrame does not have")
                fields.append(f"{_ddl_name(name)} {types[name]}")
        fields += [f"{_ddl_name(o.name)} {spark_type(o)}" for o in self._scorer.outputs]
        return ", ".join(fields)

    def udf_return_type(self) -> str:
        """The DDL type of the pandas_udf column: the output's type, or a struct of all outputs."""
        outputs = self._scorer.outputs
        if len(outputs) == 1:
            return spark_type(outputs[0])
        return "struct<" + ", ".join(f"{_ddl_name(o.name)}: {spark_type(o)}" for o in outputs) + ">"

    def _check_columns(self, df: Any) -> None:
        """Fails on the driver, before any task starts, when the DataFrame lacks an input column."""
        have = set(df.columns)
        missing = [c for c in self.input_columns if c not in have]
        if missing:
            raise InvalidArgumentError(f"input schema does not match the model: the DataFrame has no column(s) "
                                       f"{missing} (it has {sorted(have)})")

    def map_in_pandas(self, df: Any, keep: Sequence[str] = ()) -> Any:
        """df.mapInPandas over this model: a DataFrame of the `keep` columns and one column per output."""
        self._check_columns(df)
        return df.mapInPandas(self._scorer.pandas_frames(list(keep)), self.output_schema(df, keep))

    def map_in_arrow(self, df: Any, keep: Sequence[str] = ()) -> Any:
        """df.mapInArrow over this model (Arrow batches, no pandas): like map_in_pandas."""
        self._check_columns(df)
        schema = self.output_schema(df, keep)
        return df.mapInArrow(self._scorer.arrow_batches(list(keep), schema), schema)

    def pandas_function(self, keep: Sequence[str] = ()) -> Callable[[Iterable[Any]], Iterator[Any]]:
        """The bare mapInPandas function (pair it with output_schema(df, keep)), for callers who build the
        plan themselves."""
        return self._scorer.pandas_frames(list(keep))

    def pandas_udf(self) -> Any:
        """The model as a pyspark pandas_udf (iterator of Series tuples → Series or struct DataFrame); call it
        with the input columns in input_columns order."""
        functions = _module("pyspark.sql.functions")
        with warnings.catch_warnings():  # PandasUDFType is deprecated in favour of type hints, which a
            warnings.simplefilter("ignore")  # function made at run time cannot carry as easily
            return functions.pandas_udf(self._scorer.series_batches(), self.udf_return_type(),
                                        functions.PandasUDFType.SCALAR_ITER)

    def __call__(self, *columns: Any) -> Any:
        """A Column scoring `columns` (default: input_columns) with the pandas_udf."""
        return self.pandas_udf()(*(columns or self.input_columns))

    def score_pandas(self, frame: Any) -> Dict[str, npt.NDArray[Any]]:
        """Scores a pandas DataFrame in this process exactly as a Spark worker would (no Spark needed)."""
        return self._scorer.score(len(frame), lambda c: _pandas_values(frame[c], c))


def predict_udf(artifact_path: str, input_cols: InputColumns,
                output_spec: Optional[Mapping[str, Tuple[Any, Sequence[int]]]] = None, batch_size: int = 65536,
                threads: Optional[int] = None, *, ship: bool = True, loader: Optional[Loader] = None,
                _crash_once_marker: Optional[str] = None) -> SparkPredictor:
    """A SparkPredictor scoring `input_cols` with the .kiln artifact at `artifact_path`.

    `input_cols`: the columns of a one-input model (several numeric columns → [rows, features]; one
    array<float> column → [rows, *input shape]), or {input name: column or columns}. `output_spec`:
    {output name: (dtype, row shape)} to choose or describe outputs; None reads them from the artifact (loaded
    on the driver, so a corrupt artifact fails here). `batch_size`: the most rows per model run (Spark's
    Arrow batches, spark.sql.execution.arrow.maxRecordsPerBatch, are split further). `threads`: per worker
    process; None uses spark.task.cpus. `ship`: add the artifact to the job with SparkContext.addFile (when a
    SparkContext is active) so executors read their SparkFiles copy; False reads `artifact_path` everywhere.
    `loader`: (path, threads) → model, for comparing another engine the same way (default kiln.load).
    `_crash_once_marker` is a test hook: the first batch to find that file missing creates it and kills its
    worker process."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be a positive int, not {batch_size!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InvalidArgumentError(f"threads must be a positive int or None, not {threads!r}")
    path = os.path.abspath(os.fspath(artifact_path))
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"no artifact at {path}")
    model: Optional[Runner] = None
    if output_spec is None:  # describe the outputs from the artifact: a bad one fails here, on the driver
        try:
            model = cached_model(path, threads or 1, loader)
        except KilnError as error:
            raise KilnError.of(error.code, f"kiln.spark could not load {path}: {error.message}") from None
    mapping = normalize_inputs(input_cols, [i.name for i in model.inputs] if model is not None else None)
    outputs = output_columns(model, output_spec)
    shipped = None
    if ship:
        context = _module("pyspark").SparkContext._active_spark_context
        if context is not None:
            context.addFile(path)
            shipped = os.path.basename(path)
    return SparkPredictor(_Scorer(path, shipped, mapping, outputs, batch_size, threads, loader, _crash_once_marker))
