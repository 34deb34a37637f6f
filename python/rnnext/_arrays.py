"""Array helpers of the Python layer: every array argument read into NumPy
(any producer, any real dtype), casts the way the kernels cast, and the memory
check made before a buffer that cannot exist is computed."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Tuple, TypeVar, Union

import numpy as np


# DLPack's device code of the host's memory (DLDeviceType kDLCPU).
_DLPACK_CPU = 1


_T = TypeVar("_T")


def as_array(value: Any, name: str, float_dtype: Any = None) -> np.ndarray:
    """``value`` as a NumPy array, sharing its memory where NumPy can.

    Reads NumPy arrays, PyTorch tensors (``requires_grad`` or not: the data
    are read, the graph is not), anything with ``__array__`` (JAX arrays,
    array-likes) or only ``__dlpack__``, and Python sequences and scalars.
    bfloat16 and the other ``ml_dtypes`` floats, which the kernels cannot
    read, become ``float_dtype`` (float32 when None) in one conversion;
    float16 stays as it is (the kernels' cast reads it in the same pass that
    makes it contiguous). A producer that cannot hand its data to the host
    (a GPU or meta tensor, a sparse one) is a TypeError naming ``name``.
    Non-numeric dtypes are left to the callers' checks, which name the
    dtype. A MemoryError (a list of huge views) stays one.
    """
    if type(value) is np.ndarray:  # the hot path: nothing to read
        array = value
    elif _is_torch_tensor(value):
        array = _from_torch(value, name, float_dtype)
    elif isinstance(value, np.ndarray) or hasattr(type(value), "__array__") or not hasattr(value, "__dlpack__"):
        array = _guarded(np.asarray, value, name)
    else:
        array = _from_dlpack(value, name)
    if is_ml_dtype(array.dtype):
        # ml_dtypes' types all have kind 'V'; their casts to NumPy's are registered.
        with np.errstate(all="ignore"):
            array = array.astype((float_dtype or np.float32) if is_half_float(array.dtype) else np.int64)
    return array


def is_foreign(value: Any) -> bool:
    """True for what ``np.asarray`` would refuse or misread and ``as_array``
    reads: torch tensors (``requires_grad``, bfloat16), objects with only
    ``__dlpack__``, ml_dtypes arrays. For callers that hand arrays to
    another library's checks (scikit-learn's)."""
    if isinstance(value, np.ndarray):
        return is_ml_dtype(value.dtype)
    return _is_torch_tensor(value) or (hasattr(value, "__dlpack__") and not hasattr(type(value), "__array__"))


def is_half_float(dtype: Any) -> bool:
    """True for ml_dtypes' floats (bfloat16, float8s), which ``as_array`` reads."""
    return is_ml_dtype(dtype) and not np.dtype(dtype).name.startswith(("int", "uint"))


def is_ml_dtype(dtype: Any) -> bool:
    """True for ml_dtypes' types (bfloat16, float8s, int4s: NumPy's kind 'V')."""
    module: str = np.dtype(dtype).type.__module__
    return module == "ml_dtypes"


def dtype_name(value: Any) -> str:
    """The name of ``value``'s dtype without reading it (``"bfloat16"`` for
    NumPy with ml_dtypes, torch and JAX alike), or ``""``."""
    dtype = getattr(value, "dtype", None)
    return "" if dtype is None else str(dtype).rpartition(".")[2]


def _guarded(read: Callable[[Any], _T], value: Any, name: str) -> _T:
    """``read(value)``, a failure re-raised as a TypeError naming ``name``
    (KeyboardInterrupt and MemoryError pass through)."""
    try:
        return read(value)
    except MemoryError:
        raise
    except Exception as error:
        raise TypeError(f"{name}: expected an array of real numbers, got {type(value).__name__} ({error})") from None


def _is_torch_tensor(value: Any) -> bool:
    # No import of torch: a tensor's class lives in torch, and only a program
    # that imported torch can hold one.
    module = type(value).__module__
    return (module == "torch" or module.startswith("torch.")) and hasattr(value, "requires_grad")


