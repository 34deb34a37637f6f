"""The recurrent cells as the model layer sees them: a small description per
cell (gate blocks, extra state, which C++ kernels run it) behind one calling
convention, so ``layers.py`` and ``models.py`` never branch on the cell type.

Every packed layer is run as::

    h_seq, h_n, c_n = cell.forward(layer, x, h0, c0, lengths, batch_first, reverse)
    h_seq, h_n, c_n, cache = cell.forward_cache(layer, x, h0, c0, lengths, batch_first, reverse)
    grads = cell.backward(cache, dh_seq, dh_n, dc_n)
    h_t, c_t = cell.step(layer, x_t, h, c)

where ``c0``, ``c_n`` and ``dc_n`` are the LSTM's cell state (``None`` for the
other cells) and ``grads`` holds ``"x"``, ``"W_x"``, ``"W_h"``, ``"b_x"``,
``"b_h"``, ``"h0"`` (and ``"c0"`` for LSTM), as the functional kernels'
backward does.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _core

__all__ = ["Cell", "RNN_CELL", "LSTM_CELL", "GRU_CELL"]


def _core_function(name: str) -> Any:
    function = getattr(_core, name, None)
    if function is None:  # pragma: no cover - only while the core lacks a cell
        raise NotImplementedError(f"this build of rnnext's C++ core has no {name}")
    return function


class Cell:
    """How one kind of recurrent cell maps onto the C++ core.

    Attributes
    ----------
    name : str
        The model class and torch module name: "RNN", "LSTM" or "GRU".
    gates : int
        G, the number of (H, .) blocks stacked in ``W_x``, ``W_h``, ``b_x``, ``b_h``.
    has_cell_state : bool
        True for LSTM: the state is an (h, c) pair.
    options : tuple of str
        The configuration keys that reach the kernels (``activation`` for RNN,
        ``linear_before_reset`` for GRU).
    fused_head : bool
        Whether the packed layer runs a head in its own forward and has the
        one-call streaming step ``step_model`` (the Elman core does).
    """

    def __init__(self, name: str, gates: int, has_cell_state: bool, options: Tuple[str, ...],
                 pack: str, backward: str, fused_head: bool = False) -> None:
        self.name = name
        self.gates = gates
        self.has_cell_state = has_cell_state
        self.options = options
        self.fused_head = fused_head
        self._pack = pack
        self._backward = backward

    def __repr__(self) -> str:
        return f"Cell({self.name})"

    def pack(self, W_x: np.ndarray, W_h: np.ndarray, b_x: Optional[np.ndarray], b_h: Optional[np.ndarray],
             config: Dict[str, Any]) -> Any:
        """Checks and packs one layer-direction's weights for the C++ core."""
        options = [config[key] for key in self.options]
        return _core_function(self._pack)(W_x, W_h, b_x, b_h, *options)

    def forward(self, layer: Any, x: Any, h0: Any, c0: Any, lengths: Any, batch_first: bool,
                reverse: bool) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """(h_seq, h_n, c_n) of one layer-direction; c_n is None but for LSTM."""
        if self.has_cell_state:
            return layer.forward(x, h0, c0, lengths, batch_first, reverse)
        h_seq, h_n = layer.forward(x, h0, lengths, batch_first, reverse)
        return h_seq, h_n, None

    def forward_cache(self, layer: Any, x: Any, h0: Any, c0: Any, lengths: Any, batch_first: bool,
                      reverse: bool) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Any]:
        """(h_seq, h_n, c_n, cache): the forward, keeping what ``backward`` needs."""
        if self.has_cell_state:
            return layer.forward_cache(x, h0, c0, lengths, batch_first, reverse)
        h_seq, h_n, cache = layer.forward_cache(x, h0, lengths, batch_first, reverse)
        return h_seq, h_n, None, cache

    def step(self, layer: Any, x_t: np.ndarray, h: Optional[np.ndarray], c: Optional[np.ndarray]
             ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """One time step of one layer: ``x_t`` (B, I) or (I,) and the states
        (B, H) or (H,) (None means zeros) -> the new ``(h, c)``."""
        if self.fused_head:  # the Elman core has a one-step entry point
            return layer.step(x_t, h, None)[1], None
        _, h_n, c_n = self.forward(layer, np.expand_dims(x_t, -2), h, c, None, True, False)
        return h_n, c_n

    def backward(self, cache: Any, dh_seq: Optional[np.ndarray], dh_n: Optional[np.ndarray],
                 dc_n: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """Backpropagation through time of one layer-direction; gradients
        left ``None`` count as zero."""
        if self.has_cell_state:
            return _core_function(self._backward)(cache, dh_seq, dh_n, dc_n)
        return _core_function(self._backward)(cache, dh_seq, dh_n)


RNN_CELL = Cell("RNN", 1, False, ("activation",), "pack_rnn", "rnn_backward", fused_head=True)
LSTM_CELL = Cell("LSTM", 4, True, (), "pack_lstm", "lstm_backward")
GRU_CELL = Cell("GRU", 3, False, ("linear_before_reset",), "pack_gru", "gru_backward")
