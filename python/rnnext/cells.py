"""The recurrent cells as the model layer sees them: one row of a table per
cell. Every cell runs through the same C++ layer interface, so nothing else
in the package branches on the cell type; only their data differs.

A packed layer (``cell.pack(...)``, one layer-direction's weights) runs as::

    out, h_n, c_n = layer.forward(x, h0, c0, lengths, batch_first, reverse, head)
    h_seq, h_n, c_n, cache = layer.forward_cache(x, h0, c0, lengths, batch_first, reverse)
    grads = cell.backward(cache, dh_seq, dh_n, dc_n)
    y_t, state = layer.step(x_t, state, head)          # a one-layer model's streaming step

where ``c0``, ``c_n`` and ``dc_n`` are the LSTM's cell state (``None`` for the
other cells), ``head`` is packed dense weights or None, and ``grads`` holds
``"x"``, ``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"``, ``"h0"`` (and ``"c0"`` for
LSTM, ``"W_hr"`` for an LSTM with projections), as the functional kernels'
backward does.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _core
from ._typing import ArrayLike

__all__ = ["Cell", "RNN_CELL", "LSTM_CELL", "GRU_CELL"]


class Cell(NamedTuple):
    """One kind of recurrent cell.

    Attributes
    ----------
    name : str
        The model class and torch module name: "RNN", "LSTM" or "GRU".
    functional : str
        Its name in ``rnnext.functional`` and in the C++ core ("rnn", ...).
    gates : int
        G, the number of (H, .) blocks stacked in ``W_x``, ``W_h``, ``b_x``, ``b_h``.
    has_cell_state : bool
        True for LSTM: the state is an (h, c) pair.
    options : tuple of str
        The configuration keys that reach the kernels (``activation`` for RNN,
        ``linear_before_reset`` for GRU).
    """

    name: str
    functional: str
    gates: int
    has_cell_state: bool
    options: Tuple[str, ...]

    def pack(self, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike], b_h: Optional[ArrayLike],
             config: Mapping[str, Any], W_hr: Optional[ArrayLike] = None) -> Union[_core.Layer32, _core.Layer64]:
        """Checks and packs one layer-direction's weights for the C++ core
        (``W_hr``: an LSTM's projection, or None)."""
        pack: Callable[..., Union[_core.Layer32, _core.Layer64]] = getattr(_core, "pack_" + self.functional)
        if W_hr is not None:
            return pack(W_x, W_h, b_x, b_h, W_hr=W_hr)
        return pack(W_x, W_h, b_x, b_h, *[config[key] for key in self.options])

    def backward(self, cache: Union[_core.Cache32, _core.Cache64], dh_seq: Optional[ArrayLike],
                 dh_n: Optional[ArrayLike], dc_n: Optional[ArrayLike] = None) -> Dict[str, np.ndarray]:
        """Backpropagation through time of one layer-direction; gradients
        left ``None`` count as zero."""
        return _core.backward(cache, dh_seq, dh_n, dc_n, cell=self.functional)


RNN_CELL = Cell("RNN", "rnn", 1, False, ("activation",))
LSTM_CELL = Cell("LSTM", "lstm", 4, True, ())
GRU_CELL = Cell("GRU", "gru", 3, False, ("linear_before_reset",))
