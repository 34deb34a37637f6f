"""Plain NumPy implementations of rnnext's equations, written to be obviously
right rather than fast. The tests hold every C++ kernel to these.

Arguments and results follow ``rnnext.functional`` exactly; the computation
runs in the weights' dtype (pass float64 arrays for a float64 reference).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["activate", "rnn", "dense"]


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """f(z) for f in tanh, sigmoid, relu; NaN propagates, no warnings."""
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        with np.errstate(over="ignore"):  # exp(-z) = inf gives sigmoid 0, as it should
            return 1.0 / (1.0 + np.exp(-z))
    if name == "relu":
        return np.where(np.isnan(z), z, np.maximum(z, 0))
    raise ValueError(f"activation: expected one of 'tanh', 'sigmoid', 'relu', got {name!r}")


def rnn(x, W_x, W_h, b_x=None, b_h=None, h0=None, *, activation="tanh", lengths=None,
        batch_first=True, reverse=False) -> Tuple[np.ndarray, np.ndarray]:
    """h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h), one step at a time."""
    W_x = np.asarray(W_x)
    W_h = np.asarray(W_h, dtype=W_x.dtype)
    dtype = W_x.dtype
    H = W_h.shape[0]
    b_x = np.zeros(H, dtype) if b_x is None else np.asarray(b_x, dtype)
    b_h = np.zeros(H, dtype) if b_h is None else np.asarray(b_h, dtype)
    x = np.asarray(x, dtype)
    unbatched = x.ndim == 2
    if unbatched:
        x = x[None]
    elif not batch_first:
        x = x.transpose(1, 0, 2)
    B, T, _ = x.shape
    h0 = np.zeros((B, H), dtype) if h0 is None else np.asarray(h0, dtype).reshape(B, H)
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths).reshape(B)

    h_seq = np.zeros((B, T, H), dtype)
    h_n = np.zeros((B, H), dtype)
    for b in range(B):
        steps = range(lengths[b] - 1, -1, -1) if reverse else range(lengths[b])
        h = h0[b]
        for t in steps:
            h = activate(activation, W_x @ x[b, t] + b_x + W_h @ h + b_h)
            h_seq[b, t] = h
        h_n[b] = h

    if unbatched:
        return h_seq[0], h_n[0]
    if not batch_first:
        h_seq = h_seq.transpose(1, 0, 2)
    return h_seq, h_n


def dense(x, W, b=None) -> np.ndarray:
    """y = x W^T + b over the last axis."""
    W = np.asarray(W)
    y = np.asarray(x, W.dtype) @ W.T
    return y if b is None else y + np.asarray(b, W.dtype)
