"""A model's computations over its packed weights: the forward (the model's
``__call__``, ``predict``, ``step``) and, for training, the forward that
keeps a cache and the backpropagation through time from it.

Each function takes the model's ``Spec`` and its current ``Weights`` (packed
once, at the point the model used to pack them); the stacked layers are run
by ``layers.Stack``; a one-layer, one-direction model calls its packed C++
layer directly (the forward with its head, and the streaming step, are each
one call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from ._arrays import as_array, cast, require_memory
from ._params import Spec, Weights, check_bool, check_int
from ._states import State, batch_of, read_state, state_arrays, state_out, state_shape
from ._tokens import check_features, embedded, embedded_step, embedding_grad, is_token_model, read_ids
from ._typing import ArrayLike
from .layers import Stack, StackCache, valid_steps

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel


class Gradients(NamedTuple):
    """What ``RecurrentModel.backward_cache`` returns."""

    params: Dict[str, np.ndarray]
    """The gradient of every parameter, keyed like ``params``."""
    h0: State
    """The gradient with respect to the initial state, structured like ``h0``
    (an ``(dh0, dc0)`` pair for LSTM), also when the forward's ``h0`` was None."""
    x: np.ndarray
    """The gradient with respect to the input, shaped like ``x`` (zero past each length); for a
    model with ``vocab_size``, with respect to the looked-up features, (B, T, I) for ids (B, T)."""


class ModelCache:
    """What a model's ``forward_cache`` keeps for ``backward_cache``:
    the packed weights used (so a later assignment does not change the
    gradients), the layer caches, the head's input, the layout and, for a
    model with ``vocab_size``, the ids looked up (for the table's gradient). Opaque."""

    __slots__ = ("stack", "layers", "features", "mask", "return_sequences", "batch_first", "unbatched", "ids")

    def __init__(self, stack: Stack, layers: StackCache, features: np.ndarray, mask: Optional[np.ndarray],
                 return_sequences: bool, batch_first: bool, unbatched: bool,
                 ids: Optional[np.ndarray] = None) -> None:
        self.ids = ids
        self.stack = stack
        self.layers = layers
        self.features = features
        self.mask = mask
        self.return_sequences = return_sequences
        self.batch_first = batch_first
        self.unbatched = unbatched


def cache_out_shape(cache: ModelCache) -> Tuple[int, ...]:
    """The shape of the forward's ``out`` for a cache."""
    head = cache.stack.head
    features = cache.features.shape
    return features[:-1] + (head.out_features if head is not None else features[-1],)


def _read_h0(spec: Spec, x: np.ndarray, h0: Any) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    # An x of the wrong rank has no batch to check h0 against: the layers
    # name x as the problem instead.
    return read_state(spec, h0, "h0", batch_of(spec, x)) if x.ndim in (2, 3) else (None, None)


def _input(spec: Spec, weights: Weights, x: ArrayLike, lengths: Any
           ) -> Tuple[np.ndarray, Any, Optional[np.ndarray]]:
    """``(features, lengths, ids)``: a token model's ids checked and looked up
    (``ids`` the ids used, lengths checked), or a feature model's ``x`` as it
    is (``ids`` None; integers that look like ids refused naming ``vocab_size``)."""
    if is_token_model(spec):
        ids, lengths = read_ids(spec, x, lengths)
        return embedded(weights.values["embedding"], ids), lengths, ids
    x = as_array(x, "x", spec.dtype)
    lengths = None if lengths is None else as_array(lengths, "lengths")
    check_features(spec, x)
    return x, lengths, None


def _out_mask(spec: Spec, top: np.ndarray, x: np.ndarray, lengths: Any) -> Optional[np.ndarray]:
    batch_first = spec.config["batch_first"]
    return valid_steps(lengths, top.shape[1 if batch_first and top.ndim == 3 else 0], batch_of(spec, x))


# ---------------------------------------------------------------- inference


def call(spec: Spec, weights: Weights, x: ArrayLike, h0: Optional[State], lengths: Optional[ArrayLike],
         return_sequences: bool) -> Tuple[np.ndarray, State]:
    """``model(x, h0, lengths=..., return_sequences=...)``."""
    stack = weights.packed()
    batch_first = spec.config["batch_first"]
    return_sequences = check_bool("return_sequences", return_sequences)
    x, lengths, _ = _input(spec, weights, x, lengths)
    h0, c0 = _read_h0(spec, x, h0)
    if stack.single is not None:  # one layer, one direction: the forward and its head in one C++ call
        out, h_n, c_n = stack.single.forward(x, None if h0 is None else h0[0], None if c0 is None else c0[0],
                                             lengths, batch_first, False, stack.head if return_sequences else None)
        if not return_sequences:
            out = stack.head.forward(h_n) if stack.head is not None else h_n.copy()
        return out, state_out(spec, h_n[None], None if c_n is None else c_n[None])
    top, h_n, c_n = stack.forward(x, h0, c0, lengths, batch_first)
    if return_sequences:
        out = stack.head_forward(top, _out_mask(spec, top, x, lengths), batch_first)
    else:
        out = stack.head_forward(stack.last_features(h_n))
    return out, state_out(spec, h_n, c_n)