def _from_torch(tensor: Any, name: str, float_dtype: Any) -> np.ndarray:
    import torch

    if tensor.device.type != "cpu":
        raise TypeError(f"{name}: a torch tensor on device {tensor.device.type!r}; rnnext computes on the CPU "
                        f"(pass {name}.cpu())")
    if tensor.layout != torch.strided:
        raise TypeError(f"{name}: a {tensor.layout} torch tensor; rnnext reads dense tensors "
                        f"(pass {name}.to_dense())")
    tensor = tensor.detach()  # a view: the graph is torch's business, the data are ours to read
    if tensor.dtype == torch.bfloat16:
        # NumPy has no bfloat16: the 16 bits are the top half of a float32.
        widened = _guarded(lambda t: t.view(torch.int16).numpy(), tensor, name).view(np.uint16).astype(np.uint32)
        widened <<= 16
        floats: np.ndarray = widened.view(np.float32)
        return floats if float_dtype is None or np.dtype(float_dtype) == np.float32 else floats.astype(float_dtype)
    return _guarded(lambda t: t.resolve_conj().resolve_neg().numpy(), tensor, name)


def _from_dlpack(value: Any, name: str) -> np.ndarray:
    device = _guarded(lambda v: tuple(v.__dlpack_device__()), value, name) if hasattr(value, "__dlpack_device__") \
        else (_DLPACK_CPU, 0)
    if device[0] != _DLPACK_CPU:
        raise TypeError(f"{name}: a DLPack tensor on device type {device[0]} (not the CPU, type {_DLPACK_CPU}); "
                        "rnnext computes on the CPU: copy it to host memory first")
    return _guarded(np.from_dlpack, value, name)


def cast(value: Any, dtype: Any, copy: bool = False) -> np.ndarray:
    """``value`` as an array of ``dtype`` (a copy when ``copy``). Values past
    the dtype's range become +-inf without NumPy's "overflow encountered in
    cast" warning, as they do in the C++ kernels' conversions: API.md wants
    NaN and Inf to propagate with no warnings (and under warnings-as-errors
    the warning would be an exception)."""
    with np.errstate(all="ignore"):
        return np.array(value, dtype=dtype, copy=True) if copy else np.asarray(value, dtype=dtype)


def physical_memory() -> Optional[int]:
    """This machine's memory in bytes; None where the OS does not say (the
    allocation itself will tell then)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def count_str(n: Union[int, np.integer[Any]]) -> str:
    """An int for a message: ``1,000,000``, or ``about 2**3321`` for sizes
    whose digits are not worth printing (or past Python's 4300-digit limit)."""
    n = int(n)
    return f"{n:,}" if abs(n) < 2**64 else f"about {'-' if n < 0 else ''}2**{abs(n).bit_length() - 1}"


def require_memory(nbytes: int, what: str) -> None:
    """MemoryError naming ``what`` when ``nbytes`` (a Python int: no overflow)
    exceed this machine's memory: raised before any compute, as API.md asks,
    instead of a failure halfway or a scan of a broadcast view of 2**60
    elements."""
    available = physical_memory()
    if available is not None and nbytes > available:
        gib = f"about {nbytes / 2**30:,.1f}" if nbytes < 2**64 else count_str(nbytes // 2**30)
        raise MemoryError(f"{what} needs {gib} GiB, more than this machine's {available / 2**30:,.1f} GiB")


def check_choice(name: str, value: Any, choices: Tuple[str, ...], kind: Optional[str] = None) -> str:
    """``value`` if it is one of the strings ``choices``; else TypeError (not a
    string) or ValueError naming ``name`` and the choices. ``kind`` describes
    what the TypeError expected (default: the choices)."""
    listed = " or ".join(map(repr, choices)) if len(choices) == 2 else "one of " + ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected {kind or listed}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name}: expected {listed}, got {value!r}")
    return value
