"""A DLR-compatible surface over Kiln, for code written against Neo-AI DLR's `dlr.DLRModel`.

    from kiln.dlr import DLRModel
    model = DLRModel("model_dir_or_file.kiln", "cpu", 0)
    outputs = model.run({"data": x})       # a list of NumPy arrays, in output order
    outputs = model.run(x)                 # a single array feeds the first input

Migration: replace ``import dlr`` / ``dlr.DLRModel`` by ``from kiln.dlr import DLRModel`` and point it at a
.kiln artifact compiled with ``kiln compile`` (or a folder holding exactly one). What DLR documents is kept:
names and dtypes as lists of strings, the version as a string, `get_input` returning the value last given for
an input, ValueError for a bad input name or a bad `model_path`. What differs: only the CPU device exists
(``dev_type="cpu"``, ``dev_id=0``); inputs keep the model's dtypes (DLR converts everything to its own input
dtype, and so does this class: values are converted to the input's dtype before the run); an ONNX file also
loads (it is compiled in memory). See Documentation/Python.md.
"""
from __future__ import annotations

import glob
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import INVALID_ARGUMENT, KilnError, Model, load, version

__all__ = ["DLRModel", "DLRError"]

_MODEL_SUFFIXES = (".kiln", ".onnx")


class DLRError(KilnError, ValueError):
    """What DLRModel raises for a bad argument (a missing or ambiguous model path, an unknown device, a wrong
    input name): a KilnError with code INVALID_ARGUMENT that is also a ValueError, as DLR raises ValueError for
    these. Errors from the library itself are raised as the usual KilnError subclasses."""

    def __init__(self, message: str):
        super().__init__(INVALID_ARGUMENT, message)


def _find_model(model_path: Union[str, "os.PathLike[str]"]) -> str:
    """The model file `model_path` names: a .kiln (or .onnx) file, or a folder holding exactly one .kiln file
    (else exactly one .onnx file)."""
    path = os.fspath(model_path)
    if not os.path.exists(path):
        raise DLRError(f"model_path {path} doesn't exist")
    if os.path.isfile(path):
        return path
    for suffix in _MODEL_SUFFIXES:
        found = sorted(glob.glob(os.path.join(glob.escape(path), "*" + suffix)))
        if len(found) > 1:
            raise DLRError(f"multiple {suffix} files found under {path}: {', '.join(os.path.basename(f) for f in found)}")
        if found:
            return found[0]
    raise DLRError(f"no .kiln (or .onnx) model found under {path}")


def _dtype_name(dtype: Optional[np.dtype[Any]]) -> str:
    return str(dtype) if dtype is not None else "unknown"


