"""Array helpers of the Python layer: casts the way the kernels cast, and
the memory check made before a buffer that cannot exist is computed."""

from __future__ import annotations

import os
from typing import Any, Optional

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


def require_memory(nbytes: int, what: str) -> None:
    """MemoryError naming ``what`` when ``nbytes`` (a Python int: no overflow)
    exceed this machine's memory: raised before any compute, as API.md asks,
    instead of a failure halfway or a scan of a broadcast view of 2**60
    elements."""
    available = physical_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:,.1f} GiB, more than this machine's "
                          f"{available / 2**30:,.1f} GiB")
