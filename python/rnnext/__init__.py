"""rnnext: fast recurrent neural networks on the CPU.

The article's network  h_t = f(W_x x_t + W_h h_{t-1} + b),  y_t = W_o h_t,
and its descendants LSTM and GRU (stacked, bidirectional), run by a C++ core
with SIMD kernels chosen at run time, behind a NumPy API.
"""

from . import callbacks, functional, optim, reference
from ._core import build_info as _build_info
from ._core import get_num_threads, set_num_threads
from ._threads import register_threadpoolctl as _register_threadpoolctl
from ._threads import threads
from ._typing import BuildInfo
from .interop import from_keras, from_onnx, from_torch
from .io import from_bytes, load
from .models import GRU, LSTM, RNN
from .seq2seq import Seq2Seq

__version__ = _build_info()["version"]

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "Seq2Seq",
    "build_info",
    "callbacks",
    "from_bytes",
    "from_keras",
    "from_onnx",
    "from_torch",
    "functional",
    "load",
    "optim",
    "get_num_threads",
    "reference",
    "set_num_threads",
    "threads",
    "__version__",
]

_register_threadpoolctl()


def build_info() -> BuildInfo:
    """Version, compiler, the instruction set chosen at run time
    (``RNNEXT_FORCE_ISA=scalar|avx2|avx512`` forces one), the ones this CPU
    supports, the thread count a call made now would use, the CPUs this
    process may run on (``usable_cpus``), the worker threads started
    (``pool_workers``) and whether calls plan for one thread for now because
    a worker was found descheduled by another process
    (``threads_recently_late``). ``openmp`` is None: rnnext runs its own
    worker threads."""
    return _build_info()
