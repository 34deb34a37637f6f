"""Casting to a model's dtype the way the kernels do."""

from __future__ import annotations

from typing import Any

import numpy as np


def cast(value: Any, dtype: Any, copy: bool = False) -> np.ndarray:
    """``value`` as an array of ``dtype`` (a copy when ``copy``). Values past
    the dtype's range become +-inf without NumPy's "overflow encountered in
    cast" warning, as they do in the C++ kernels' conversions: API.md wants
    NaN and Inf to propagate with no warnings (and under warnings-as-errors
    the warning would be an exception)."""
    with np.errstate(all="ignore"):
        return np.array(value, dtype=dtype, copy=True) if copy else np.asarray(value, dtype=dtype)
