"""Python bindings for Kiln's C API (libkiln).

    model = kiln.load("model.onnx")          # ONNX or .kiln, a path or bytes
    model.inputs, model.outputs              # [ValueInfo(name, dtype, shape)]
    model.run({"x": array})                  # {name: numpy.ndarray}
    kiln.compile("model.onnx", "model.kiln", target="host", opt_level=2)

    with kiln.load("model.kiln", memory_budget_mb=64) as model:   # close() frees it deterministically
        model.run({"x": array}, timeout_ms=50)

Errors from the library raise KilnError(code, message), or rather one of its subclasses (KilnIOError, InvalidModelError,
UnsupportedError, InvalidArgumentError, KilnRuntimeError, InvalidArtifactError, VersionMismatchError, InternalError;
RunTimeoutError and MemoryBudgetError for the run deadline and kiln.cpu's memory budget). A wheel built by
scripts/build-wheel carries libkiln and the plugins inside the package; see Documentation/Python.md.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import os
import threading
import warnings
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union)

import numpy as np
import numpy.typing as npt

# The per-call path of Model.run in C (kiln/_fastrun.c), built with the package when a C compiler and CPython's
# headers are at hand; without it (or with KILN_PYTHON_FASTRUN=0) the same path runs through ctypes.
# (`_fast`, not `_fastrun`: a package attribute named like the submodule would shadow its import.)
_fast: Optional[Any] = None
if os.environ.get("KILN_PYTHON_FASTRUN", "1") != "0":
    try:
        from . import _fastrun
        _fast = _fastrun
    except ImportError:
        pass

__all__ = ["KilnError", "KilnIOError", "InvalidModelError", "UnsupportedError", "InvalidArgumentError", "KilnRuntimeError",
           "InvalidArtifactError", "VersionMismatchError", "InternalError", "RunTimeoutError", "MemoryBudgetError",
           "ValueInfo", "PartitionEntry", "Model", "load", "compile", "version", "abi_version", "library_path",
           "backends", "register_plugin", "discover_plugins", "bundled_plugins", "read_public_key"]

ABI_MAJOR = 1
ABI_MINOR = 0

# Error codes (KILN_ERROR_* in kiln.h).
IO, INVALID_MODEL, UNSUPPORTED, INVALID_ARGUMENT, RUNTIME, INVALID_ARTIFACT, VERSION_MISMATCH, INTERNAL = range(1, 9)

#: What `Model.run` accepts for one input: a NumPy array, any object with ``__dlpack__`` (a CPU tensor of
#: PyTorch, JAX, CuPy-on-host...), or nested lists / scalars (converted to the input's dtype).
ArrayLike = Any
PathLike = Union[str, "os.PathLike[str]"]


class KilnError(Exception):
    """An error reported by libkiln (or by this package before calling it): `code` is a KILN_ERROR_* number
    (`kiln.IO` ... `kiln.INTERNAL`), `message` says what is wrong. Each code has a subclass, so callers can
    catch `kiln.InvalidArgumentError` rather than compare codes; `KilnError(code, message)` itself still works
    and `KilnError.of(code, message)` builds the matching subclass."""

    code: int
    message: str

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"

    @staticmethod
    def of(code: int, message: str) -> "KilnError":
        """The most specific KilnError subclass for `code` (and, for a run deadline or a memory budget, for the
        library's documented message), holding `message`."""
        if code == RUNTIME and "exceeded its deadline" in message:
            return RunTimeoutError(message)
        if code == UNSUPPORTED and "memory budget" in message:
            return MemoryBudgetError(message)
        cls = _ERROR_CLASSES.get(code)
        return cls(message) if cls is not None else KilnError(code, message)


class _CodedError(KilnError):
    _CODE = INTERNAL

    def __init__(self, message: str, code: Optional[int] = None):
        super().__init__(self._CODE if code is None else code, message)


class KilnIOError(_CodedError, OSError):
    """KILN_ERROR_IO: a file could not be read or written, or libkiln could not be loaded."""
    _CODE = IO


class InvalidModelError(_CodedError, ValueError):
    """KILN_ERROR_INVALID_MODEL: the ONNX model is malformed."""
    _CODE = INVALID_MODEL


class UnsupportedError(_CodedError):
    """KILN_ERROR_UNSUPPORTED: something no backend (or this package) supports."""
    _CODE = UNSUPPORTED


class MemoryBudgetError(UnsupportedError, MemoryError):
    """kiln.cpu's memory plan needs more than `memory_budget_mb` (KILN_ERROR_UNSUPPORTED; the message names the
    largest values)."""


class InvalidArgumentError(_CodedError, ValueError):
    """KILN_ERROR_INVALID_ARGUMENT: a wrong input name, dtype or shape, option, or argument."""
    _CODE = INVALID_ARGUMENT


class KilnRuntimeError(_CodedError, RuntimeError):
    """KILN_ERROR_RUNTIME: a run failed."""
    _CODE = RUNTIME


class RunTimeoutError(KilnRuntimeError, TimeoutError):
    """A run took longer than its `timeout_ms` (KILN_ERROR_RUNTIME, "run exceeded its deadline of N s")."""


class InvalidArtifactError(_CodedError, ValueError):
    """KILN_ERROR_INVALID_ARTIFACT: a corrupt or untrusted .kiln artifact (or a missing/bad signature)."""
    _CODE = INVALID_ARTIFACT


class VersionMismatchError(_CodedError):
    """KILN_ERROR_VERSION_MISMATCH: the library, artifact or plugin is of an incompatible version."""
    _CODE = VERSION_MISMATCH


class InternalError(_CodedError):
    """KILN_ERROR_INTERNAL: a bug in Kiln."""
    _CODE = INTERNAL


_ERROR_CLASSES: Dict[int, Type[_CodedError]] = {
    IO: KilnIOError, INVALID_MODEL: InvalidModelError, UNSUPPORTED: UnsupportedError, INVALID_ARGUMENT: InvalidArgumentError,
    RUNTIME: KilnRuntimeError, INVALID_ARTIFACT: InvalidArtifactError, VERSION_MISMATCH: VersionMismatchError,
    INTERNAL: InternalError,
}


# --- The C structs (kiln.h); their layouts are checked by Tests/KilnCTests/abi-layout.txt. -------------

class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _ContextOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("default_backend", ctypes.c_char_p)]


