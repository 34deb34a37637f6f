"""The stacked-layer driver: several layers, one or two directions, the head.

``Stack`` holds a model's packed weights (one packed layer per layer and
direction, plus the head) and runs them: layer ``l``'s input is layer
``l - 1``'s hidden states, ``[forward, backward]`` concatenated on the last
axis, as ``torch.nn.RNN``/``LSTM``/``GRU`` do. Forward (with or without the
caches backpropagation needs), inter-layer dropout for training, and the
backward from gradients of the top layer's states and of the final states
down to the parameters, the input and the initial states.

States are stacked like PyTorch's: ``(num_layers * D, B, H)`` (``(num_layers
* D, H)`` for an unbatched input) ordered ``l0, l0_reverse, l1, ...``. This
module takes and returns the hidden and cell states separately (``c`` is
``None`` but for LSTM); ``models.py`` turns them into the public structure.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np

from . import _core
from .cells import Cell

__all__ = ["Stack", "StackCache", "map_state", "param_name", "recurrent_param_shapes", "valid_steps"]

RECURRENT_WEIGHTS = ("W_x", "W_h", "b_x", "b_h")


def param_name(kind: str, layer: int, direction: int) -> str:
    """``"W_x_l0"``, ``"b_h_l1_reverse"``, ...: PyTorch's ``state_dict`` names
    with ``W_x``/``W_h``/``b_x``/``b_h`` for ``weight_ih``/``weight_hh``/``bias_ih``/``bias_hh``."""
    return f"{kind}_l{layer}" + ("_reverse" if direction else "")


def recurrent_param_shapes(gates: int, input_size: int, hidden_size: int, num_layers: int,
                           num_directions: int, bias: bool, proj_size: int = 0) -> Dict[str, Tuple[int, ...]]:
    """The recurrent parameters' shapes, in PyTorch's ``state_dict`` order
    (an LSTM's projections ``W_hr`` (P, H) last in each layer-direction, and
    its states, hence ``W_h``'s columns and the next layer's inputs, P wide)."""
    G, H = gates, hidden_size
    S = proj_size or H
    shapes: Dict[str, Tuple[int, ...]] = {}
    for layer in range(num_layers):
        inputs = input_size if layer == 0 else num_directions * S
        for direction in range(num_directions):
            shapes[param_name("W_x", layer, direction)] = (G * H, inputs)
            shapes[param_name("W_h", layer, direction)] = (G * H, S)
            if bias:
                shapes[param_name("b_x", layer, direction)] = (G * H,)
                shapes[param_name("b_h", layer, direction)] = (G * H,)
            if proj_size:
                shapes[param_name("W_hr", layer, direction)] = (proj_size, H)
    return shapes


def recurrent_param_count(gates: int, input_size: int, hidden_size: int, num_layers: int,
                          num_directions: int, bias: bool, proj_size: int = 0) -> Tuple[int, int]:
    """(tensors, numbers) of ``recurrent_param_shapes``, in closed form: a
    model may be asked for 2**32 layers, whose shapes are not worth listing."""
    G, H, D = gates, hidden_size, num_directions
    S = proj_size or H
    biases = 2 * G * H if bias else 0
    projection = proj_size * H
    first = G * H * (input_size + S) + biases + projection
    later = G * H * (D * S + S) + biases + projection
    per_direction = (4 if bias else 2) + (1 if proj_size else 0)
    return num_layers * D * per_direction, D * (first + (num_layers - 1) * later)


def map_state(function: Callable[..., Any], state: Any, *others: Any) -> Any:
    """``function`` applied to a model state's arrays: to the state itself, or
    to each of an LSTM's (h, c) (zipped with ``others`` of the same structure)."""
    if isinstance(state, tuple):
        return tuple(function(*parts) for parts in zip(state, *others))
    return function(state, *others)


