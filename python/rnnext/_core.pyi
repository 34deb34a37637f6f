"""rnnext's C++ core (src/cpp/bindings.cpp, bind_dense.cpp, bind_quantized.cpp).

Started from pybind11-stubgen's output (``python -m pybind11_stubgen
rnnext._core``), then typed by hand: the binding takes most arguments as
``py::handle`` (anything ``np.asarray`` accepts), which the generator can
only call ``object``, and returns tuples it cannot look into.

.ci/typecheck checks this file against the built module: names and kinds
with ``python -m mypy.stubtest rnnext._core``, parameters with
.ci/stub_signatures.py (stubtest cannot read pybind11's).
"""

from typing import Literal, overload, type_check_only

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnext._typing import BuildInfo

# The core checks its string options itself ("tanh", "sigmoid", "relu";
# "rnn", "lstm", "gru"; "int8", "bfloat16"): the Python layer passes them on
# from configurations typed str.

# pybind11's classes: their metaclass is pybind11_type, and the constructor
# they inherit from pybind11_object takes anything and raises TypeError (none
# is bound: pack_* makes layers, forward_cache makes caches). Neither is
# importable, so the stub names them privately for stubtest.
@type_check_only
class _pybind11_type(type): ...

@type_check_only
class _pybind11_object(metaclass=_pybind11_type):
    def __init__(self, *args: object, **kwargs: object) -> None: ...

# float32 and float64 twins: a layer computes and returns in its own dtype.

class Cache32(_pybind11_object):
    """What backward needs from a forward (opaque)."""

class Cache64(_pybind11_object):
    """What backward needs from a forward (opaque)."""