class _LoadOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_char_p), ("num_threads", ctypes.c_int32),
                ("reserved", ctypes.c_uint32),
                # ABI 1.3: kiln.cpu's memory budget, then signed artifacts
                ("memory_budget_mb", ctypes.c_uint64),
                ("trusted_keys", ctypes.POINTER(ctypes.c_uint8)), ("trusted_key_count", ctypes.c_size_t)]


class _ValueInfo(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("name", ctypes.c_char_p),
        ("dtype", _DType),
        ("elem_type", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.POINTER(ctypes.c_int64)),
        ("dim_names", ctypes.POINTER(ctypes.c_char_p)),
    ]


class _PartitionEntry(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("node", ctypes.c_char_p),
        ("op", ctypes.c_char_p),
        ("backend", ctypes.c_char_p),
        ("reason", ctypes.c_char_p),
    ]


class _RunOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("flags", ctypes.c_uint64),
                ("timeout_ms", ctypes.c_uint64)]  # ABI 1.3


class _CompileOptions(ctypes.Structure):
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("target", ctypes.c_char_p),
        ("option_keys", ctypes.POINTER(ctypes.c_char_p)),
        ("option_values", ctypes.POINTER(ctypes.c_char_p)),
        ("option_count", ctypes.c_size_t),
    ]


_S = TypeVar("_S", bound=ctypes.Structure)


def _sized(struct_type: Type[_S], **fields: Any) -> _S:
    value = struct_type(**fields)
    value.struct_size = ctypes.sizeof(struct_type)
    return value


# --- Finding and binding the library ---------------------------------------------------------------------

_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_lib_lock = threading.Lock()

#: Where a wheel built by scripts/build-wheel puts libkiln (and the shared libraries it needs) and the plugins.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_BUNDLED_LIBRARY = os.path.join(_PACKAGE_DIR, "lib", "libkiln.so.0")
_BUNDLED_PLUGINS = os.path.join(_PACKAGE_DIR, "plugins")


def _candidates() -> List[str]:
    """Where to look for libkiln, in order: KILN_LIBRARY (the only candidate when set), $KILN_PREFIX/lib, the
    copy inside this package (a wheel), then the system loader."""
    if os.environ.get("KILN_LIBRARY"):
        return [os.environ["KILN_LIBRARY"]]
    if os.environ.get("KILN_PREFIX"):
        return [os.path.join(os.environ["KILN_PREFIX"], "lib", "libkiln.so")]
    bundled = [_BUNDLED_LIBRARY] if os.path.exists(_BUNDLED_LIBRARY) else []
    return bundled + ["libkiln.so.0", "libkiln.so"]


