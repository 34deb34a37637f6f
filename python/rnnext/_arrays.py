"""Array helpers of the Python layer: casts the way the kernels cast, and
the memory check made before a buffer that cannot exist is computed."""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple, Union

import numpy as np


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
