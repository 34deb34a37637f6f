"""Type aliases shared by the package's signatures."""

from __future__ import annotations

import numpy.typing as npt

ArrayLike = npt.ArrayLike
DTypeLike = npt.DTypeLike
