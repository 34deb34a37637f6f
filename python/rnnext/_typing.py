"""Type aliases shared by the package's signatures."""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
DTypeLike = Union[str, type, np.dtype, Any]