def _bind(lib: ctypes.CDLL) -> None:
    P = ctypes.POINTER
    vp, sz, err = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
    signatures = {
        "kiln_version": ([], ctypes.c_char_p),
        "kiln_abi_version": ([], ctypes.c_uint32),
        "kiln_error_code": ([err], ctypes.c_int32),
        "kiln_error_message": ([err], ctypes.c_char_p),
        "kiln_error_free": ([err], None),
        "kiln_context_create": ([P(_ContextOptions), P(vp)], err),
        "kiln_context_free": ([vp], None),
        "kiln_context_backend_count": ([vp, P(sz)], err),
        "kiln_context_backend_name": ([vp, sz, P(ctypes.c_char_p)], err),
        "kiln_model_load_file": ([vp, ctypes.c_char_p, P(_LoadOptions), P(vp)], err),
        "kiln_model_load_memory": ([vp, ctypes.c_void_p, sz, P(_LoadOptions), P(vp)], err),
        "kiln_model_free": ([vp], None),
        "kiln_model_input_count": ([vp, P(sz)], err),
        "kiln_model_output_count": ([vp, P(sz)], err),
        "kiln_model_input": ([vp, sz, P(_ValueInfo)], err),
        "kiln_model_output": ([vp, sz, P(_ValueInfo)], err),
        "kiln_model_partition_count": ([vp, P(sz)], err),
        "kiln_model_partition_entry": ([vp, sz, P(_PartitionEntry)], err),
        "kiln_run": ([vp, P(_Tensor), sz, P(_Tensor), sz, P(_RunOptions)], err),
        "kiln_run_alloc": ([vp, P(_Tensor), sz, P(_RunOptions), P(vp)], err),
        "kiln_outputs_count": ([vp, P(sz)], err),
        "kiln_outputs_name": ([vp, sz, P(ctypes.c_char_p)], err),
        "kiln_outputs_get": ([vp, sz, P(_Tensor)], err),
        "kiln_outputs_free": ([vp], None),
        "kiln_compile_file": ([vp, ctypes.c_char_p, ctypes.c_char_p, P(_CompileOptions)], err),
        "kiln_compile_memory": ([vp, ctypes.c_void_p, sz, P(_CompileOptions), P(vp)], err),
        "kiln_blob_data": ([vp], ctypes.c_void_p),
        "kiln_blob_size": ([vp], sz),
        "kiln_blob_free": ([vp], None),
    }
    # ABI 1.1: present only in a libkiln of that version or newer (register_plugin checks).
    newer = {
        "kiln_context_register_plugin": ([vp, ctypes.c_char_p, P(sz)], err),
        "kiln_context_discover_plugins": ([vp, P(sz)], err),
    }
    signatures.update({name: sig for name, sig in newer.items() if hasattr(lib, name)})
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def _library() -> ctypes.CDLL:
    """The loaded libkiln, bound and version-checked (once)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        return _load_library()


def _load_library() -> ctypes.CDLL:
    global _lib, _lib_path
    failures = []
    for candidate in _candidates():
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as e:
            failures.append(f"{candidate}: {e}")
            continue
        _bind(lib)
        abi = lib.kiln_abi_version()
        if abi >> 16 != ABI_MAJOR or (abi & 0xFFFF) < ABI_MINOR:
            raise VersionMismatchError(f"{candidate} implements Kiln C ABI {abi >> 16}.{abi & 0xFFFF}; "
                            f"this package needs {ABI_MAJOR}.x with x >= {ABI_MINOR}")
        _lib, _lib_path = lib, candidate
        return lib
    raise KilnIOError("cannot load libkiln (set KILN_LIBRARY to the path of libkiln.so, or KILN_PREFIX to its "
                    "install prefix): " + "; ".join(failures))


def library_path() -> str:
    """The path (or loader name, e.g. "libkiln.so.0") libkiln was loaded from: `KILN_LIBRARY` when set, the
    copy inside this package when installed from a wheel."""
    _library()
    assert _lib_path is not None
    return _lib_path


def _check(error: Optional[int]) -> None:
    """Raises KilnError for a non-NULL kiln_error*, after freeing it."""
    if not error:
        return
    lib = _library()
    code = lib.kiln_error_code(error)
    message = lib.kiln_error_message(error).decode("utf-8", "replace")
    lib.kiln_error_free(error)
    raise KilnError.of(code, message)


def version() -> str:
    """Kiln's release version."""
    return str(_library().kiln_version().decode())


def abi_version() -> Tuple[int, int]:
    """The loaded library's C ABI version (major, minor)."""
    abi = _library().kiln_abi_version()
    return abi >> 16, abi & 0xFFFF


# --- Element types ---------------------------------------------------------------------------------------

_INT, _UINT, _FLOAT, _OPAQUE, _BFLOAT, _COMPLEX, _BOOL = 0, 1, 2, 3, 4, 5, 6

_TO_NUMPY = {
    (_FLOAT, 16): np.float16, (_FLOAT, 32): np.float32, (_FLOAT, 64): np.float64,
    (_INT, 8): np.int8, (_INT, 16): np.int16, (_INT, 32): np.int32, (_INT, 64): np.int64,
    (_UINT, 8): np.uint8, (_UINT, 16): np.uint16, (_UINT, 32): np.uint32, (_UINT, 64): np.uint64,
    (_BOOL, 8): np.bool_, (_COMPLEX, 64): np.complex64, (_COMPLEX, 128): np.complex128,
}
_FROM_NUMPY = {np.dtype(v): k for k, v in _TO_NUMPY.items()}


def _numpy_dtype(t: _DType) -> Optional[np.dtype]:
    """The NumPy dtype of a kiln_dtype; None for types NumPy lacks (bfloat16, float8, sub-byte, strings)."""
    if t.lanes != 1:
        return None
    found = _TO_NUMPY.get((t.code, t.bits))
    return np.dtype(found) if found is not None else None


# --- The public API --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValueInfo:
    """A model input or output: `dtype` is a NumPy dtype (None when NumPy has none, e.g. bfloat16 or a
    non-tensor), `shape` a tuple whose entries are ints, symbol names (str) or None (unknown), or None
    when even the rank is unknown."""
    name: str
    dtype: Optional[np.dtype]
    shape: Optional[Tuple[Union[int, str, None], ...]]
    elem_type: int


@dataclass(frozen=True)
class PartitionEntry:
    """One partition-report line: which backend runs `node` (an `op`) and why."""
    node: str
    op: str
    backend: str
    reason: str


class _Handle:
    """An owned C handle, freed exactly once (by `free()`, or when garbage-collected)."""

    def __init__(self, pointer: Optional[int], free_name: str):
        self._lib = _library()
        self.pointer = ctypes.c_void_p(pointer)
        self._free: Callable[[ctypes.c_void_p], None] = getattr(self._lib, free_name)

    def free(self) -> None:
        """Frees the handle now; later calls do nothing."""
        if getattr(self, "pointer", None) is not None and self.pointer.value:
            pointer, self.pointer = self.pointer, ctypes.c_void_p()
            self._free(pointer)

    def __del__(self) -> None:
        self.free()


class _Context(_Handle):
    def __init__(self, default_backend: Optional[str] = None):
        lib = _library()
        options = _sized(_ContextOptions, default_backend=default_backend.encode() if default_backend else None)
        out = ctypes.c_void_p()
        _check(lib.kiln_context_create(ctypes.byref(options), ctypes.byref(out)))
        super().__init__(out.value, "kiln_context_free")

    def backends(self) -> List[str]:
        lib, count = self._lib, ctypes.c_size_t()
        _check(lib.kiln_context_backend_count(self.pointer, ctypes.byref(count)))
        names = []
        for i in range(count.value):
            name = ctypes.c_char_p()
            _check(lib.kiln_context_backend_name(self.pointer, i, ctypes.byref(name)))
            names.append((name.value or b"").decode())
        return names