def predict(model: "RecurrentModel", x: ArrayLike, lengths: Optional[ArrayLike], batch_size: Optional[int]
            ) -> np.ndarray:
    """``model.predict``: the model's forward ``batch_size`` sequences at a time."""
    spec = model.spec
    if is_token_model(spec):  # every id checked before the first batch is computed
        x, lengths = read_ids(spec, x, lengths)
    x = as_array(x, "x", spec.dtype)
    if batch_size is None or x.ndim != (2 if is_token_model(spec) else 3):
        return model(x, lengths=lengths)[0]
    batch_size = check_int("batch_size", batch_size)
    axis = 0 if spec.config["batch_first"] else 1
    batch, steps = x.shape[axis], x.shape[1 - axis]
    # Everything the batches would find wrong, found before the first one
    # is computed.
    if lengths is not None:
        lengths = as_array(lengths, "lengths")
        if lengths.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
        if lengths.shape != (batch,):
            raise ValueError(f"lengths: expected shape ({batch},) (one length per sequence), got {lengths.shape}")
        bad = np.flatnonzero((lengths < 1) | (lengths > steps))
        if bad.size:
            raise ValueError(f"lengths[{bad[0]}] = {lengths[bad[0]]} is outside [1, T] with T = {steps}")
    c = spec.config
    features = c["output_size"] if c["output_size"] is not None else spec.num_directions * spec.state_size
    shape = (batch, steps, features) if axis == 0 else (steps, batch, features)
    require_memory(2 * batch * steps * features * spec.dtype.itemsize,  # the batches' outputs, then one array
                   f"predict: the output, {shape} {spec.dtype}, with its batches,")
    parts = []
    for start in range(0, max(x.shape[axis], 1), batch_size):
        part = slice(start, start + batch_size)
        xs = x[part] if axis == 0 else x[:, part]
        parts.append(model(xs, lengths=None if lengths is None else lengths[part])[0])
    return np.concatenate(parts, axis=axis)


def step(spec: Spec, weights: Weights, x_t: ArrayLike, state: Optional[State]) -> Tuple[np.ndarray, State]:
    """``model.step(x_t, state)``."""
    stack = weights.packed()
    if is_token_model(spec):
        x_t = embedded_step(spec, weights.values["embedding"], x_t)
    else:
        x_t = as_array(x_t, "x_t", spec.dtype)
        check_features(spec, x_t, "x_t", step=True)
    if stack.single is not None:  # one C++ call, which checks the arguments
        result: Tuple[np.ndarray, State] = stack.single.step(x_t, state_arrays(spec, state, "state"), stack.head)
        return result
    if spec.config["bidirectional"]:
        raise ValueError(f"step: {spec.describe()} is bidirectional; its backward direction reads whole "
                         "sequences, so it cannot stream (call the model on the sequence instead)")
    I = spec.config["input_size"]
    if x_t.dtype.kind not in "fiub":
        raise TypeError(f"x_t: expected an array of real numbers, got dtype {x_t.dtype}")
    if x_t.ndim not in (1, 2) or x_t.shape[-1] != I:
        raise ValueError(f"x_t: expected shape (B, {I}) or ({I},) (input_size {I}), got {x_t.shape}")
    h, c = read_state(spec, state, "state", None if x_t.ndim == 1 else x_t.shape[0])
    hs: List[np.ndarray] = []
    cs: List[Any] = []  # an LSTM's c_t, None for the other cells (then unused)
    inputs = x_t
    for layer in range(len(stack.layers)):
        h_t, c_t = stack.layer_step(layer, inputs, None if h is None else h[layer], None if c is None else c[layer])
        hs.append(h_t)
        cs.append(c_t)
        inputs = h_t
    y = stack.head.forward(inputs) if stack.head is not None else inputs.copy()
    stacked = (lambda parts: parts[0][None]) if len(hs) == 1 else np.stack
    return y, state_out(spec, stacked(hs), stacked(cs) if spec.cell.has_cell_state else None)


# ---------------------------------------------------------------- training


