"""Token inputs (``vocab_size``): reading integer ids as ``x``, the
embedding lookup in front of layer 0, and the table's gradient.

A model with ``vocab_size=V`` has a parameter ``"embedding"`` (V, I), the
weight of ``torch.nn.Embedding(V, I)``. Its ``x`` is ids, (B, T) ((T, B) when
not batch first) or (T,) unbatched, one axis fewer than a model reading
features; ``step`` takes (B,) or a scalar. The lookup ``embedding[ids]``
gives the features the rest of the model reads, so every path after it is
the one a feature model takes, and the table's gradient is the scatter-add
of the gradient with respect to those features (``Gradients.x``).

Ids are checked where they count: past a sequence's length they may hold
anything (padding), as the targets may, and are read as id 0 there (their
features are never used, their gradient rows are zero).

For a model without ``vocab_size``, ``features_error`` turns "wrong shape"
for an integer ``x`` of one axis fewer than expected into a message that
says what was expected and suggests ``vocab_size`` (issue 16: ids given to a
one-hot model used to be reported as a target problem).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ._arrays import as_array
from ._params import Spec

__all__ = ["is_token_model", "read_ids", "embedded", "embedded_step", "embedding_grad", "check_features"]


def is_token_model(spec: Spec) -> bool:
    return spec.config.get("vocab_size") is not None


def _layout(spec: Spec) -> str:
    return "(B, T)" if spec.config["batch_first"] else "(T, B)"


def check_lengths(lengths: Any, batch: Optional[int], steps: int) -> Optional[np.ndarray]:
    """``lengths`` checked as the core checks them (the same words), as
    (B,) int64 (or (1,) unbatched, ``batch`` None); None stays None. The
    ids are checked against them before the core sees either."""
    if lengths is None:
        return None
    a = as_array(lengths, "lengths")
    if a.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected an integer array, got dtype {a.dtype}")
    ok = (a.ndim == 0 or a.shape == (1,)) if batch is None else a.shape == (batch,)
    if not ok:
        expected = "() or (1,)" if batch is None else f"({batch},)"
        raise ValueError(f"lengths: expected shape {expected} (one length per sequence), got {a.shape}")
    a = a.reshape(-1)
    bad = np.flatnonzero((a < 1) | (a > steps))
    if bad.size:
        raise ValueError(f"lengths[{bad[0]}] = {a[bad[0]]} is outside [1, T] with T = {steps}")
    return a.astype(np.int64)


def read_ids(spec: Spec, x: Any, lengths: Any = None, name: str = "x") -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """A token model's sequence input checked: ``(ids, lengths)``, ids int64
    in the model's layout with every id past a length replaced by 0, and the
    lengths checked (None when not given)."""
    V = spec.config["vocab_size"]
    ids = as_array(x, name)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: {spec.describe()} reads integer token ids in [0, {V}) "
                        f"({_layout(spec)} or (T,)), got dtype {ids.dtype}")
    if ids.ndim not in (1, 2):
        raise ValueError(f"{name}: {spec.describe()} reads token ids {_layout(spec)} or (T,) unbatched "
                         f"(vocab_size={V}: one axis fewer than features), got shape {ids.shape}")
    unbatched = ids.ndim == 1
    batch_first = spec.config["batch_first"]
    batch = None if unbatched else ids.shape[0 if batch_first else 1]
    steps = ids.shape[0 if unbatched or not batch_first else 1]
    lengths = check_lengths(lengths, batch, steps)
    bad = (ids < 0) | (ids >= V)
    counted = None
    if lengths is not None:
        counted = np.arange(steps)[None, :] < lengths[:, None]  # (B, T)
        counted = counted[0] if unbatched else (counted if batch_first else counted.T)
        bad &= counted
    if bad.any():
        raise ValueError(f"{name}: token ids must be in [0, {V}) (vocab_size), got {ids[bad].flat[0]}")
    ids = ids.astype(np.int64)
    if counted is not None and not counted.all():
        ids = np.where(counted, ids, 0)
    return ids, lengths


def embedded(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``table[ids]``: (..., I) features in the table's dtype (ids checked)."""
    return np.take(table, ids, axis=0)


