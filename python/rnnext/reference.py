"""Plain NumPy implementations of rnnext's equations, written to be obviously
right rather than fast. The tests hold every C++ kernel to these.

Arguments and results follow ``rnnext.functional`` exactly; the computation
runs in the weights' dtype (pass float64 arrays for a float64 reference).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from numpy.typing import NDArray

from ._typing import ArrayLike, FloatArray

__all__ = ["activate", "rnn", "lstm", "gru", "dense"]


def activate(name: str, z: FloatArray) -> FloatArray:
    """f(z) for f in tanh, sigmoid, relu; NaN propagates, no warnings."""
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-z) = inf gives sigmoid 0, as it should
            return 1.0 / (1.0 + np.exp(-z))
    if name == "relu":
        return np.where(np.isnan(z), z, np.maximum(z, 0))
    raise ValueError(f"activation: expected one of 'tanh', 'sigmoid', 'relu', got {name!r}")


def sigmoid(z: FloatArray) -> FloatArray:
    return activate("sigmoid", z)


def _prepare(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike], b_h: Optional[ArrayLike],
             states: Sequence[Optional[ArrayLike]], lengths: Optional[ArrayLike], batch_first: bool, gates: int,
             widths: Optional[List[Optional[int]]] = None
             ) -> Tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], List[NDArray[Any]],
                        NDArray[Any], bool, int]:
    """Common argument handling: the weights' dtype, batch-major x, zero
    defaults (states ``widths`` wide, H each by default)."""
    W_x = np.asarray(W_x)
    dtype = W_x.dtype
    W_h = np.asarray(W_h, dtype)
    H = W_x.shape[0] // gates
    assert W_h.shape[0] == gates * H and W_x.shape[0] == gates * H
    b_x = np.zeros(gates * H, dtype) if b_x is None else np.asarray(b_x, dtype)
    b_h = np.zeros(gates * H, dtype) if b_h is None else np.asarray(b_h, dtype)
    x = np.asarray(x, dtype)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    elif not batch_first:
        x = x.transpose(1, 0, 2)
    B, T, _ = x.shape
    sizes = [H if w is None else w for w in (widths or [None] * len(states))]
    arrays = [np.zeros((B, w), dtype) if s is None else np.asarray(s, dtype).reshape(B, w)
              for s, w in zip(states, sizes)]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths).reshape(B)
    return x, W_x, W_h, b_x, b_h, arrays, lengths, unbatched, H


def _finish(h_seq: FloatArray, finals: List[FloatArray], unbatched: bool, batch_first: bool
            ) -> Tuple[FloatArray, List[FloatArray]]:
    if unbatched:
        return h_seq[0], [f[0] for f in finals]
    if not batch_first:
        h_seq = h_seq.transpose(1, 0, 2)
    return h_seq, finals


def rnn(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None,
        b_h: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, *, activation: str = "tanh",
        lengths: Optional[ArrayLike] = None, batch_first: bool = True, reverse: bool = False
        ) -> Tuple[FloatArray, FloatArray]:
    """h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h), one step at a time."""
    x, W_x, W_h, b_x, b_h, (h0,), lengths, unbatched, H = _prepare(x, W_x, W_h, b_x, b_h, [h0], lengths,
                                                                   batch_first, 1)
    B, T, _ = x.shape
    h_seq = np.zeros((B, T, H), x.dtype)
    h_n = np.zeros((B, H), x.dtype)
    for b in range(B):
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        h = h0[b]
        for t in steps:
            h = activate(activation, W_x @ x[b, t] + b_x + W_h @ h + b_h)
            h_seq[b, t] = h
        h_n[b] = h
    h_seq, (h_n,) = _finish(h_seq, [h_n], unbatched, batch_first)
    return h_seq, h_n


def lstm(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None,
         b_h: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, c0: Optional[ArrayLike] = None, *,
         lengths: Optional[ArrayLike] = None, batch_first: bool = True, reverse: bool = False,
         W_hr: Optional[ArrayLike] = None) -> Tuple[FloatArray, Tuple[FloatArray, FloatArray]]:
    """PyTorch's LSTM, gate blocks i, f, g, o stacked along the weights' first axis:

        i = sigmoid(W_xi x_t + b_xi + W_hi h_{t-1} + b_hi)
        f = sigmoid(W_xf x_t + b_xf + W_hf h_{t-1} + b_hf)
        g = tanh(W_xg x_t + b_xg + W_hg h_{t-1} + b_hg)
        o = sigmoid(W_xo x_t + b_xo + W_ho h_{t-1} + b_ho)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)                 (with W_hr (P, H): h_t = W_hr (o * tanh(c_t)))

    one step at a time. Returns ``(h_seq, (h_n, c_n))``.
    """
    P = None if W_hr is None else np.asarray(W_hr).shape[0]
    x, W_x, W_h, b_x, b_h, (h0, c0), lengths, unbatched, H = _prepare(
        x, W_x, W_h, b_x, b_h, (h0, c0), lengths, batch_first, 4, None if P is None else [P, None])
    S = H if P is None else P
    B, T, _ = x.shape
    h_seq = np.zeros((B, T, S), x.dtype)
    h_n = np.zeros((B, S), x.dtype)
    c_n = np.zeros((B, H), x.dtype)
    for b in range(B):
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        h, c = h0[b], c0[b]
        for t in steps:
            z = W_x @ x[b, t] + b_x + W_h @ h + b_h
            i, f, g, o = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            if W_hr is not None:
                h = np.asarray(W_hr, x.dtype) @ h
            h_seq[b, t] = h
        h_n[b], c_n[b] = h, c
    h_seq, (h_n, c_n) = _finish(h_seq, [h_n, c_n], unbatched, batch_first)
    return h_seq, (h_n, c_n)


def gru(x: ArrayLike, W_x: ArrayLike, W_h: ArrayLike, b_x: Optional[ArrayLike] = None,
        b_h: Optional[ArrayLike] = None, h0: Optional[ArrayLike] = None, *, lengths: Optional[ArrayLike] = None,
        batch_first: bool = True, reverse: bool = False, linear_before_reset: bool = True
        ) -> Tuple[FloatArray, FloatArray]:
    """PyTorch's GRU, gate blocks r, z, n stacked along the weights' first axis:

        r = sigmoid(W_xr x_t + b_xr + W_hr h_{t-1} + b_hr)
        z = sigmoid(W_xz x_t + b_xz + W_hz h_{t-1} + b_hz)
        n = tanh(W_xn x_t + b_xn + r * (W_hn h_{t-1} + b_hn))     linear_before_reset=True
        n = tanh(W_xn x_t + b_xn + W_hn (r * h_{t-1}) + b_hn)     linear_before_reset=False
        h_t = (1 - z) * n + z * h_{t-1}

    one step at a time. ``linear_before_reset=False`` is ONNX's default form
    (Keras' ``reset_after=False``). Returns ``(h_seq, h_n)``.
    """
    x, W_x, W_h, b_x, b_h, (h0,), lengths, unbatched, H = _prepare(
        x, W_x, W_h, b_x, b_h, (h0,), lengths, batch_first, 3)
    B, T, _ = x.shape
    h_seq = np.zeros((B, T, H), x.dtype)
    h_n = np.zeros((B, H), x.dtype)
    W_hr, W_hz, W_hn = W_h[:H], W_h[H:2 * H], W_h[2 * H:]
    b_hr, b_hz, b_hn = b_h[:H], b_h[H:2 * H], b_h[2 * H:]
    for b in range(B):
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        h = h0[b]
        for t in steps:
            a = W_x @ x[b, t] + b_x
            a_r, a_z, a_n = a[:H], a[H:2 * H], a[2 * H:]
            r = sigmoid(a_r + W_hr @ h + b_hr)
            z = sigmoid(a_z + W_hz @ h + b_hz)
            if linear_before_reset:
                n = np.tanh(a_n + r * (W_hn @ h + b_hn))
            else:
                n = np.tanh(a_n + W_hn @ (r * h) + b_hn)
            h = (1 - z) * n + z * h
            h_seq[b, t] = h
        h_n[b] = h
    h_seq, (h_n,) = _finish(h_seq, [h_n], unbatched, batch_first)
    return h_seq, h_n


def dense(x: ArrayLike, W: ArrayLike, b: Optional[ArrayLike] = None) -> FloatArray:
    """y = x W^T + b over the last axis."""
    W = np.asarray(W)
    y: FloatArray = np.asarray(x, W.dtype) @ W.T
    return y if b is None else y + np.asarray(b, W.dtype)
