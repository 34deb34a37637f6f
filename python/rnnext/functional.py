"""Stateless recurrent kernels: the C++ core with a NumPy interface.

Every function takes the weights as arrays, in PyTorch's storage order, gate
blocks stacked along the first axis (LSTM: i, f, g, o; GRU: r, z, n); see
``rnnext.RNN``, ``rnnext.LSTM`` and ``rnnext.GRU`` for the models that own
their weights and keep them packed. ``W_x``, ``W_h``, ``b_x``
and ``b_h`` must all be float32 or all float64: that dtype decides the
precision, and ``x`` and ``h0`` are cast to it.
"""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import numpy as np

from . import _core
from ._arrays import as_array, dtype_name
from ._typing import ArrayLike, FloatArray
from .cells import GRU_CELL, LSTM_CELL, RNN_CELL, Cell

__all__ = ["rnn", "rnn_backward", "lstm", "lstm_backward", "gru", "gru_backward"]

Cache = Union[_core.Cache32, _core.Cache64]
"""What a forward with ``return_cache=True`` returns for its ``*_backward`` (opaque)."""


def _run(cell: Cell, options: Dict[str, Any], x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike],
         b_h: Optional[ArrayLike], h0: Optional[ArrayLike], c0: Optional[ArrayLike], lengths: Optional[ArrayLike],
         batch_first: bool, reverse: bool, return_cache: bool) -> Tuple[Any, ...]:
    """Every functional forward: pack the weights, run the layer once; the
    state is an (h_n, c_n) pair for LSTM."""
    W_x, W_h, b_x, b_h = (_weight(w, name) for w, name in ((W_x, "W_x"), (W_h, "W_h"), (b_x, "b_x"), (b_h, "b_h")))
    dtype = getattr(W_x, "dtype", None)
    dtype = dtype if dtype in (np.float32, np.float64) else None
    # (a None x stays None: the core refuses it by name)
    x, h0, c0 = (None if a is None else as_array(a, name, dtype)  # type: ignore[assignment]
                 for a, name in ((x, "x"), (h0, "h0"), (c0, "c0")))
    lengths = None if lengths is None else as_array(lengths, "lengths")
    layer = cell.pack(W_x, W_h, b_x, b_h, options)
    if return_cache:
        h_seq, h_n, c_n, cache = layer.forward_cache(x, h0, c0, lengths, batch_first, reverse)
    else:
        h_seq, h_n, c_n = layer.forward(x, h0, c0, lengths, batch_first, reverse)
    state = (h_n, c_n) if cell.has_cell_state else h_n
    return (h_seq, state, cache) if return_cache else (h_seq, state)


def _weight(value: Any, name: str) -> Any:
    """A weight as an array. The weights' dtype is the precision computed
    in, so half-precision weights are refused (by the core, with these
    words, for float16) rather than widened behind the caller's back."""
    if value is None:
        return None
    if dtype_name(value) == "bfloat16":
        raise TypeError(f"{name}: expected float32 or float64 weights, got dtype bfloat16")
    return as_array(value, name)


def _gradient(value: Any, name: str) -> Any:
    return None if value is None else as_array(value, name)


@overload
def rnn(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, activation: str = "tanh", lengths: Optional[ArrayLike] = None,
        batch_first: bool = True, reverse: bool = False, return_cache: Literal[False] = False
        ) -> Tuple[FloatArray, FloatArray]: ...
@overload
def rnn(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, activation: str = "tanh", lengths: Optional[ArrayLike] = None,
        batch_first: bool = True, reverse: bool = False, return_cache: Literal[True]
        ) -> Tuple[FloatArray, FloatArray, Cache]: ...
@overload
def rnn(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, activation: str = "tanh", lengths: Optional[ArrayLike] = None,
        batch_first: bool = True, reverse: bool = False, return_cache: bool
        ) -> Union[Tuple[FloatArray, FloatArray], Tuple[FloatArray, FloatArray, Cache]]: ...