class DLRModel:
    """A model loaded the way DLR's `DLRModel(model_path, dev_type, dev_id)` loads one, run by Kiln.

    `model_path` is a .kiln artifact (or an ONNX model), or a folder holding exactly one. `dev_type` must be
    "cpu" (or None) and `dev_id` 0 (or None): Kiln's C API runs on the host. Keyword arguments `threads` and
    `memory_budget_mb` are passed to `kiln.load`. The model can be used as a context manager; `close()`
    frees it."""

    def __init__(self, model_path: Union[str, "os.PathLike[str]"], dev_type: Optional[str] = "cpu",
                 dev_id: Optional[int] = 0, *, threads: Optional[int] = None, memory_budget_mb: Optional[int] = None):
        if dev_type is None:
            dev_type = "cpu"
        if dev_id is None:
            dev_id = 0
        if dev_type not in ("cpu", "gpu", "opencl"):
            raise DLRError(f"dev_type must be 'cpu', 'gpu' or 'opencl', not {dev_type!r}")
        if dev_type != "cpu":
            raise DLRError(f"dev_type {dev_type!r} is not available: Kiln's Python API runs models on the CPU")
        if isinstance(dev_id, bool) or not isinstance(dev_id, int) or dev_id != 0:
            raise DLRError(f"dev_id must be 0 (there is one CPU device), not {dev_id!r}")
        self.model_path = _find_model(model_path)
        self._model: Model = load(self.model_path, threads=threads, memory_budget_mb=memory_budget_mb)
        self._input_names = [i.name for i in self._model.inputs]
        self._last_inputs: Dict[str, npt.NDArray[Any]] = {}

    # --- DLR's queries ------------------------------------------------------------------------------------

    def get_input_names(self) -> List[str]:
        """The names of the inputs the caller supplies, in the model's order."""
        return list(self._input_names)

    def get_output_names(self) -> List[str]:
        """The names of the outputs, in the order `run` returns them."""
        return [o.name for o in self._model.outputs]

    def get_input_dtypes(self) -> List[str]:
        """The inputs' element types as NumPy dtype names ("float32", "int64", ...; "unknown" for a type NumPy
        lacks), in input order."""
        return [_dtype_name(i.dtype) for i in self._model.inputs]

    def get_output_dtypes(self) -> List[str]:
        """The outputs' element types as NumPy dtype names, in output order."""
        return [_dtype_name(o.dtype) for o in self._model.outputs]

    def get_input_name(self, index: int) -> str:
        """The name of input `index`."""
        return self._input_names[self._index(index, len(self._input_names), "input")]

    def get_output_name(self, index: int) -> str:
        """The name of output `index`."""
        return self.get_output_names()[self._index(index, len(self._model.outputs), "output")]

    def get_input_dtype(self, index: int) -> str:
        """The dtype name of input `index`."""
        return self.get_input_dtypes()[self._index(index, len(self._input_names), "input")]

    def get_output_dtype(self, index: int) -> str:
        """The dtype name of output `index`."""
        return self.get_output_dtypes()[self._index(index, len(self._model.outputs), "output")]

    def get_version(self) -> str:
        """The version of the runtime (Kiln's release version, e.g. "0.1.0")."""
        return version()

    def has_metadata(self) -> bool:
        """Whether output names are known: always, since a Kiln model names its outputs."""
        return True

    def get_input(self, name: str, shape: Optional[Sequence[int]] = None) -> npt.NDArray[Any]:
        """The value last given for input `name` (by `run`), as the model received it (converted to the input's
        dtype), reshaped to `shape` when given. Raises DLRError for an unknown name, or when no value was given
        yet and `shape` is None."""
        if name not in self._input_names:
            raise DLRError(f"{name} is not a valid input name (inputs: {', '.join(self._input_names)})")
        if name not in self._last_inputs:
            if shape is None:
                raise DLRError(f"input {name} was never set (run was not called with it), so its shape is unknown: "
                               "give shape explicitly")
            info = self._model.inputs[self._input_names.index(name)]
            return np.zeros(tuple(shape), dtype=info.dtype or np.float32)
        value = self._last_inputs[name]
        return value.reshape(tuple(shape)) if shape is not None else value.copy()

    # --- running ------------------------------------------------------------------------------------------

    def run(self, input_values: Union[Mapping[str, Any], npt.NDArray[Any], np.generic]) -> List[npt.NDArray[Any]]:
        """Runs the model and returns its outputs as a list of NumPy arrays, in output order.

        `input_values` is a dict of input name -> array, or a single array for the first input (a model with
        one input, as DLR takes it). Values are converted to each input's dtype. An unknown name, a missing
        input, or anything else raises DLRError (a ValueError); a wrong shape raises kiln.InvalidArgumentError."""
        if isinstance(input_values, (np.ndarray, np.generic)) or hasattr(input_values, "__dlpack__"):
            if not self._input_names:
                raise DLRError("the model takes no inputs, but an array was given")
            feeds: Dict[str, Any] = {self._input_names[0]: input_values}
        elif isinstance(input_values, Mapping):
            feeds = dict(input_values)
            for key in feeds:
                if key not in self._input_names:
                    raise DLRError(f"{key} is not a valid input name (inputs: {', '.join(self._input_names)})")
        else:
            raise DLRError("input_values must be a dict of input name -> numpy.ndarray, or a single numpy.ndarray "
                           f"for the first input, not {type(input_values).__name__}")
        missing = [name for name in self._input_names if name not in feeds]
        if missing:
            raise DLRError(f"input {missing[0]} is missing (inputs: {', '.join(self._input_names)})")
        converted: Dict[str, npt.NDArray[Any]] = {}
        for info in self._model.inputs:
            value = feeds[info.name]
            if hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray):
                value = np.from_dlpack(value)
            try:
                array = np.asarray(value, dtype=info.dtype) if info.dtype is not None else np.asarray(value)
            except (TypeError, ValueError) as error:
                raise DLRError(f"input {info.name}: cannot convert to {info.dtype}: {error}") from None
            converted[info.name] = array
        outputs = self._model.run(converted)
        self._last_inputs.update(converted)
        return [outputs[o.name] for o in self._model.outputs]

    # --- lifetime -----------------------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the model now (see kiln.Model.close)."""
        self._model.close()

    def __enter__(self) -> "DLRModel":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @staticmethod
    def _index(index: int, count: int, what: str) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise DLRError(f"{what} index is expected between 0 and {count - 1}, but got {index!r}")
        return index