class DenseWeights32(_pybind11_object):
    """Packed dense-layer weights (made by pack_dense)."""
    @property
    def dtype(self) -> Literal["float32"]: ...
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    def forward(self, x: ArrayLike) -> NDArray[np.float32]: ...
    def backward(
        self, x: ArrayLike, dy: ArrayLike
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """(dW, db, dx) from x and dy."""

class DenseWeights64(_pybind11_object):
    """Packed dense-layer weights (made by pack_dense)."""
    @property
    def dtype(self) -> Literal["float64"]: ...
    @property
    def in_features(self) -> int: ...
    @property
    def out_features(self) -> int: ...
    def forward(self, x: ArrayLike) -> NDArray[np.float64]: ...
    def backward(
        self, x: ArrayLike, dy: ArrayLike
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(dW, db, dx) from x and dy."""

class Layer32(_pybind11_object):
    """One layer-direction's packed weights (made by pack_<cell>)."""
    @property
    def cell(self) -> Literal["rnn", "lstm", "gru"]: ...
    @property
    def dtype(self) -> Literal["float32"]: ...
    @property
    def gates(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def state_size(self) -> int: ...
    def forward(
        self,
        x: ArrayLike,
        h0: ArrayLike | None = None,
        c0: ArrayLike | None = None,
        lengths: ArrayLike | None = None,
        batch_first: bool = True,
        reverse: bool = False,
        head: DenseWeights32 | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None]:
        """(out, h_n, c_n): every hidden state (or the head's output at every valid step) and the final states."""
    def forward_cache(
        self,
        x: ArrayLike,
        h0: ArrayLike | None = None,
        c0: ArrayLike | None = None,
        lengths: ArrayLike | None = None,
        batch_first: bool = True,
        reverse: bool = False,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None, Cache32]:
        """(h_seq, h_n, c_n, cache): the forward, keeping what backward needs."""
    def step(
        self,
        x_t: ArrayLike,
        state: ArrayLike | tuple[ArrayLike | None, ArrayLike | None] | None = None,
        head: DenseWeights32 | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.float32] | tuple[NDArray[np.float32], NDArray[np.float32]]]:
        """(y_t, state) for one time step of a one-layer model, states shaped (1, B, H)."""

class Layer64(_pybind11_object):
    """One layer-direction's packed weights (made by pack_<cell>)."""
    @property
    def cell(self) -> Literal["rnn", "lstm", "gru"]: ...
    @property
    def dtype(self) -> Literal["float64"]: ...
    @property
    def gates(self) -> int: ...
    @property
    def hidden_size(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def state_size(self) -> int: ...
    def forward(
        self,
        x: ArrayLike,
        h0: ArrayLike | None = None,
        c0: ArrayLike | None = None,
        lengths: ArrayLike | None = None,
        batch_first: bool = True,
        reverse: bool = False,
        head: DenseWeights64 | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
        """(out, h_n, c_n): every hidden state (or the head's output at every valid step) and the final states."""
    def forward_cache(
        self,
        x: ArrayLike,
        h0: ArrayLike | None = None,
        c0: ArrayLike | None = None,
        lengths: ArrayLike | None = None,
        batch_first: bool = True,
        reverse: bool = False,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None, Cache64]:
        """(h_seq, h_n, c_n, cache): the forward, keeping what backward needs."""
    def step(
        self,
        x_t: ArrayLike,
        state: ArrayLike | tuple[ArrayLike | None, ArrayLike | None] | None = None,
        head: DenseWeights64 | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.float64]]]:
        """(y_t, state) for one time step of a one-layer model, states shaped (1, B, H)."""

def activation(name: str, x: ArrayLike) -> NDArray[np.float32] | NDArray[np.float64]: ...
@overload
def backward(
    cache: Cache32,
    dh_seq: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    cell: str,
) -> dict[str, NDArray[np.float32]]:
    """Backpropagation through time from the cache of a forward of `cell` (rnn, lstm or gru)."""
@overload
def backward(
    cache: Cache64,
    dh_seq: ArrayLike | None = None,
    dh_n: ArrayLike | None = None,
    dc_n: ArrayLike | None = None,
    *,
    cell: str,
) -> dict[str, NDArray[np.float64]]: ...
def build_info() -> BuildInfo: ...
def dense_reference(x: ArrayLike, W: ArrayLike, b: ArrayLike | None = None) -> NDArray[np.float32] | NDArray[np.float64]: ...
def get_num_threads() -> int: ...
def pack_dense(W: ArrayLike, b: ArrayLike | None = None) -> DenseWeights32 | DenseWeights64:
    """Checks and packs dense weights; returns DenseWeights32 or DenseWeights64."""
# pack_rnn and pack_gru: the binding's option follows the optional biases
# without a default of its own (positional after both, or by keyword).
@overload
def pack_gru(
    W_x: ArrayLike, W_h: ArrayLike, b_x: ArrayLike | None, b_h: ArrayLike | None, linear_before_reset: bool
) -> Layer32 | Layer64:
    """Checks and packs gru weights; returns Layer32 or Layer64."""
@overload
def pack_gru(
    W_x: ArrayLike, W_h: ArrayLike, b_x: ArrayLike | None = None, b_h: ArrayLike | None = None, *, linear_before_reset: bool
) -> Layer32 | Layer64: ...
def pack_lstm(
    W_x: ArrayLike, W_h: ArrayLike, b_x: ArrayLike | None = None, b_h: ArrayLike | None = None, W_hr: ArrayLike | None = None
) -> Layer32 | Layer64:
    """Checks and packs lstm weights; returns Layer32 or Layer64."""
def pack_quantized(
    cell: str,
    precision: str,
    W_x: NDArray[np.int8] | NDArray[np.uint16],
    W_x_scale: NDArray[np.float32] | None,
    W_h: NDArray[np.int8] | NDArray[np.uint16],
    W_h_scale: NDArray[np.float32] | None,
    b_x: NDArray[np.float32] | None,
    b_h: NDArray[np.float32] | None,
    input_size: int,
    hidden_size: int,
    activation: str = "tanh",
    linear_before_reset: bool = True,
) -> Layer32:
    """Packs one layer-direction's quantized weights (int8 with float32 row scales, or bfloat16 bits as uint16) as a Layer32 for inference."""
@overload
def pack_rnn(
    W_x: ArrayLike, W_h: ArrayLike, b_x: ArrayLike | None, b_h: ArrayLike | None, activation: str
) -> Layer32 | Layer64:
    """Checks and packs rnn weights; returns Layer32 or Layer64."""
@overload
def pack_rnn(
    W_x: ArrayLike, W_h: ArrayLike, b_x: ArrayLike | None = None, b_h: ArrayLike | None = None, *, activation: str
) -> Layer32 | Layer64: ...
def process_num_threads() -> int:
    """The process-wide thread count (set_num_threads), whatever this thread's own."""
def quant_path(precision: str) -> str:
    """The instruction set running a precision's products."""
def set_num_threads(n: int) -> None: ...
def set_thread_num_threads(n: int) -> None: ...
def thread_num_threads() -> int:
    """The calling thread's own thread count; 0: the process-wide one."""