def rnn(
    x: ArrayLike,
    W_x: ArrayLike,
    W_h: ArrayLike,
    b_x: Optional[ArrayLike] = None,
    b_h: Optional[ArrayLike] = None,
    h0: Optional[ArrayLike] = None,
    *,
    activation: str = "tanh",
    lengths: Optional[ArrayLike] = None,
    batch_first: bool = True,
    reverse: bool = False,
    return_cache: bool = False,
) -> Union[Tuple[FloatArray, FloatArray], Tuple[FloatArray, FloatArray, Cache]]:
    """Elman RNN forward: ``h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h)``.

    Parameters
    ----------
    x : array_like, shape (B, T, I), (T, B, I) if not ``batch_first``, or (T, I)
        The input sequences; a 2-D ``x`` is one unbatched sequence.
    W_x : array_like, shape (H, I)
    W_h : array_like, shape (H, H)
    b_x, b_h : array_like, shape (H,), optional
        Biases; ``None`` means zero.
    h0 : array_like, shape (B, H) or (H,) for unbatched input, optional
        The state before the first step read; ``None`` means zeros.
    activation : {"tanh", "sigmoid", "relu"}
    lengths : array_like of int, shape (B,), optional
        Valid steps of each sequence, ``1 <= lengths[b] <= T``; padding is at
        the end. Steps past a length are not computed and are zero in
        ``h_seq``; ``h_n`` is the state after each sequence's last valid step.
    batch_first : bool
        Layout of ``x`` and ``h_seq``; the states ignore it.
    reverse : bool
        Read each sequence from its last valid step back to step 0. ``h_seq``
        stays in input time order, and ``h_n`` is the state after step 0.
    return_cache : bool
        Also return an opaque cache for ``rnn_backward``. It holds copies of
        the inputs and every state, so later changes to the arrays passed in
        do not affect the gradients.

    Returns
    -------
    h_seq : ndarray, shape like ``x`` with H features
        The hidden state after reading each ``x_t``.
    h_n : ndarray, shape (B, H), or (H,) for unbatched input
        The final state.
    cache : object
        Only with ``return_cache=True``.

    Raises
    ------
    TypeError
        Weights that are not all float32 or all float64 (checked first), or
        data that is not real numbers.
    ValueError
        Shapes that do not fit together, bad ``lengths``, an unknown
        ``activation``. Every error names the argument and is raised before
        any compute.
    MemoryError
        Outputs or workspace that cannot be allocated.
    """
    return _run(RNN_CELL, {"activation": activation}, x, W_x, W_h, b_x, b_h, h0, None, lengths, batch_first, reverse,
                return_cache)


def rnn_backward(cache: Cache, dh_seq: Optional[ArrayLike] = None, dh_n: Optional[ArrayLike] = None) -> Dict[str, np.ndarray]:
    """Backpropagation through time for ``rnn(..., return_cache=True)``.

    Parameters
    ----------
    cache : object
        The cache the forward returned.
    dh_seq : array_like, shaped like the forward's ``h_seq``, optional
        The gradient of the loss with respect to every hidden state; entries
        past a sequence's length are ignored. ``None`` means zero.
    dh_n : array_like, shaped like the forward's ``h_n``, optional
        The gradient with respect to the final state. ``None`` means zero.

    Returns
    -------
    dict
        ``"x"``, ``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"``, ``"h0"``: the
        gradients, shaped like the forward's arguments (also those that were
        ``None``). ``"x"`` is zero past each sequence's length.

    Notes
    -----
    Inside the time loop only ``dh_{t-1} = (dh_t * f'(z_t)) W_h`` runs, fused
    with the activation's derivative; the weight and input gradients are then
    single matrix products over all valid steps. Gradients are bitwise
    identical for a given instruction set, whatever the thread count.
    """
    return RNN_CELL.backward(cache, _gradient(dh_seq, "dh_seq"), _gradient(dh_n, "dh_n"))


@overload
def lstm(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
         h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None,
         batch_first: bool = True, reverse: bool = False, return_cache: Literal[False] = False
        ) -> Tuple[FloatArray, Tuple[FloatArray, FloatArray]]: ...
@overload
def lstm(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
         h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None,
         batch_first: bool = True, reverse: bool = False, return_cache: Literal[True]
        ) -> Tuple[FloatArray, Tuple[FloatArray, FloatArray], Cache]: ...
@overload
def lstm(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
         h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None,
         batch_first: bool = True, reverse: bool = False, return_cache: bool
        ) -> Union[Tuple[FloatArray, Tuple[FloatArray, FloatArray]], Tuple[FloatArray, Tuple[FloatArray, FloatArray], Cache]]: ...
def lstm(
    x: ArrayLike,
    W_x: ArrayLike,
    W_h: ArrayLike,
    b_x: Optional[ArrayLike] = None,
    b_h: Optional[ArrayLike] = None,
    h0: Optional[ArrayLike] = None,
    c0: Optional[ArrayLike] = None,
    *,
    lengths: Optional[ArrayLike] = None,
    batch_first: bool = True,
    reverse: bool = False,
    return_cache: bool = False,
) -> Union[Tuple[FloatArray, Tuple[FloatArray, FloatArray]], Tuple[FloatArray, Tuple[FloatArray, FloatArray], Cache]]:
    """LSTM forward, PyTorch's equations:

    ::

        i, f, o = sigmoid(W_x x_t + b_x + W_h h_{t-1} + b_h)   (their gate blocks)
        g = tanh(...),  c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)

    Parameters
    ----------
    x : array_like, shape (B, T, I), (T, B, I) if not ``batch_first``, or (T, I)
    W_x : array_like, shape (4H, I)
        Gate blocks i, f, g, o stacked (PyTorch's ``weight_ih``).
    W_h : array_like, shape (4H, H)
    b_x, b_h : array_like, shape (4H,), optional
    h0, c0 : array_like, shape (B, H) or (H,) for unbatched input, optional
        The hidden and cell states before the first step read; zeros if None.
    lengths, batch_first, reverse, return_cache
        As in ``rnn``.

    Returns
    -------
    h_seq : ndarray, shape like ``x`` with H features
    (h_n, c_n) : ndarrays, shape (B, H) or (H,)
        The final hidden and cell states.
    cache : object
        Only with ``return_cache=True``; for ``lstm_backward``.

    Raises
    ------
    TypeError, ValueError, MemoryError
        As in ``rnn``; ``W_x``'s first axis must be a multiple of 4.

    Notes
    -----
    The input projection of every step is one product before the loop; each
    step is then one product with ``W_h``, the gates stored interleaved so that
    the cell update runs while each block of units is still in registers.
    """
    return _run(LSTM_CELL, {}, x, W_x, W_h, b_x, b_h, h0, c0, lengths, batch_first, reverse, return_cache)