_default_context: Optional[_Context] = None
_context_lock = threading.Lock()
_bundled_plugin_backends: Dict[str, List[str]] = {}


def _context() -> _Context:
    """The context `load` and `compile` use, created on first use; the plugins inside the package (a wheel's
    `kiln/plugins/*.so`) are registered in it then."""
    global _default_context
    if _default_context is not None:
        return _default_context
    with _context_lock:
        if _default_context is None:
            context = _Context()
            _register_bundled_plugins(context)
            _default_context = context
    return _default_context


def _register_bundled_plugins(context: _Context) -> None:
    """Registers every `*.so` in the package's plugins folder, in name order. A plugin that fails is reported
    as a warning (naming it and why) rather than making the whole package unusable."""
    lib = context._lib
    if not hasattr(lib, "kiln_context_register_plugin"):
        return
    for path in sorted(glob.glob(os.path.join(_BUNDLED_PLUGINS, "*.so"))):
        before = context.backends()
        try:
            _check(lib.kiln_context_register_plugin(context.pointer, os.fsencode(path), None))
        except KilnError as error:
            warnings.warn(f"kiln: the bundled plugin {path} did not load: {error.message}", RuntimeWarning, stacklevel=3)
            continue
        _bundled_plugin_backends[path] = [name for name in context.backends() if name not in before]


def bundled_plugins() -> Dict[str, List[str]]:
    """The plugins shipped inside this package (a wheel's `kiln/plugins/`) that were registered, each with
    the backends it added: {path: [backend names]}. Empty for a package installed without plugins."""
    _context()
    return {path: list(names) for path, names in _bundled_plugin_backends.items()}


def backends() -> List[str]:
    """The names of the backends models can be loaded onto (built-in ones, then plugins')."""
    return _context().backends()


def _require(lib: ctypes.CDLL, name: str) -> None:
    if not hasattr(lib, name):
        raise VersionMismatchError(f"{name} needs libkiln ABI 1.1 or newer; this library is {abi_version()}")


def register_plugin(path: PathLike) -> List[str]:
    """Loads the vendor backend plugin at `path` into the context that `load` and `compile` use, and returns
    the names of the backends it added (empty when they were registered already). Those backends can then be
    named by `compile(..., backends="name")` and run artifacts whose partitions use them."""
    context = _context()
    lib = context._lib
    _require(lib, "kiln_context_register_plugin")
    before = context.backends()
    _check(lib.kiln_context_register_plugin(context.pointer, os.fsencode(path), None))
    return [name for name in context.backends() if name not in before]


def discover_plugins() -> List[str]:
    """Registers every plugin the KILN_PLUGIN_PATH environment variable names (':'-separated files and
    folders) in the context that `load` and `compile` use; returns the names of the backends added. Raises
    KilnError listing the plugins that failed (the others stay registered)."""
    context = _context()
    lib = context._lib
    _require(lib, "kiln_context_discover_plugins")
    before = context.backends()
    _check(lib.kiln_context_discover_plugins(context.pointer, None))
    return [name for name in context.backends() if name not in before]


