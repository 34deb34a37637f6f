"""A model's recurrent states: reading and checking ``h0``, ``state`` and
their gradients against the model, and building the structure callers see
(an ``(h, c)`` pair for LSTM, one array otherwise).

Inside the package a state travels as ``(h, c)`` arrays, ``c`` None but for
LSTM and either None for zeros; ``read_state`` and ``state_out`` convert.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union, cast

import numpy as np

from ._arrays import as_array
from ._params import Spec, check_int

#: A model's state: the hidden state (num_layers * D, B, H), or an (h, c) pair for LSTM.
State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def state_shape(spec: Spec, batch: Optional[int], cell: bool = False) -> Tuple[int, ...]:
    """(num_layers*D, batch, S), or (num_layers*D, S) when ``batch`` is None
    (unbatched): S the width of h (``spec.state_size``), or H for the LSTM's
    cell state (``cell``)."""
    rows = spec.config["num_layers"] * spec.num_directions
    width = spec.config["hidden_size"] if cell else spec.state_size
    return (rows, width) if batch is None else (rows, batch, width)


def state_arrays(spec: Spec, state: Any, name: str) -> Any:
    """``state`` with its arrays read from any producer (``as_array``), in the
    model's dtype, for the core's own checks (which say what is wrong with
    the structure or shapes)."""
    if state is None:
        return None
    if spec.cell.has_cell_state and isinstance(state, (tuple, list)) and len(state) == 2:
        return tuple(None if s is None else as_array(s, f"{name}[{i}]", spec.dtype) for i, s in enumerate(state))
    return as_array(state, name, spec.dtype)


def read_state(spec: Spec, state: Any, name: str, batch: Optional[int]
               ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A model state (``h0``, ``state``) checked against the model and the
    batch (None: unbatched) and split into ``(h, c)`` arrays (``c`` None
    but for LSTM; either None for zeros)."""
    if state is None:
        return None, None
    if spec.cell.has_cell_state:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected an (h, c) pair for {spec.name}, got {type(state).__name__}")
        return (_state_array(spec, state[0], f"{name}[0]", batch),
                _state_array(spec, state[1], f"{name}[1]", batch, cell=True))
    return _state_array(spec, state, name, batch), None


def _state_array(spec: Spec, value: Any, name: str, batch: Optional[int], cell: bool = False
                 ) -> Optional[np.ndarray]:
    if value is None:
        return None
    array = as_array(value, name, spec.dtype)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
    expected = state_shape(spec, batch, cell)
    if array.shape != expected:
        rows = "num_layers" if spec.num_directions == 1 else "num_layers*2"
        width = "P" if spec.state_size != spec.config["hidden_size"] and not cell else "H"
        layout = f"({rows}, {width})" if batch is None else f"({rows}, B, {width})"
        raise ValueError(f"{name}: expected shape {layout} = {expected}, got {array.shape}")
    return array


def state_out(spec: Spec, h: np.ndarray, c: Optional[np.ndarray]) -> State:
    """The state as callers see it: ``(h, c)`` for LSTM, ``h`` otherwise."""
    return cast(State, (h, c)) if spec.cell.has_cell_state else h  # c is an LSTM's: never None there


def batch_of(spec: Spec, x: np.ndarray) -> Optional[int]:
    """B of a sequence input in the model's layout; None when unbatched (or
    malformed: the forward says what is wrong with it)."""
    if x.ndim != 3:
        return None
    return int(x.shape[0] if spec.config["batch_first"] else x.shape[1])


def initial_state(spec: Spec, batch_size: Optional[int]) -> State:
    """Zeros shaped like ``h_n``; see ``RecurrentModel.initial_state``."""
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 0)
    shape = state_shape(spec, batch_size)
    if spec.cell.has_cell_state:
        return np.zeros(shape, spec.dtype), np.zeros(state_shape(spec, batch_size, cell=True), spec.dtype)
    return np.zeros(shape, spec.dtype)