def valid_steps(lengths: Optional[np.ndarray], steps: int, batch: Optional[int]) -> Optional[np.ndarray]:
    """The valid positions, (B, T) (or (T,) unbatched, ``batch=None``), or
    None when every step is valid."""
    if lengths is None:
        return None
    lengths = np.asarray(lengths).reshape(-1 if batch is not None else 1)
    mask = np.arange(steps)[None, :] < lengths[:, None]
    if mask.all():
        return None
    return mask if batch is not None else mask[0]


class StackCache:
    """What ``Stack.backward`` needs from ``Stack.forward_cache``: the
    per-layer-direction kernel caches, the dropout masks on each layer's input
    (``None`` where there is none), and the shapes. Opaque to callers."""

    __slots__ = ("caches", "masks", "unbatched", "batch", "dtype")

    def __init__(self, caches: List[List[Any]], masks: List[Optional[np.ndarray]], unbatched: bool,
                 batch: int, dtype: np.dtype) -> None:
        self.caches = caches
        self.masks = masks
        self.unbatched = unbatched
        self.batch = batch
        self.dtype = dtype


class Stack:
    """A model's packed weights and the forward and backward over all layers.

    Parameters
    ----------
    cell : Cell
        What the layers are (see ``cells.py``).
    params : dict of str to ndarray
        The model's parameters, keyed as ``param_name`` says (plus ``"W_o"``,
        ``"b_o"`` for a head).
    config : dict
        The model's configuration (``num_layers``, ``bidirectional``,
        ``hidden_size``, ``bias`` and the cell's options).
    quantized : (precision, tensors), optional
        For a quantized model (``quantize.py``): the recurrent layers are
        packed from its stored tensors (``params`` then holds the float32
        values they stand for, and the head).
    """

    def __init__(self, cell: Cell, params: Dict[str, np.ndarray], config: Dict[str, Any],
                 quantized: Optional[Tuple[str, Dict[str, np.ndarray]]] = None) -> None:
        self.cell = cell
        self.params = params  # the dict packed here (models check it is still theirs)
        self.num_layers = config["num_layers"]
        self.num_directions = 2 if config["bidirectional"] else 1
        self.hidden_size = config["hidden_size"]
        # The width of h: of each direction's outputs and states (P with projections).
        self.state_size = config.get("proj_size", 0) or self.hidden_size
        self.bias = config["bias"]
        self.precision = quantized[0] if quantized else str(config["dtype"])

        def pack(layer: int, d: int) -> Any:
            names = {kind: param_name(kind, layer, d) for kind in RECURRENT_WEIGHTS}
            if quantized is None:
                projection = params.get(param_name("W_hr", layer, d))
                W_x, W_h, b_x, b_h = (params.get(names[kind]) for kind in RECURRENT_WEIGHTS)
                # W_x and W_h are in every model's params.
                return cell.pack(cast(np.ndarray, W_x), cast(np.ndarray, W_h), b_x, b_h, config, projection)
            precision, tensors = quantized
            inputs = config["input_size"] if layer == 0 else self.num_directions * self.hidden_size
            return _core.pack_quantized(
                cell.functional, precision, tensors[names["W_x"]], tensors.get(names["W_x"] + ".scale"),
                tensors[names["W_h"]], tensors.get(names["W_h"] + ".scale"), tensors.get(names["b_x"]),
                tensors.get(names["b_h"]), inputs, self.hidden_size, config.get("activation", "tanh"),
                config.get("linear_before_reset", True))

        self.layers: List[List[Any]] = [[pack(layer, d) for d in range(self.num_directions)]
                                        for layer in range(self.num_layers)]
        self.head = _core.pack_dense(params["W_o"], params["b_o"]) if "W_o" in params else None
        # One layer, one direction: the forward with its head, and a streaming
        # step, are each one C++ call.
        self.single = self.layers[0][0] if self.num_layers == 1 and self.num_directions == 1 else None

    # ------------------------------------------------------------ forward

    def _piece(self, state: Optional[np.ndarray], index: int) -> Optional[np.ndarray]:
        return None if state is None else state[index]

    def _stacked(self, pieces: List[Optional[np.ndarray]]) -> Optional[np.ndarray]:
        return None if pieces[0] is None else np.stack(cast(List[np.ndarray], pieces))

    def forward(self, x: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray], lengths: Any,
                batch_first: bool) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Runs every layer (inference: no caches, no dropout).

        Parameters
        ----------
        x : ndarray, (B, T, I), (T, B, I) when not ``batch_first``, or (T, I)
        h0, c0 : ndarray, (num_layers * D, B, H) or (num_layers * D, H), optional
            The initial states (``c0`` only for LSTM); None means zeros.
        lengths : array_like of int, optional
        batch_first : bool

        Returns
        -------
        top : ndarray
            The last layer's hidden states, shaped like ``x`` with D*H features
            (zero past each length).
        h_n, c_n : ndarray, (num_layers * D, B, H) or (num_layers * D, H)
            The final states; ``c_n`` is None but for LSTM.
        """
        top, h_n, c_n, _ = self._run(x, h0, c0, lengths, batch_first, None)
        return top, h_n, c_n

    def forward_cache(self, x: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray], lengths: Any,
                      batch_first: bool, dropout: float = 0.0, rng: Optional[np.random.Generator] = None
                      ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], StackCache]:
        """``forward``, keeping what ``backward`` needs, with inverted dropout
        of probability ``dropout`` on the input of every layer above the first
        (drawn from ``rng``; training only). Returns ``(top, h_n, c_n, cache)``."""
        masks: List[Optional[np.ndarray]] = [None] * self.num_layers
        top, h_n, c_n, caches = self._run(x, h0, c0, lengths, batch_first, (masks, dropout, rng))
        x = np.asarray(x)
        batch = 1 if x.ndim == 2 else (x.shape[0] if batch_first else x.shape[1])
        return top, h_n, c_n, StackCache(caches, masks, x.ndim == 2, batch, top.dtype)

    def _run(self, x: np.ndarray, h0: Optional[np.ndarray], c0: Optional[np.ndarray], lengths: Any, batch_first: bool,
             training: Optional[Tuple[List[Optional[np.ndarray]], float, Optional[np.random.Generator]]]
             ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray], List[List[Any]]]:
        D = self.num_directions
        h_n: List[np.ndarray] = []
        c_n: List[Optional[np.ndarray]] = []
        caches: List[List[Any]] = []
        inputs = x
        for layer, packed in enumerate(self.layers):
            if training is not None and layer > 0:
                masks, p, rng = training
                if p > 0:
                    # fit passes an rng whenever dropout > 0
                    masks[layer] = dropout_mask(inputs.shape, p, inputs.dtype, cast(np.random.Generator, rng))
                    inputs = inputs * masks[layer]
            outputs = []
            layer_caches = []
            for d, weights in enumerate(packed):
                k = layer * D + d
                if training is None:
                    h_seq, h, c = weights.forward(inputs, self._piece(h0, k), self._piece(c0, k), lengths,
                                                  batch_first, d == 1)
                else:
                    h_seq, h, c, cache = weights.forward_cache(inputs, self._piece(h0, k), self._piece(c0, k),
                                                               lengths, batch_first, d == 1)
                    layer_caches.append(cache)
                outputs.append(h_seq)
                h_n.append(h)
                c_n.append(c)
            caches.append(layer_caches)
            inputs = outputs[0] if D == 1 else np.concatenate(outputs, axis=-1)
        return inputs, np.stack(h_n), self._stacked(c_n), caches

    def layer_step(self, layer: int, x_t: np.ndarray, h: Optional[np.ndarray], c: Optional[np.ndarray]
                   ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """One time step of one (forward-direction) layer: ``x_t`` (B, I) or
        (I,) and the states (B, H) or (H,) (None means zeros) -> the new
        ``(h, c)``, ``c`` None but for LSTM."""
        _, h_n, c_n = self.layers[layer][0].forward(np.expand_dims(x_t, -2), h, c, None, True, False)
        return h_n, c_n

    # ------------------------------------------------------------ the head

    def last_features(self, h_n: np.ndarray) -> np.ndarray:
        """The many-to-one features, (B, D*H) (or (D*H,)): the top layer's
        forward state after each sequence's last valid step and its backward
        state after step 0, i.e. the top layer's final states, concatenated."""
        top = h_n[(self.num_layers - 1) * self.num_directions:]
        return top[0].copy() if self.num_directions == 1 else np.concatenate(list(top), axis=-1)

    def head_forward(self, features: np.ndarray, mask: Optional[np.ndarray] = None,
                     batch_first: bool = True) -> np.ndarray:
        """The head over the last axis (or a copy of ``features`` without a
        head), zero where ``mask`` (from ``valid_steps``) is False."""
        if self.head is None:
            return features
        out = self.head.forward(features)
        if mask is not None:
            batch_major = out if (batch_first or out.ndim == 2) else np.swapaxes(out, 0, 1)
            batch_major[~mask] = 0
        return out

    # ------------------------------------------------------------ backward

    def backward(self, cache: StackCache, d_top: Optional[np.ndarray], dh_n: Optional[np.ndarray],
                 dc_n: Optional[np.ndarray] = None
                 ) -> Tuple[Dict[str, np.ndarray], np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Backpropagation through time over all layers.

        Parameters
        ----------
        cache : StackCache
            From ``forward_cache``.
        d_top : ndarray, shaped like the forward's ``top``, optional
            The gradient with respect to the top layer's hidden states
            (ignored past each length). None means zero.
        dh_n, dc_n : ndarray, shaped like the forward's ``h_n`` / ``c_n``, optional
            The gradients with respect to the final states. None means zero.

        Returns
        -------
        grads : dict
            The recurrent parameters' gradients, keyed like the parameters.
        dx : ndarray
            The gradient with respect to ``x`` (zero past each length).
        dh0, dc0 : ndarray
            The gradients with respect to the initial states, shaped like
            ``h_n`` (``dc0`` None but for LSTM).
        """
        cell, D, H = self.cell, self.num_directions, self.state_size
        grads: Dict[str, np.ndarray] = {}
        dh0: List[Optional[np.ndarray]] = [None] * (self.num_layers * D)
        dc0: List[Optional[np.ndarray]] = [None] * (self.num_layers * D)
        d_seq = d_top
        for layer in range(self.num_layers - 1, -1, -1):
            d_inputs = None
            for d in range(D):
                k = layer * D + d
                piece = None if d_seq is None else (d_seq if D == 1 else d_seq[..., d * H:(d + 1) * H])
                g = cell.backward(cache.caches[layer][d], piece, self._piece(dh_n, k), self._piece(dc_n, k))
                for kind in RECURRENT_WEIGHTS:
                    if self.bias or kind in ("W_x", "W_h"):
                        grads[param_name(kind, layer, d)] = g[kind]
                if "W_hr" in g:
                    grads[param_name("W_hr", layer, d)] = g["W_hr"]
                dh0[k] = g["h0"]
                if cell.has_cell_state:
                    dc0[k] = g["c0"]
                with np.errstate(invalid="ignore"):  # inf + -inf is NaN, quietly (API.md)
                    d_inputs = g["x"] if d_inputs is None else d_inputs + g["x"]
            mask = cache.masks[layer]
            if mask is not None:
                with np.errstate(invalid="ignore"):  # a dropped inf is NaN, as in torch
                    d_inputs = d_inputs * mask
            d_seq = d_inputs
        # Every layer-direction wrote its dh0 and d_inputs (D >= 1): no None is left.
        return (grads, cast(np.ndarray, d_seq), np.stack(cast(List[np.ndarray], dh0)),
                self._stacked(dc0) if cell.has_cell_state else None)


def dropout_mask(shape: Tuple[int, ...], p: float, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Inverted dropout: each element kept with probability 1 - p and scaled
    by 1 / (1 - p), so the expected input is unchanged (all zeros when p = 1)."""
    if p >= 1:
        return np.zeros(shape, dtype)
    keep = rng.random(shape) >= p
    return (keep * (1.0 / (1.0 - p))).astype(dtype)