def _as_array(value: ArrayLike, expected: Optional[np.dtype[Any]]) -> npt.NDArray[Any]:
    """`value` as a NumPy array: DLPack producers and arrays are viewed without a copy (their dtype is kept,
    so a mismatch is reported by Kiln); other values (lists, scalars) are converted to the expected dtype."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__"):
        try:
            return np.from_dlpack(value)
        except (TypeError, BufferError, RuntimeError) as error:
            raise InvalidArgumentError(f"cannot read a DLPack tensor ({type(value).__name__}) on the CPU: {error}") from None
    try:
        return np.asarray(value, dtype=expected)
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"cannot convert a {type(value).__name__} to an array of {expected}: {error}") from None


def _tensor(array: npt.NDArray[Any], keep: List[Any]) -> _Tensor:
    """A kiln_tensor viewing `array` (no copy). Buffers it points to are appended to `keep`.
    Kept lean (it runs on every call; at batch 1 the binding's own work is most of a small model's latency):
    a C-contiguous array passes NULL strides (compact row-major), and the nested structs are filled in place."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    key = _FROM_NUMPY.get(array.dtype)
    if key is None:
        raise InvalidArgumentError(f"arrays of dtype {array.dtype} cannot cross the Kiln C ABI")
    itemsize = array.dtype.itemsize
    contiguous = array.flags.c_contiguous
    if not contiguous and any(s % itemsize for s in array.strides):
        array = np.ascontiguousarray(array)
        contiguous = True
    ndim = array.ndim
    shape = (ctypes.c_int64 * max(ndim, 1))(*array.shape)
    keep.append(array)
    keep.append(shape)
    t = _Tensor()
    if not contiguous:
        strides = (ctypes.c_int64 * max(ndim, 1))(*[s // itemsize for s in array.strides])
        keep.append(strides)
        t.strides = strides
    t.data = array.ctypes.data if array.size else None
    t.device.device_type = 1
    t.ndim = ndim
    t.dtype.code = key[0]
    t.dtype.bits = key[1]
    t.dtype.lanes = 1
    t.shape = shape
    return t


def _milliseconds(name: str, value: Optional[float]) -> int:
    """A non-negative whole number of milliseconds (0 = none) from an int or float option, else InvalidArgumentError."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative number of milliseconds or None, not {value!r}")
    if value == 0:
        return 0
    return max(1, int(round(value)))


def _address(array: npt.NDArray[Any]) -> int:
    """The address of a C-contiguous array's first element (a writable array's buffer export is ~3× cheaper
    than `array.ctypes.data`)."""
    if array.flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))  # type: ignore[arg-type]  # (ndarray is a buffer)
    return int(array.ctypes.data)


def _notify_all(condition: threading.Condition) -> None:
    """Wakes Model.close() waiting on `condition` (kiln._fastrun's gate calls it when its last run ends)."""
    with condition:
        condition.notify_all()


_addressof = ctypes.addressof
# Takes any object with a writable buffer (numpy arrays included, which typeshed's `Buffer` does not name).
_c_char_from_buffer: Callable[[Any], Any] = ctypes.c_char.from_buffer
_empty = np.empty

_RUN_BY_ADDRESS = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                   ctypes.c_size_t, ctypes.c_void_p)


class _RunPlan:
    """Prepared kiln_tensor arrays for one input signature (shapes and dtypes) of a model: the inputs' and
    outputs' dtypes and shapes filled in, data pointers set per call (Model._run_planned). `fast` is the same
    plan in C (a kiln._fastrun.Plan) when that module is built, else None."""

    def __init__(self, inputs: Any, outputs: Any, output_specs: List[Tuple[Tuple[int, ...], np.dtype[Any]]],
                 keep: List[Any], usable: bool):
        self.usable = usable  # False: this signature takes the general path
        self.fast: Optional[Any] = None
        self.inputs = inputs
        self.outputs = outputs
        self.input_address = ctypes.addressof(inputs)
        self.output_address = ctypes.addressof(outputs)
        self.output_specs = output_specs
        # Each tensor's `data` field as a c_void_p of its own: setting its value is cheaper than setting a field
        # of an array element (which makes a new element object each time).
        self.input_data = [ctypes.c_void_p.from_buffer(inputs, k * ctypes.sizeof(_Tensor) + _Tensor.data.offset)
                           for k in range(len(inputs))]
        self.output_data = [ctypes.c_void_p.from_buffer(outputs, k * ctypes.sizeof(_Tensor) + _Tensor.data.offset)
                            for k in range(len(output_specs))]
        self._keep = keep  # the shape arrays the tensors point to

    @staticmethod
    def make(arrays: List[npt.NDArray[Any]], results: List[npt.NDArray[Any]]) -> "_RunPlan":
        keep: List[Any] = []
        inputs = (_Tensor * max(len(arrays), 1))()
        for k, a in enumerate(arrays):
            inputs[k] = _tensor(a, keep)
        outputs = (_Tensor * max(len(results), 1))()
        usable = all(r.size and r.dtype.isnative and r.dtype in _FROM_NUMPY for r in results)
        for k, r in enumerate(results):
            if usable:
                outputs[k] = _tensor(r, keep)
        # Keep the shape buffers the tensors point to, not the arrays of the call that made the plan.
        buffers = [o for o in keep if not isinstance(o, np.ndarray)]
        return _RunPlan(inputs, outputs, [(r.shape, r.dtype) for r in results], buffers, usable)


class Model:
    """A loaded model: `inputs`, `outputs`, `partition`, and `run`.

    A model owns native memory; `close()` (or leaving a ``with`` block) frees it at once, otherwise it is freed
    when garbage-collected. `run` may be called from many threads at once (the GIL is released while libkiln
    runs); `close()` waits for runs in progress to finish, and a run after `close()` raises InvalidArgumentError."""

    inputs: List["ValueInfo"]
    outputs: List["ValueInfo"]

    def __init__(self, handle: _Handle, context: _Context):
        self._handle = handle
        self._context = context  # kept alive for as long as the model (not required by libkiln, but cheap)
        self._active = 0
        self._closed = False
        self._lock = threading.Lock()  # guards _active and _closed; plain acquire/release on the per-call path
        self._state = threading.Condition(self._lock)  # close() waits on it for runs in progress
        lib = handle._lib
        self.inputs = self._describe(lib.kiln_model_input_count, lib.kiln_model_input)
        self.outputs = self._describe(lib.kiln_model_output_count, lib.kiln_model_output)
        self._input_names = tuple(i.name for i in self.inputs)
        self._output_names = tuple(o.name for o in self.outputs)
        self._plans = threading.local()  # per thread: input signature -> _RunPlan (see _run_planned)
        # kiln_run taking plain addresses: converting integers is cheaper than checking struct pointer types.
        run_address = ctypes.cast(lib.kiln_run, ctypes.c_void_p).value
        if not run_address:
            raise VersionMismatchError("this libkiln has no kiln_run")
        self._run_address = _RUN_BY_ADDRESS(run_address)
        # Runs through kiln._fastrun are counted by this gate (with the GIL held) rather than by _active.
        self._gate = _fast.Gate(functools.partial(_notify_all, self._state)) if _fast is not None else None

    def _describe(self, count_function: Any, info_function: Any) -> List["ValueInfo"]:
        count = ctypes.c_size_t()
        _check(count_function(self._handle.pointer, ctypes.byref(count)))
        values = []
        for i in range(count.value):
            info = _sized(_ValueInfo)
            _check(info_function(self._handle.pointer, i, ctypes.byref(info)))
            shape: Optional[Tuple[Union[int, str, None], ...]]
            if info.rank < 0:
                shape = None
            else:
                shape = tuple(
                    info.dim_names[d].decode() if info.dim_names[d] else (None if info.dims[d] < 0 else int(info.dims[d]))
                    for d in range(info.rank))
            dtype = _numpy_dtype(info.dtype) if info.elem_type else None
            values.append(ValueInfo(info.name.decode(), dtype, shape, info.elem_type))
        return values

    # --- lifetime -----------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def close(self) -> None:
        """Frees the model's native memory now (after runs in progress on other threads finish). Idempotent."""
        with self._state:
            self._closed = True
            gate = self._gate
            if gate is not None:
                gate.close()
            while self._active or (gate is not None and gate.active):
                self._state.wait()
            self._handle.free()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _enter_call(self) -> None:
        self._lock.acquire()
        try:
            if self._closed:
                raise InvalidArgumentError("the model is closed")
            self._active += 1
        finally:
            self._lock.release()

    def _leave_call(self) -> None:
        self._lock.acquire()
        self._active -= 1
        if not self._active and self._closed:
            self._state.notify_all()
        self._lock.release()

    # --- queries and runs ---------------------------------------------------------------------------------

    @property
    def partition(self) -> List["PartitionEntry"]:
        """The partition report: which backend runs each node, and why."""
        self._enter_call()
        try:
            lib, count = self._handle._lib, ctypes.c_size_t()
            _check(lib.kiln_model_partition_count(self._handle.pointer, ctypes.byref(count)))
            entries = []
            for i in range(count.value):
                e = _sized(_PartitionEntry)
                _check(lib.kiln_model_partition_entry(self._handle.pointer, i, ctypes.byref(e)))
                entries.append(PartitionEntry(e.node.decode(), e.op.decode(), e.backend.decode(), e.reason.decode()))
            return entries
        finally:
            self._leave_call()

    def run(self, feeds: Mapping[str, ArrayLike], *, timeout_ms: Optional[float] = None) -> Dict[str, npt.NDArray[Any]]:
        """Runs the model. `feeds` maps every input name to an array (or a DLPack producer, or a list);
        the result maps every output name, in output order, to a new NumPy array (a DLPack producer itself:
        `torch.from_dlpack(out["y"])` views it without a copy).

        `timeout_ms` (libkiln ABI 1.3) is the longest the run may take; the built-in backends check it between
        steps and a run past it raises RunTimeoutError. None or 0: no limit.
        The GIL is released while libkiln runs, so other Python threads (including other runs) proceed."""
        if timeout_ms is None:
            fast = getattr(self._plans, "fast", None)  # this thread's last plan in C, when kiln._fastrun is built
            if fast is not None:
                result = fast.run(feeds)
                if result is not None:
                    return result  # type: ignore[no-any-return]
            planned = self._run_planned(feeds)
            if planned is not None:
                return planned
        if not isinstance(feeds, Mapping):
            raise InvalidArgumentError(f"feeds must be a mapping of input name to array, not {type(feeds).__name__}")
        deadline = _milliseconds("timeout_ms", timeout_ms)
        unknown = sorted(set(feeds) - {i.name for i in self.inputs})
        if unknown:
            raise InvalidArgumentError(f"the model has no input named {unknown[0]!r} "
                                       f"(inputs: {', '.join(i.name for i in self.inputs)})")
        keep: List[Any] = []
        tensors = (_Tensor * max(len(self.inputs), 1))()
        for k, info in enumerate(self.inputs):
            if info.name not in feeds:
                raise InvalidArgumentError(f"input {info.name!r} is missing (dtype {info.dtype}, shape {info.shape})")
            tensors[k] = _tensor(_as_array(feeds[info.name], info.dtype), keep)
        options = None
        if deadline:
            if abi_version() < (1, 3):
                raise VersionMismatchError(f"timeout_ms needs libkiln ABI 1.3 or newer; this library is {abi_version()}")
            options = ctypes.byref(_sized(_RunOptions, timeout_ms=deadline))
        self._enter_call()
        try:
            return self._run(tensors, options)
        finally:
            self._leave_call()

    def _run_planned(self, feeds: Any) -> Optional[Dict[str, npt.NDArray[Any]]]:
        """The per-call fast path, or None to take the general one. When every feed is a C-contiguous NumPy
        array of native byte order and the inputs' shapes and dtypes were seen before on this thread, the
        outputs' shapes are known: the call fills two prepared kiln_tensor arrays with data pointers and runs
        kiln_run into new NumPy arrays, with no per-call ctypes structures, shape arrays or output copies (at
        batch 1 those were most of a small model's latency). kiln_run checks every output's shape before it
        writes; a model whose output shapes depend on the input values makes the plan fail, and that signature
        then takes the general path."""
        if type(feeds) is not dict:
            return None  # other mappings, and anything else, take the general path (and its typed errors)
        names = self._input_names
        if len(feeds) != len(names):
            return None
        try:
            arrays = [feeds[name] for name in names]
        except KeyError:
            return None
        signature = []
        addresses = []
        for a in arrays:
            if type(a) is not np.ndarray:
                return None
            flags, dtype = a.flags, a.dtype
            if not flags.c_contiguous or not dtype.isnative or not a.size:
                return None
            signature.append((a.shape, dtype.num))
            # A writable array's buffer export is ~3x cheaper than `array.ctypes.data`.
            addresses.append(_addressof(_c_char_from_buffer(a)) if flags.writeable else int(a.ctypes.data))
        key = tuple(signature)
        plans = getattr(self._plans, "plans", None)
        if plans is None:
            plans = self._plans.plans = {}
        plan = plans.get(key)
        if plan is None:
            if len(plans) >= 16:
                plans.clear()
            # Learn the output shapes from one general run; the plan serves the next calls.
            result = self.run(dict(zip(names, arrays)), timeout_ms=0)
            plan = plans[key] = _RunPlan.make(arrays, [result[name] for name in self._output_names])
            if plan.usable and self._gate is not None:
                plan.fast = self._fast_plan(arrays, [result[name] for name in self._output_names])
            if plan.fast is not None:
                self._plans.fast = plan.fast
            return result
        if not plan.usable:
            return None  # output shapes vary with the input values
        if plan.fast is not None:
            self._plans.fast = plan.fast
            if not plan.fast.usable:
                return None
            fast_result: Optional[Dict[str, npt.NDArray[Any]]] = plan.fast.run(feeds)
            return fast_result  # None: the run failed, and the general path reports why
        # The data addresses, written straight into the prepared tensors.
        for slot, address in zip(plan.input_data, addresses):
            slot.value = address
        results = [_empty(shape, dtype) for shape, dtype in plan.output_specs]
        for slot, o in zip(plan.output_data, results):
            slot.value = _addressof(_c_char_from_buffer(o))
        lock = self._lock
        lock.acquire()
        if self._closed:
            lock.release()
            raise InvalidArgumentError("the model is closed")
        self._active += 1
        lock.release()
        try:
            error = self._run_address(self._handle.pointer.value, plan.input_address, len(arrays), plan.output_address,
                                      len(results), None)
        finally:
            self._leave_call()
        if error:
            self._handle._lib.kiln_error_free(error)
            plan.usable = False  # the general path runs again and reports any real error
            return None
        output_names = self._output_names
        if len(results) == 1:
            return {output_names[0]: results[0]}
        return dict(zip(output_names, results))

    def _fast_plan(self, arrays: List[npt.NDArray[Any]], results: List[npt.NDArray[Any]]) -> Optional[Any]:
        """The kiln._fastrun.Plan for these feeds (C-contiguous, native, non-empty arrays) and the outputs a run
        on them gave, or None when the C path does not take them (more than 16 values, or rank above 8)."""
        assert _fast is not None and self._gate is not None
        if len(arrays) > 16 or not 1 <= len(results) <= 16 or any(a.ndim > 8 for a in arrays + results):
            return None
        inputs = []
        for name, a in zip(self._input_names, arrays):
            code, bits = _FROM_NUMPY[a.dtype]
            inputs.append((name, a.shape, a.data.format, a.itemsize, code, bits))
        outputs = [(name, r.shape, r.dtype) + _FROM_NUMPY[r.dtype] for name, r in zip(self._output_names, results)]
        lib = self._handle._lib
        return _fast.Plan(ctypes.cast(lib.kiln_run, ctypes.c_void_p).value,
                          ctypes.cast(lib.kiln_error_free, ctypes.c_void_p).value, self._handle.pointer.value,
                          self._handle, self._gate, np.ndarray, np.empty, inputs, outputs)

    def _run(self, tensors: Any, options: Any) -> Dict[str, npt.NDArray[Any]]:
        lib = self._handle._lib
        outputs = ctypes.c_void_p()
        # A plain ctypes.CDLL call: the GIL is released for its duration.
        _check(lib.kiln_run_alloc(self._handle.pointer, tensors, len(self.inputs), options, ctypes.byref(outputs)))
        try:
            result: Dict[str, npt.NDArray[Any]] = {}
            for k, info in enumerate(self.outputs):
                t = _Tensor()
                _check(lib.kiln_outputs_get(outputs, k, ctypes.byref(t)))
                dtype = _numpy_dtype(t.dtype)
                if dtype is None:
                    raise UnsupportedError(f"output {info.name!r} has an element type NumPy cannot hold "
                                           f"(code {t.dtype.code}, {t.dtype.bits} bits)")
                shape = tuple(t.shape[d] for d in range(t.ndim))
                array = np.empty(shape, dtype)
                if array.size:
                    # One copy straight into the new array (cheaper per call than a ctypes buffer view).
                    ctypes.memmove(array.ctypes.data, t.data, array.nbytes)
                result[info.name] = array
            return result
        finally:
            lib.kiln_outputs_free(outputs)

    def __repr__(self) -> str:
        def sig(values: Sequence[ValueInfo]) -> str:
            return ", ".join(f"{v.name}: {v.dtype}{list(v.shape) if v.shape is not None else '[?]'}" for v in values)
        state = " closed" if self._closed else ""
        return f"<kiln.Model{state} ({sig(self.inputs)}) -> ({sig(self.outputs)})>"


_PUBLIC_KEY_HEADER = "kiln-ed25519-public-key-v1"


def read_public_key(path: PathLike) -> bytes:
    """The 32 raw bytes of the Ed25519 public key in a `kiln keygen` KEY.pub file."""
    with open(path, "rb") as f:
        lines = [line.strip() for line in f.read(65536).decode("utf-8", errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines or lines[0] != _PUBLIC_KEY_HEADER:
        raise InvalidArgumentError(f"'{os.fsdecode(path)}' is not a Kiln public key file (its first line is not '{_PUBLIC_KEY_HEADER}')")
    try:
        key = bytes.fromhex(lines[1]) if len(lines) == 2 else b""
    except ValueError:
        key = b""
    if len(key) != 32:
        raise InvalidArgumentError(f"'{os.fsdecode(path)}': expected one line of 64 hex digits after '{_PUBLIC_KEY_HEADER}'")
    return key


def _trusted_key_bytes(trusted_keys: Iterable[Union[PathLike, bytes]]) -> bytes:
    """trusted_keys (paths of KEY.pub files or raw 32-byte keys) as the C ABI's back-to-back key bytes."""
    if isinstance(trusted_keys, (str, bytes, bytearray, os.PathLike)):
        raise InvalidArgumentError("trusted_keys must be a list of public key files or 32-byte keys, not a single value")
    out = b""
    for key in trusted_keys:
        raw = bytes(key) if isinstance(key, (bytes, bytearray, memoryview)) else read_public_key(key)
        if len(raw) != 32:
            raise InvalidArgumentError(f"a trusted key is 32 bytes (an Ed25519 public key), not {len(raw)}")
        out += raw
    return out


def load(path_or_bytes: Union[PathLike, bytes, bytearray, memoryview], threads: Optional[int] = None,
         backend: Optional[str] = None, trusted_keys: Optional[Sequence[Union[PathLike, bytes]]] = None, *,
         memory_budget_mb: Optional[int] = None) -> Model:
    """Loads an ONNX model or a .kiln artifact from a path or from bytes (which are copied).
    `threads` configures the backends that take a thread count (None: their default). With `backend` None, an
    ONNX model is split among the host target's backends (kiln.cpu, with kiln.reference only for the nodes it
    cannot run) and an artifact runs on the backends it was compiled for; a `backend` runs a whole ONNX model
    on that one backend (kiln.reference: the oracle).
    With `trusted_keys` (paths of `kiln keygen` KEY.pub files, or raw 32-byte keys), only a .kiln artifact with a
    valid signature by one of them loads: a missing, bad or untrusted signature (or an ONNX model) raises
    InvalidArtifactError before anything reaches a backend (libkiln ABI 1.3 or newer).
    `memory_budget_mb` (ABI 1.3) caps kiln.cpu's memory plan: a model whose plan needs more raises
    MemoryBudgetError naming its largest values. None or 0: no budget.
    The model is a context manager: ``with kiln.load(path) as model: ...`` frees it on exit."""
    context = _context()
    lib = context._lib
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InvalidArgumentError(f"threads must be a positive int or None, not {threads!r}")
    if memory_budget_mb is not None and (isinstance(memory_budget_mb, bool) or not isinstance(memory_budget_mb, int)
                                         or memory_budget_mb < 0):
        raise InvalidArgumentError(f"memory_budget_mb must be a non-negative int (megabytes) or None, not {memory_budget_mb!r}")
    keys = _trusted_key_bytes(trusted_keys) if trusted_keys is not None else b""
    if trusted_keys is not None and not keys:
        raise InvalidArgumentError("trusted_keys is empty: give at least one key, or None to require no signature")
    if (keys or memory_budget_mb) and abi_version() < (1, 3):
        what = "trusted_keys" if keys else "memory_budget_mb"
        raise VersionMismatchError(f"{what} needs libkiln ABI 1.3 or newer; this library is {abi_version()}")
    key_buffer = (ctypes.c_uint8 * max(len(keys), 1)).from_buffer_copy(keys or b"\0")
    options = _sized(_LoadOptions, backend=backend.encode() if backend else None, num_threads=threads or 0,
                     memory_budget_mb=memory_budget_mb or 0,
                     trusted_keys=ctypes.cast(key_buffer, ctypes.POINTER(ctypes.c_uint8)) if keys else None,
                     trusted_key_count=len(keys) // 32)
    out = ctypes.c_void_p()
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        _check(lib.kiln_model_load_memory(context.pointer, data, len(data), ctypes.byref(options), ctypes.byref(out)))
    elif isinstance(path_or_bytes, (str, os.PathLike)):
        path = os.fsencode(path_or_bytes)
        _check(lib.kiln_model_load_file(context.pointer, path, ctypes.byref(options), ctypes.byref(out)))
    else:
        raise InvalidArgumentError(f"load takes a path or bytes, not {type(path_or_bytes).__name__}")
    return Model(_Handle(out.value, "kiln_model_free"), context)


def compile(model_path: PathLike, output_path: PathLike, target: str = "host",
            input_shapes: Optional[Mapping[str, Sequence[int]]] = None, **options: Any) -> None:
    """Compiles the ONNX model at `model_path` into a .kiln artifact at `output_path`, by default for this
    machine (`target="host"`: kiln.cpu, with kiln.reference only for what it cannot run). `options` become the
    C API's key/value pairs (values converted with str(); True/False become "true"/"false"; a list or tuple,
    e.g. backends=["sample.bytecode", "kiln.cpu"], becomes a comma-separated value). Post-training int8
    quantization: quantize="int8", calibration=DIR and the other settings of `kiln compile`'s flags, spelled
    with "_" for "-" (calibration_method="entropy", keep_float="MatMul"; Documentation/Quantization.md).
    `input_shapes` ({"images": (1, 3, 224, 224)}) fixes those inputs' symbolic dims, as `kiln compile
    --input-shape` does: the artifact then takes exactly those shapes, and shape-specializing targets
    (target="opencl", accelerators) can run the whole model."""
    context = _context()
    lib = context._lib
    options = dict(options)
    for name, dims in (input_shapes or {}).items():
        options[f"input_shape.{name}"] = ",".join(str(int(d)) for d in dims)

    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return ",".join(str(item) for item in v)
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    keys = (ctypes.c_char_p * max(len(options), 1))(*[k.encode() for k in options])
    values = (ctypes.c_char_p * max(len(options), 1))(*[text(v).encode() for v in options.values()])
    c_options = _sized(_CompileOptions, target=target.encode() if target else None, option_keys=keys,
                       option_values=values, option_count=len(options))
    _check(lib.kiln_compile_file(context.pointer, os.fsencode(model_path), os.fsencode(output_path), ctypes.byref(c_options)))