def lstm_backward(cache: Cache, dh_seq: Optional[ArrayLike] = None, dh_n: Optional[ArrayLike] = None,
                  dc_n: Optional[ArrayLike] = None) -> Dict[str, np.ndarray]:
    """Backpropagation through time for ``lstm(..., return_cache=True)``.

    ``dh_seq`` (shaped like ``h_seq``), ``dh_n`` and ``dc_n`` (shaped like the
    final states) are the loss's gradients; ``None`` means zero. Returns a dict
    with ``"x"``, ``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"``, ``"h0"``, ``"c0"``,
    shaped like the forward's arguments (``b_x`` and ``b_h`` get equal
    gradients, as separate arrays).
    """
    return LSTM_CELL.backward(cache, _gradient(dh_seq, "dh_seq"), _gradient(dh_n, "dh_n"), _gradient(dc_n, "dc_n"))


@overload
def gru(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None, batch_first: bool = True,
        reverse: bool = False, linear_before_reset: bool = True, return_cache: Literal[False] = False
        ) -> Tuple[FloatArray, FloatArray]: ...
@overload
def gru(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None, batch_first: bool = True,
        reverse: bool = False, linear_before_reset: bool = True, return_cache: Literal[True]
        ) -> Tuple[FloatArray, FloatArray, Cache]: ...
@overload
def gru(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None, b_h: Optional[ArrayLike] = None,
        h0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None, batch_first: bool = True,
        reverse: bool = False, linear_before_reset: bool = True, return_cache: bool
        ) -> Union[Tuple[FloatArray, FloatArray], Tuple[FloatArray, FloatArray, Cache]]: ...
def gru(
    x: ArrayLike,
    W_x: ArrayLike,
    W_h: ArrayLike,
    b_x: Optional[ArrayLike] = None,
    b_h: Optional[ArrayLike] = None,
    h0: Optional[ArrayLike] = None,
    *,
    lengths: Optional[ArrayLike] = None,
    batch_first: bool = True,
    reverse: bool = False,
    linear_before_reset: bool = True,
    return_cache: bool = False,
) -> Union[Tuple[FloatArray, FloatArray], Tuple[FloatArray, FloatArray, Cache]]:
    """GRU forward, PyTorch's equations:

    ::

        r, z = sigmoid(W_x x_t + b_x + W_h h_{t-1} + b_h)   (their gate blocks)
        n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}

    With ``linear_before_reset=False`` (ONNX's default, Keras'
    ``reset_after=False``), ``n = tanh(W_in x_t + b_in + W_hn (r * h_{t-1}) + b_hn)``.

    Parameters
    ----------
    x : array_like, shape (B, T, I), (T, B, I) if not ``batch_first``, or (T, I)
    W_x : array_like, shape (3H, I)
        Gate blocks r, z, n stacked (PyTorch's ``weight_ih``).
    W_h : array_like, shape (3H, H)
    b_x, b_h : array_like, shape (3H,), optional
    h0 : array_like, shape (B, H) or (H,), optional
    lengths, batch_first, reverse, return_cache
        As in ``rnn``.
    linear_before_reset : bool
        Where the reset gate applies, as above.

    Returns
    -------
    h_seq, h_n[, cache]
        As in ``rnn``; the cache is for ``gru_backward``.
    """
    return _run(GRU_CELL, {"linear_before_reset": linear_before_reset}, x, W_x, W_h, b_x, b_h, h0, None, lengths,
                batch_first, reverse, return_cache)


def gru_backward(cache: Cache, dh_seq: Optional[ArrayLike] = None, dh_n: Optional[ArrayLike] = None) -> Dict[str, np.ndarray]:
    """Backpropagation through time for ``gru(..., return_cache=True)``.

    Returns a dict with ``"x"``, ``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"``,
    ``"h0"``, shaped like the forward's arguments.
    """
    return GRU_CELL.backward(cache, _gradient(dh_seq, "dh_seq"), _gradient(dh_n, "dh_n"))