def forward_cache(spec: Spec, weights: Weights, x: ArrayLike, h0: Optional[State] = None, *,
                  lengths: Optional[ArrayLike] = None, return_sequences: bool = True,
                  dropout_rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, State, ModelCache]:
    """The forward for training: ``(out, h_n, cache)``, as the model's call
    returns ``(out, h_n)``, plus what ``backward_cache`` needs.

    ``x``, ``h0``, ``lengths`` and ``return_sequences`` are as in
    ``RecurrentModel.__call__`` (``out`` is zero past each length). With
    ``dropout_rng`` (a ``numpy.random.Generator``) the model's ``dropout``
    applies to the input of every layer above the first, masks drawn from
    it; None (the default) never drops.
    """
    return_sequences = check_bool("return_sequences", return_sequences)
    stack = weights.packed()
    batch_first = spec.config["batch_first"]
    x, lengths, ids = _input(spec, weights, x, lengths)
    h0, c0 = _read_h0(spec, x, h0)
    p = spec.config["dropout"] if dropout_rng is not None else 0.0
    top, h_n, c_n, layers = stack.forward_cache(x, h0, c0, lengths, batch_first, p, dropout_rng)
    if return_sequences:
        mask = _out_mask(spec, top, x, lengths)
        features, out = top, stack.head_forward(top, mask, batch_first)
    else:
        mask = None
        features = stack.last_features(h_n)
        out = stack.head_forward(features)
    cache = ModelCache(stack, layers, features, mask, return_sequences, batch_first, x.ndim == 2, ids)
    return out, state_out(spec, h_n, c_n), cache


def backward_cache(spec: Spec, cache: ModelCache, d_out: Optional[ArrayLike] = None,
                   dh_n: Optional[State] = None) -> Gradients:
    """Backpropagation through time from a ``forward_cache``.

    Parameters
    ----------
    spec : Spec
        The model's.
    cache : ModelCache
        The forward's cache (it holds the weights the forward used).
    d_out : array_like, shaped like the forward's ``out``, optional
        The gradient of the loss with respect to ``out`` (entries past a
        sequence's length are ignored). None means zero.
    dh_n : optional
        The gradient with respect to the forward's ``h_n``, structured
        like it: (num_layers*D, B, H) (or (num_layers*D, H) unbatched), an
        ``(dh_n, dc_n)`` pair for LSTM (either may be None). None means zero.

    Returns
    -------
    Gradients
        ``(params, h0, x)``: every parameter's gradient keyed like
        ``params``, the gradient with respect to the initial state
        (structured like ``h0``: ``(dh0, dc0)`` for LSTM) and with respect
        to ``x``.
    """
    stack, dtype = cache.stack, cache.layers.dtype
    batch = None if cache.unbatched else cache.layers.batch
    dh, dc = read_state(spec, dh_n, "dh_n", batch)
    dh = None if dh is None else cast(dh, dtype)
    dc = None if dc is None else cast(dc, dtype)
    grads: Dict[str, np.ndarray] = {}
    d_top = None
    if d_out is not None:
        d_out = cast(as_array(d_out, "d_out", dtype), dtype)
        if d_out.shape != cache_out_shape(cache):
            raise ValueError(f"d_out: expected shape {cache_out_shape(cache)} (like the forward's out), "
                             f"got {d_out.shape}")
        if cache.mask is not None:  # outputs past a length are constant zeros
            d_out = d_out.copy()
            (d_out if cache.batch_first or d_out.ndim == 2 else np.swapaxes(d_out, 0, 1))[~cache.mask] = 0
        if stack.head is not None:
            grads["W_o"], grads["b_o"], d_features = stack.head.backward(cache.features, d_out)
        else:
            d_features = d_out
        if cache.return_sequences:
            d_top = d_features
        else:  # many-to-one: the features are the top layer's final states
            H, D = stack.state_size, stack.num_directions
            dh = np.zeros(state_shape(spec, batch), dtype) if dh is None else dh.copy()
            first = (stack.num_layers - 1) * D
            for d in range(D):
                dh[first + d] += d_features[..., d * H:(d + 1) * H]
    elif stack.head is not None:
        grads["W_o"] = np.zeros(stack.params["W_o"].shape, dtype)
        grads["b_o"] = np.zeros(stack.params["b_o"].shape, dtype)
    recurrent, dx, dh0, dc0 = stack.backward(cache.layers, d_top, dh, dc)
    grads.update(recurrent)
    if cache.ids is not None:  # the lookup's gradient: dx is zero past each length already
        grads["embedding"] = embedding_grad(cache.ids, dx, stack.params["embedding"].shape[0])
    # In the parameters' order (the forward's are the model's): optimisers and files see that order.
    return Gradients({k: grads[k] for k in stack.params}, state_out(spec, dh0, dc0), dx)