def embedded_step(spec: Spec, table: np.ndarray, x_t: Any) -> np.ndarray:
    """``step``'s input of a token model: ids (B,) or a scalar -> (B, I) or (I,)."""
    V = spec.config["vocab_size"]
    ids = as_array(x_t, "x_t")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"x_t: {spec.describe()} reads integer token ids in [0, {V}), (B,) or a scalar, "
                        f"got dtype {ids.dtype}")
    if ids.ndim > 1:
        raise ValueError(f"x_t: {spec.describe()} reads token ids (B,) or a scalar (one step), "
                         f"got shape {ids.shape}")
    bad = (ids < 0) | (ids >= V)
    if bad.any():
        raise ValueError(f"x_t: token ids must be in [0, {V}) (vocab_size), got {ids[bad].flat[0]}")
    return np.take(table, ids.astype(np.int64), axis=0)


def embedding_grad(ids: np.ndarray, dx: np.ndarray, vocab_size: int) -> np.ndarray:
    """The table's gradient, (V, I): row ``v`` sums ``dx`` over the positions
    holding id ``v`` (``ids`` (...), ``dx`` (..., I), zero where not counted).

    The rows of ``dx`` sorted by id (a stable sort: the sums run in input
    order, so the result is deterministic) and summed per id with one
    ``np.add.reduceat``, in float64: at the character-LM size (V=80, I=64,
    B=32, T=64) about 0.6 ms, against 3.8 ms for ``np.add.at`` and 2 ms for
    a flattened ``np.bincount`` (timeit, a busy 2-core machine). Rows of ids
    that do not occur are exactly zero.
    """
    I = dx.shape[-1]
    flat = ids.reshape(-1)
    grad = np.zeros((vocab_size, I), dx.dtype)
    if flat.size == 0:
        return grad
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))
    with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf is NaN, quietly (API.md)
        rows = dx.reshape(-1, I)[order].astype(np.float64)
        grad[ranked[starts]] = np.add.reduceat(rows, starts, axis=0)
    return grad


def check_features(spec: Spec, x: np.ndarray, name: str = "x", step: bool = False) -> None:
    """For a model without ``vocab_size``: ValueError naming ``x`` when it
    looks like token ids (integers, one axis fewer than features, or a last
    axis that is not ``input_size``), saying what was expected and
    suggesting ``vocab_size``. Other shapes are left to the core's checks."""
    if x.dtype.kind not in "iu":
        return
    I = spec.config["input_size"]
    if step:
        looks_like_ids = x.ndim == 0 or (x.ndim == 1 and x.shape[0] != I)
        expected = f"(B, {I}) or ({I},)"
    else:
        looks_like_ids = x.ndim == 1 or (x.ndim == 2 and x.shape[-1] != I)
        expected = ("(B, T, I)" if spec.config["batch_first"] else "(T, B, I)") + f" or (T, I) with I = {I}"
    if looks_like_ids:
        raise ValueError(f"{name}: {spec.describe()} reads features {expected}, got integers of shape {x.shape}; "
                         f"for token ids (B, T) give the model an embedding table "
                         f"(vocab_size=V: {spec.name}({I}, ..., vocab_size=V)), or one-hot encode them")


def sequence_input(spec: Spec, x: Any, lengths: Any) -> Tuple[np.ndarray, bool]:
    """``(x, unbatched)`` of a training batch (``train.Batch``): a token
    model's ids checked against the lengths (before any compute, so ``fit``
    never trains on part of a data set with a bad id), or a feature model's
    ``x`` of rank 2 or 3."""
    if is_token_model(spec):
        ids, _ = read_ids(spec, x, lengths)
        return ids, ids.ndim == 1
    x = as_array(x, "x", spec.dtype)
    check_features(spec, x)
    if x.ndim not in (2, 3):
        raise ValueError(f"x: expected a 2-D or 3-D array, got shape {x.shape}")
    return x, x.ndim == 2
