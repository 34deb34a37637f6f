"""Type aliases shared by the package's signatures (and by ``_core.pyi``)."""

from __future__ import annotations

from typing import Any, Dict, List, TypedDict

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike
DTypeLike = npt.DTypeLike

FloatArray = npt.NDArray[np.floating[Any]]
"""What a model computes and returns: float32 or float64, its own dtype
(decided at run time by ``dtype=``, hence not spelled in the type)."""

IntArray = npt.NDArray[np.integer[Any]]
"""Token ids, lengths, predicted classes."""

class BuildInfo(TypedDict):
    """What ``rx.build_info()`` returns (built by ``build_info`` in
    ``src/cpp/bindings.cpp``)."""

    version: str
    compiler: str
    isa: str
    isas_available: List[str]
    openmp: None
    pool_workers: int
    threads_recently_late: bool
    precisions: Dict[str, str]
    num_threads: int
    usable_cpus: int


__all__ = ["ArrayLike", "BuildInfo", "DTypeLike", "FloatArray", "IntArray"]
