"""Recurrent models that own their weights: ``rnnext.RNN``, ``rnnext.LSTM``,
``rnnext.GRU``.

One generic model, ``RecurrentModel``, does everything (parameters, forward,
streaming, generation, training, persistence); each class adds only its
cell's description (``cells.py``) and its constructor's options. The stacked
forward and backward live in ``layers.py``.

A model keeps its parameters as read-only NumPy arrays (change one by
assigning a new array) and, for speed, packed copies of them in the C++ core,
rebuilt after an assignment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import (IO, Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import numpy as np

from . import generate as _generate, io as _io, train as _train
from ._arrays import cast, count_str, require_memory
from ._typing import ArrayLike, DTypeLike
from .cells import GRU_CELL, LSTM_CELL, RNN_CELL, Cell
from .layers import Stack, StackCache, recurrent_param_count, recurrent_param_shapes, valid_steps

__all__ = ["RNN", "LSTM", "GRU", "RecurrentModel", "Gradients"]

_ACTIVATIONS = ("tanh", "sigmoid", "relu")

#: A model's state: the hidden state (num_layers * D, B, H), or an (h, c) pair for LSTM.
State = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {count_str(value)}")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _check_dtype(value: DTypeLike) -> np.dtype:
    try:
        dtype = np.dtype(value) if value is not None else None
    except Exception:  # np.dtype's parser: TypeError, ValueError, also SyntaxError (",f4" is a comma string)
        dtype = None
    if dtype is None or dtype.type not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dtype


def _check_dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout: expected a number, got {type(value).__name__}")
    if not 0 <= value <= 1:  # NaN and ints past float's range fail too (math.isfinite(10**400) raises)
        raise ValueError(f"dropout: expected a probability in [0, 1], got {value}")
    return float(value)


#: The seed that makes a constructor check its configuration and stop before
#: the parameters (RecurrentModel._declared).
_DECLARED = object()


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class ParameterDict(Mapping):
    """The model's parameters by name; ``params[key] = array`` assigns one
    (shape-checked, cast to the model's dtype). Values are read-only arrays."""

    def __init__(self, model: "RecurrentModel") -> None:
        self._model = model

    def __getitem__(self, key: str) -> np.ndarray:
        return self._model._params[key]

    def __setitem__(self, key: str, value: ArrayLike) -> None:
        self._model._assign(key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._model._params)

    def __len__(self) -> int:
        return len(self._model._params)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k!r}: {v.shape}" for k, v in self.items())
        return f"ParameterDict({{{shapes}}})"


# The attribute names of a one-layer, one-direction model, and the keys they stand for.
_SINGLE_LAYER_NAMES = {"W_x": "W_x_l0", "W_h": "W_h_l0", "b_x": "b_x_l0", "b_h": "b_h_l0",
                       "W_o": "W_o", "b_o": "b_o"}


def _parameter(name: str, doc: str) -> property:
    key = _SINGLE_LAYER_NAMES[name]

    def check(self) -> None:
        if self._config["num_layers"] != 1 or self._config["bidirectional"]:
            example = key if key in ("W_o", "b_o") else key + ("_reverse" if self._config["bidirectional"] else "")
            raise AttributeError(
                f"{name}: only a one-layer, one-direction model has .{name}; {self!r} keeps its parameters "
                f"in .params, keyed like PyTorch's state_dict (e.g. .params[{example!r}])")

    def get(self):
        check(self)
        return self._params.get(key)

    def set(self, value):
        check(self)
        if key not in self._params:
            raise AttributeError(f"{name}: {self!r} has no such parameter")
        self._assign(key, value)

    return property(get, set, doc=doc + " Only on one-layer, one-direction models (else see ``params``).")


class Gradients(NamedTuple):
    """What ``RecurrentModel._backward_cache`` returns."""

    params: Dict[str, np.ndarray]
    """The gradient of every parameter, keyed like ``params``."""
    h0: State
    """The gradient with respect to the initial state, structured like ``h0``
    (an ``(dh0, dc0)`` pair for LSTM), also when the forward's ``h0`` was None."""
    x: np.ndarray
    """The gradient with respect to the input, shaped like ``x`` (zero past each length)."""


class ModelCache:
    """What a model's ``_forward_cache`` keeps for ``_backward_cache``:
    the packed weights used (so a later assignment does not change the
    gradients), the layer caches, the head's input and the layout. Opaque."""

    __slots__ = ("stack", "layers", "features", "mask", "return_sequences", "batch_first", "unbatched")

    def __init__(self, stack: Stack, layers: StackCache, features: np.ndarray, mask: Optional[np.ndarray],
                 return_sequences: bool, batch_first: bool, unbatched: bool) -> None:
        self.stack = stack
        self.layers = layers
        self.features = features
        self.mask = mask
        self.return_sequences = return_sequences
        self.batch_first = batch_first
        self.unbatched = unbatched


class RecurrentModel:
    """The generic recurrent model behind ``RNN``, ``LSTM`` and ``GRU``:
    ``num_layers`` stacked layers of one cell, one or two directions, and an
    optional linear head ``y_t = W_o h_t + b_o`` on the last layer's states.

    Not instantiated directly: construct ``rnnext.RNN``, ``rnnext.LSTM`` or
    ``rnnext.GRU``. Subclasses set ``_cell`` (a ``cells.Cell``) and
    ``_CONFIG_KEYS`` (their constructor's options, in order).
    """

    _cell: Cell = RNN_CELL
    _CONFIG_KEYS: Tuple[str, ...] = ()

    W_x = _parameter("W_x", "Input weights, (G*H, I).")
    W_h = _parameter("W_h", "Recurrent weights, (G*H, H).")
    b_x = _parameter("b_x", "Input bias, (G*H,); None when bias=False.")
    b_h = _parameter("b_h", "Recurrent bias, (G*H,); None when bias=False.")
    W_o = _parameter("W_o", "Head weights, (O, H); None without a head.")
    b_o = _parameter("b_o", "Head bias, (O,); None without a head.")

    def _setup(self, config: Dict[str, Any], seed: Optional[int]) -> None:
        """Checks the options every model has, then initialises the parameters."""
        config["input_size"] = _check_int("input_size", config["input_size"])
        config["hidden_size"] = _check_int("hidden_size", config["hidden_size"])
        if config["output_size"] is not None:
            config["output_size"] = _check_int("output_size", config["output_size"])
        config["num_layers"] = _check_int("num_layers", config["num_layers"])
        config["bidirectional"] = _check_bool("bidirectional", config["bidirectional"])
        config["bias"] = _check_bool("bias", config["bias"])
        config["dropout"] = _check_dropout(config["dropout"])
        config["batch_first"] = _check_bool("batch_first", config["batch_first"])
        config["dtype"] = _check_dtype(config["dtype"]).name
        if seed is not None and seed is not _DECLARED:
            _check_int("seed", seed, minimum=0)
        self._config = {key: config[key] for key in self._CONFIG_KEYS}
        if seed is _DECLARED:
            return
        self._check_memory()
        self._set_params(self._initial_params(np.random.default_rng(seed)))

    @classmethod
    def _declared(cls, config: Mapping) -> "RecurrentModel":
        """A model with ``config`` checked as ``from_config`` does, but no
        parameters yet (``_set_params`` gives them): ``from_bytes`` checks a
        file against it before allocating anything the model's size."""
        return cls._from_config(config, _DECLARED)

    def _param_count(self) -> Tuple[int, int]:
        """(tensors, numbers) of the parameters, computed without listing them."""
        c = self._config
        tensors, numbers = recurrent_param_count(self._cell.gates, c["input_size"], c["hidden_size"],
                                                 c["num_layers"], self.num_directions, c["bias"])
        if c["output_size"] is not None:
            tensors, numbers = tensors + 2, numbers + c["output_size"] * (self.num_directions * c["hidden_size"] + 1)
        return tensors, numbers

    def _check_memory(self) -> None:
        """MemoryError before allocating anything when the parameters (drawn
        in float64, stored, and packed by the core) cannot fit in this
        machine's memory, instead of a swap storm or a failure halfway."""
        count = self._param_count()[1]
        c = self._config
        require_memory(count * (8 + 3 * self.dtype.itemsize),
                       f"{type(self).__name__}(input_size={count_str(c['input_size'])}, "
                       f"hidden_size={count_str(c['hidden_size'])}, num_layers={count_str(c['num_layers'])}) "
                       f"has {count_str(count)} parameters and")

    # ------------------------------------------------------------ configuration

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor's arguments (except ``seed``); ``from_config`` inverts it."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: Mapping) -> "RecurrentModel":
        """A new model (freshly initialised) with the given configuration;
        options left out take their defaults."""
        return cls._from_config(config, None)

    @classmethod
    def _from_config(cls, config: Mapping, seed: Any) -> "RecurrentModel":
        if not isinstance(config, Mapping):
            raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
        unknown = sorted(set(config) - set(cls._CONFIG_KEYS))
        if unknown:
            raise ValueError(f"config: unknown keys {unknown} for {cls.__name__}")
        missing = [key for key in ("input_size", "hidden_size") if key not in config]
        if missing:
            raise ValueError(f"config: missing keys {missing} for {cls.__name__}")
        config = dict(config)
        return cls(config.pop("input_size"), config.pop("hidden_size"), **config, seed=seed)

    @classmethod
    def _config_keys(cls) -> Tuple[str, ...]:
        return cls._CONFIG_KEYS

    input_size = property(lambda self: self._config["input_size"], doc="I.")
    hidden_size = property(lambda self: self._config["hidden_size"], doc="H.")
    output_size = property(lambda self: self._config["output_size"], doc="O, or None without a head.")
    num_layers = property(lambda self: self._config["num_layers"], doc="Stacked layers.")
    bidirectional = property(lambda self: self._config["bidirectional"], doc="Whether each layer reads both ways.")
    bias = property(lambda self: self._config["bias"], doc="Whether the cells have biases.")
    dropout = property(lambda self: self._config["dropout"], doc="Dropout between layers during fit.")
    batch_first = property(lambda self: self._config["batch_first"], doc="Layout of x and outputs.")
    dtype = property(lambda self: np.dtype(self._config["dtype"]), doc="Parameter and compute dtype.")

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self._config["bidirectional"] else 1

    def __repr__(self) -> str:
        c = self._config
        parts = [str(c["input_size"]), str(c["hidden_size"])]
        if c["output_size"] is not None:
            parts.append(f"output_size={c['output_size']}")
        if c["num_layers"] != 1:
            parts.append(f"num_layers={c['num_layers']}")
        if c.get("activation", "tanh") != "tanh":
            parts.append(f"activation={c['activation']!r}")
        if not c["bias"]:
            parts.append("bias=False")
        if not c["batch_first"]:
            parts.append("batch_first=False")
        if c["dropout"] != 0:
            parts.append(f"dropout={c['dropout']}")
        if c["bidirectional"]:
            parts.append("bidirectional=True")
        if not c.get("linear_before_reset", True):
            parts.append("linear_before_reset=False")
        if c["dtype"] != "float32":
            parts.append(f"dtype={c['dtype']}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------ parameters

    def _param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Every parameter's shape, in PyTorch's ``state_dict`` order, then the head."""
        c = self._config
        shapes = recurrent_param_shapes(self._cell.gates, c["input_size"], c["hidden_size"], c["num_layers"],
                                        self.num_directions, c["bias"])
        if c["output_size"] is not None:
            shapes.update(W_o=(c["output_size"], self.num_directions * c["hidden_size"]),
                          b_o=(c["output_size"],))
        return shapes

    def _initial_params(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        # PyTorch: every recurrent parameter U(-1/sqrt(H), 1/sqrt(H)); the head as
        # torch.nn.Linear(D*H, O): kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(D*H)), bias alike.
        bound = 1.0 / np.sqrt(self.hidden_size)
        head_bound = 1.0 / np.sqrt(self.num_directions * self.hidden_size)
        params = {}
        for name, shape in self._param_shapes().items():  # drawn in state_dict order
            limit = head_bound if name in ("W_o", "b_o") else bound
            params[name] = rng.uniform(-limit, limit, shape)
        return params

    def _checked_param(self, name: str, value: ArrayLike) -> np.ndarray:
        shapes = self._param_shapes()
        if name not in shapes:
            raise KeyError(f"{type(self).__name__} has no parameter {name!r}; it has {list(shapes)}")
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
        if array.shape != shapes[name]:
            raise ValueError(f"{name}: expected shape {shapes[name]}, got {array.shape}")
        return cast(array, self.dtype, copy=True)

    def _set_params(self, params: Dict[str, np.ndarray]) -> None:
        order = self._param_shapes()
        self._params = {k: _frozen(cast(params[k], self.dtype)) for k in order}
        self._packed: Optional[Stack] = None

    def _assign(self, name: str, value: ArrayLike) -> None:
        array = self._checked_param(name, value)
        params = dict(self._params)
        params[name] = array
        self._set_params(params)

    @property
    def params(self) -> ParameterDict:
        """Every parameter by name, keyed like PyTorch's ``state_dict``:
        ``"W_x_l0"``, ``"W_h_l0"``, ``"b_x_l0"``, ``"b_h_l0"``, then
        ``"..._l0_reverse"`` for the backward direction, ``"..._l1"`` for the
        next layer, and ``"W_o"``, ``"b_o"`` for the head."""
        return ParameterDict(self)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Writable copies of the parameters, keyed like ``params``."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> None:
        """Replaces the parameters. With ``strict`` the keys must be exactly
        those of ``params``; otherwise missing keys keep their values and
        unknown keys are ignored. Shapes are always checked, and nothing is
        changed unless every value is valid.

        A one-layer, one-direction model also accepts the names of rnnext 0.3
        (``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"`` for ``"W_x_l0"``, ...).
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
        state_dict = self._renamed_legacy(state_dict)
        expected = set(self._params)
        given = set(state_dict)
        if strict and given != expected:
            raise ValueError(
                f"state_dict: missing keys {sorted(expected - given)}, "
                f"unexpected keys {sorted(given - expected)}"
            )
        params = dict(self._params)
        for key in given & expected:
            params[key] = self._checked_param(key, state_dict[key])
        self._set_params(params)

    def _renamed_legacy(self, state_dict: Mapping) -> Mapping:
        if self._config["num_layers"] != 1 or self._config["bidirectional"]:
            return state_dict
        renames = {old: new for old, new in _SINGLE_LAYER_NAMES.items()
                   if old != new and old in state_dict and new not in state_dict}
        if not renames:
            return state_dict
        return {renames.get(k, k): v for k, v in state_dict.items()}

    def _packed_weights(self) -> Stack:
        # One read of each: a concurrent assignment swaps the parameter dict
        # whole, and a Stack built from an older dict (a thread that packed
        # while another assigned) is never used once the dict has changed.
        params, packed = self._params, self._packed
        if packed is None or packed.params is not params:
            packed = self._packed = Stack(self._cell, params, self._config)
        return packed

    # ------------------------------------------------------------ pickling

    def __getstate__(self) -> Dict[str, Any]:
        return {"config": dict(self._config), "params": {k: np.array(v) for k, v in self._params.items()}}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        config = dict(state["config"])
        legacy = "num_layers" not in config  # pickled by rnnext 0.3: a one-layer RNN, tensors "W_x", ...
        if legacy:
            config.update(num_layers=1, bidirectional=False, dropout=0.0)
        self._config = config
        self._set_params(self._renamed_legacy(state["params"]) if legacy else state["params"])

    # ------------------------------------------------------------ states

    def _state_shape(self, batch: Optional[int]) -> Tuple[int, ...]:
        rows = self.num_layers * self.num_directions
        return (rows, self.hidden_size) if batch is None else (rows, batch, self.hidden_size)

    def _read_state(self, state: Any, name: str, batch: Optional[int]
                    ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
        """A model state (``h0``, ``state``) checked against the model and the
        batch (None: unbatched) and split into ``(h, c)`` arrays (``c`` None
        but for LSTM; either None for zeros)."""
        if state is None:
            return None, None
        if self._cell.has_cell_state:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{name}: expected an (h, c) pair for {type(self).__name__}, "
                                f"got {type(state).__name__}")
            return (self._state_array(state[0], f"{name}[0]", batch),
                    self._state_array(state[1], f"{name}[1]", batch))
        return self._state_array(state, name, batch), None

    def _state_array(self, value: Any, name: str, batch: Optional[int]) -> Optional[np.ndarray]:
        if value is None:
            return None
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
        expected = self._state_shape(batch)
        if array.shape != expected:
            rows = "num_layers" if self.num_directions == 1 else "num_layers*2"
            layout = f"({rows}, H)" if batch is None else f"({rows}, B, H)"
            raise ValueError(f"{name}: expected shape {layout} = {expected}, got {array.shape}")
        return array

    def _state_out(self, h: np.ndarray, c: Optional[np.ndarray]) -> State:
        return (h, c) if self._cell.has_cell_state else h

    def _batch_of(self, x: np.ndarray) -> Optional[int]:
        if x.ndim != 3:
            return None
        return x.shape[0] if self.batch_first else x.shape[1]

    def initial_state(self, batch_size: Optional[int] = None) -> State:
        """Zeros shaped like ``h_n``: (num_layers*D, batch_size, H), or
        (num_layers*D, H) when None; an (h, c) pair of them for LSTM."""
        if batch_size is not None:
            batch_size = _check_int("batch_size", batch_size, 0)
        shape = self._state_shape(batch_size)
        if self._cell.has_cell_state:
            return np.zeros(shape, self.dtype), np.zeros(shape, self.dtype)
        return np.zeros(shape, self.dtype)

    # ------------------------------------------------------------ forward

    def __call__(
        self,
        x: ArrayLike,
        h0: Optional[State] = None,
        *,
        lengths: Optional[ArrayLike] = None,
        return_sequences: bool = True,
    ) -> Tuple[np.ndarray, State]:
        """Runs the model over whole sequences.

        Parameters
        ----------
        x : array_like, (B, T, I), (T, B, I) if not ``batch_first``, or (T, I)
        h0 : array_like, (num_layers*D, B, H) or (num_layers*D, H), optional
            The initial states, ordered ``l0, l0_reverse, l1, ...``; for LSTM
            an ``(h0, c0)`` pair. None means zeros.
        lengths : array_like of int, (B,), optional
            Valid steps per sequence; outputs past them are zero.
        return_sequences : bool
            True: one output per step, (B, T, O) (or (B, T, D*H) without a
            head). False: one per sequence, (B, O) or (B, D*H) (many-to-one):
            the last layer's forward state after each sequence's last valid
            step and its backward state after step 0, then the head.

        Returns
        -------
        out : ndarray
        h_n : ndarray, (num_layers*D, B, H), or (num_layers*D, H) for unbatched input
            Each layer-direction's final state; an ``(h_n, c_n)`` pair for LSTM.
        """
        stack = self._packed_weights()
        return_sequences = _check_bool("return_sequences", return_sequences)
        x = np.asarray(x)
        batch = self._batch_of(x)
        h0, c0 = self._read_state(h0, "h0", batch) if x.ndim in (2, 3) else (None, None)
        if stack.single is not None:  # one layer, one direction: the forward and its head in one C++ call
            out, h_n, c_n = stack.single.forward(x, None if h0 is None else h0[0], None if c0 is None else c0[0],
                                                 lengths, self.batch_first, False,
                                                 stack.head if return_sequences else None)
            if not return_sequences:
                out = stack.head.forward(h_n) if stack.head is not None else h_n.copy()
            return out, self._state_out(h_n[None], None if c_n is None else c_n[None])
        top, h_n, c_n = stack.forward(x, h0, c0, lengths, self.batch_first)
        if return_sequences:
            mask = valid_steps(lengths, top.shape[1 if self.batch_first and top.ndim == 3 else 0], batch)
            out = stack.head_forward(top, mask, self.batch_first)
        else:
            out = stack.head_forward(stack.last_features(h_n))
        return out, self._state_out(h_n, c_n)

    def predict(
        self, x: ArrayLike, *, lengths: Optional[ArrayLike] = None, batch_size: Optional[int] = None
    ) -> np.ndarray:
        """``self(x, lengths=lengths)[0]``, computed ``batch_size`` sequences at a time."""
        x = np.asarray(x)
        if batch_size is None or x.ndim != 3:
            return self(x, lengths=lengths)[0]
        batch_size = _check_int("batch_size", batch_size)
        axis = 0 if self.batch_first else 1
        batch, steps = x.shape[axis], x.shape[1 - axis]
        # Everything the batches would find wrong, found before the first one
        # is computed.
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.dtype.kind not in "iu":
                raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
            if lengths.shape != (batch,):
                raise ValueError(f"lengths: expected shape ({batch},) (one length per sequence), got {lengths.shape}")
            bad = np.flatnonzero((lengths < 1) | (lengths > steps))
            if bad.size:
                raise ValueError(f"lengths[{bad[0]}] = {lengths[bad[0]]} is outside [1, T] with T = {steps}")
        features = self.output_size if self.output_size is not None else self.num_directions * self.hidden_size
        shape = (batch, steps, features) if axis == 0 else (steps, batch, features)
        require_memory(2 * batch * steps * features * self.dtype.itemsize,  # the batches' outputs, then one array
                       f"predict: the output, {shape} {self.dtype}, with its batches,")
        parts = []
        for start in range(0, max(x.shape[axis], 1), batch_size):
            part = slice(start, start + batch_size)
            xs = x[part] if axis == 0 else x[:, part]
            parts.append(self(xs, lengths=None if lengths is None else lengths[part])[0])
        return np.concatenate(parts, axis=axis)

    # ------------------------------------------------------------ streaming

    def step(self, x_t: ArrayLike, state: Optional[State] = None) -> Tuple[np.ndarray, State]:
        """One time step of every layer, for streaming.

        Parameters
        ----------
        x_t : array_like, (B, I) or (I,)
        state : optional
            Shaped like ``h_n`` ((num_layers, B, H) or (num_layers, H); an
            (h, c) pair for LSTM); None means zeros.

        Returns
        -------
        y_t : ndarray, (B, O) or (O,)
            The head's output, or the last layer's ``h_t`` without a head.
        state : the new state, plain writable arrays shaped like ``h_n``.

        Raises
        ------
        ValueError
            For a bidirectional model (its backward direction needs the whole
            sequence), and for shapes that do not fit.
        """
        stack = self._packed_weights()
        if stack.single is not None:  # one C++ call, which checks the arguments
            return stack.single.step(x_t, state, stack.head)
        if self._config["bidirectional"]:
            raise ValueError(f"step: {self!r} is bidirectional; its backward direction reads whole sequences, "
                             "so it cannot stream (call the model on the sequence instead)")
        x_t = np.asarray(x_t)
        I = self.input_size
        if x_t.dtype.kind not in "fiub":
            raise TypeError(f"x_t: expected an array of real numbers, got dtype {x_t.dtype}")
        if x_t.ndim not in (1, 2) or x_t.shape[-1] != I:
            raise ValueError(f"x_t: expected shape (B, {I}) or ({I},) (input_size {I}), got {x_t.shape}")
        h, c = self._read_state(state, "state", None if x_t.ndim == 1 else x_t.shape[0])
        hs, cs = [], []
        inputs = x_t
        for layer, packed in enumerate(stack.layers):
            h_t, c_t = stack.layer_step(layer, inputs, None if h is None else h[layer],
                                        None if c is None else c[layer])
            hs.append(h_t)
            cs.append(c_t)
            inputs = h_t
        y = stack.head.forward(inputs) if stack.head is not None else inputs.copy()
        stacked = (lambda parts: parts[0][None]) if len(hs) == 1 else np.stack
        return y, self._state_out(stacked(hs), stacked(cs) if self._cell.has_cell_state else None)

    def generate(self, x0: ArrayLike, steps: int, *, h0: Optional[State] = None, mode: str = "continuous",
                 temperature: float = 1.0, seed: Optional[int] = None) -> np.ndarray:
        """One-to-many: runs the prompt ``x0``, then feeds each output back as
        the next input for ``steps`` steps (built on ``step``).

        Parameters
        ----------
        x0 : array_like
            The prompt, laid out like ``x``: (B, T0, I), (T0, B, I) when not
            batch first, or (T0, I). In the token modes an integer ``x0`` with
            one axis fewer holds class ids, (B, T0) ((T0, B)) or (T0,).
        steps : int
            Items to generate; the first is the output after the prompt's
            last step.
        h0 : array_like, optional
            The state before the prompt, shaped like ``h_n``.
        mode : {"continuous", "greedy", "sample"}
            ``continuous`` feeds each output back as it is and returns them,
            (B, steps, O). ``greedy`` and ``sample`` read each output as logits
            over O classes, feed the chosen class back one-hot and return the
            int64 ids, (B, steps). Either way O must equal ``input_size``.
            Results are laid out like ``x`` ((steps, B, ...) when not batch
            first; no batch axis for an unbatched prompt).
        temperature : float
            ``sample`` draws from softmax(logits / temperature).
        seed : int, optional
            Seeds ``sample``.

        Raises
        ------
        ValueError
            For a bidirectional model, and for arguments out of range.
        """
        return _generate.generate(self, x0, steps, h0=h0, mode=mode, temperature=temperature, seed=seed)

    # ------------------------------------------------------------ training

    def _forward_cache(self, x: ArrayLike, h0: Optional[State] = None, *, lengths: Optional[ArrayLike] = None,
                       return_sequences: bool = True, dropout_rng: Optional[np.random.Generator] = None
                       ) -> Tuple[np.ndarray, State, ModelCache]:
        """The forward for training: ``(out, h_n, cache)``, as ``self(...)``
        returns ``(out, h_n)``, plus what ``_backward_cache`` needs.

        Internal API (for training loops such as ``Seq2Seq``). ``x``, ``h0``,
        ``lengths`` and ``return_sequences`` are as in ``__call__`` (``out``
        is zero past each length). With ``dropout_rng`` (a
        ``numpy.random.Generator``) the model's ``dropout`` applies to the
        input of every layer above the first, masks drawn from it; None (the
        default) never drops.
        """
        return_sequences = _check_bool("return_sequences", return_sequences)
        stack = self._packed_weights()
        x = np.asarray(x)
        batch = self._batch_of(x)
        h0, c0 = self._read_state(h0, "h0", batch) if x.ndim in (2, 3) else (None, None)
        p = self._config["dropout"] if dropout_rng is not None else 0.0
        top, h_n, c_n, layers = stack.forward_cache(x, h0, c0, lengths, self.batch_first, p, dropout_rng)
        if return_sequences:
            mask = valid_steps(lengths, top.shape[1 if self.batch_first and top.ndim == 3 else 0], batch)
            features, out = top, stack.head_forward(top, mask, self.batch_first)
        else:
            mask = None
            features = stack.last_features(h_n)
            out = stack.head_forward(features)
        cache = ModelCache(stack, layers, features, mask, return_sequences, self.batch_first, x.ndim == 2)
        return out, self._state_out(h_n, c_n), cache

    def _backward_cache(self, cache: ModelCache, d_out: Optional[ArrayLike] = None,
                        dh_n: Optional[State] = None) -> Gradients:
        """Backpropagation through time from a ``_forward_cache``.

        Internal API (for training loops such as ``Seq2Seq``).

        Parameters
        ----------
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
        dh, dc = self._read_state(dh_n, "dh_n", batch)
        dh = None if dh is None else cast(dh, dtype)
        dc = None if dc is None else cast(dc, dtype)
        grads: Dict[str, np.ndarray] = {}
        d_top = None
        if d_out is not None:
            d_out = cast(d_out, dtype)
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
                H, D = stack.hidden_size, stack.num_directions
                dh = np.zeros(self._state_shape(batch), dtype) if dh is None else dh.copy()
                first = (stack.num_layers - 1) * D
                for d in range(D):
                    dh[first + d] += d_features[..., d * H:(d + 1) * H]
        elif stack.head is not None:
            grads["W_o"] = np.zeros(self._params["W_o"].shape, dtype)
            grads["b_o"] = np.zeros(self._params["b_o"].shape, dtype)
        recurrent, dx, dh0, dc0 = stack.backward(cache.layers, d_top, dh, dc)
        grads.update(recurrent)
        return Gradients({k: grads[k] for k in self._params}, self._state_out(dh0, dc0), dx)

    def loss_and_grads(self, x: ArrayLike, target: ArrayLike, *, loss: str = "mse", h0: Optional[State] = None,
                       lengths: Optional[ArrayLike] = None, return_sequences: Optional[bool] = None
                       ) -> Tuple[float, Dict[str, np.ndarray]]:
        """The loss on (x, target) and its gradient for every parameter.

        ``loss`` is ``"mse"`` (mean over valid steps x outputs) or
        ``"cross_entropy"`` (softmax over the last axis against integer class
        ids, mean over valid steps), both as torch's ``reduction="mean"``.
        Targets follow ``x``'s layout. With ``return_sequences=None`` their
        shape decides: ids (B,) or values (B, O) train on each sequence's last
        valid step; ids (B, T) or values (B, T, O) on every valid step.
        Returns ``(loss, grads)``, ``grads`` keyed like ``params``. No dropout.
        """
        loss = _train.check_loss(loss)
        batch = _train.Batch(self, x, target, loss, lengths, return_sequences)
        value, grads, _, _ = _train.loss_and_grads(self, batch, loss, _train.batched_state(self, h0, batch))
        return value, grads

    def fit(self, x: ArrayLike, y: ArrayLike, *, loss: str, epochs: int = 1, batch_size: int = 32,
            optimizer: str = "adam", lr: float = 1e-3, clip_norm: Optional[float] = None,
            tbptt: Optional[int] = None, lengths: Optional[ArrayLike] = None,
            validation_data: Optional[Sequence] = None, shuffle: bool = True,
            callbacks: Optional[Iterable[Callable[[int, Dict[str, float]], Any]]] = None,
            seed: Optional[int] = None, progress: bool = True) -> Dict[str, List[float]]:
        """Trains the model in place on mini-batches of sequences.

        Parameters
        ----------
        x, y : array_like
            Inputs and targets, read as in ``loss_and_grads``.
        loss : {"mse", "cross_entropy"}
        epochs, batch_size : int
        optimizer : {"adam", "sgd"}
            Adam with torch's defaults, or SGD with momentum 0.9; a fresh
            optimizer state for every call.
        lr : float
        clip_norm : float, optional
            Scales the gradients of each update so their global norm is at
            most ``clip_norm`` (the cure for exploding gradients).
        tbptt : int, optional
            Truncated backpropagation through time: each batch is cut into
            chunks of ``tbptt`` steps, one update per chunk; the state is
            carried from chunk to chunk, the gradient is not. Per-step
            targets only.
        lengths : array_like of int, (B,), optional
        validation_data : (x, y) or (x, y, lengths), optional
            Its loss is computed after every epoch.
        shuffle : bool
            Shuffle the sequences every epoch (seeded by ``seed``).
        callbacks : iterable of callables, optional
            Each called as ``callback(epoch, logs)`` after every epoch;
            returning True stops training.
        seed : int, optional
            Seeds the shuffling and the dropout masks.
        progress : bool
            Show a tqdm progress bar with the running loss.

        Returns
        -------
        dict
            ``"loss"`` (each epoch's mean over counted elements) and, with
            validation data, ``"val_loss"``: one value per epoch.

        Raises
        ------
        FloatingPointError
            When the loss or a gradient stops being finite, naming the epoch
            and batch, before the update that would spread it.

        Notes
        -----
        The model's ``dropout`` applies here only: inverted dropout on the
        input of every layer above the first, fresh masks for every batch
        (and every ``tbptt`` chunk), the gradients masked alike.
        """
        return _train.fit(self, x, y, loss=loss, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                          lr=lr, clip_norm=clip_norm, tbptt=tbptt, lengths=lengths,
                          validation_data=validation_data, shuffle=shuffle, callbacks=callbacks, seed=seed,
                          progress=progress)

    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None) -> float:
        """The loss over a data set (the mean over every counted element)."""
        return _train.evaluate(self, x, y, loss=loss, lengths=lengths, batch_size=batch_size)

    # ------------------------------------------------------------ files and torch

    def save(self, file: Union[str, "os.PathLike[str]", IO[bytes]]) -> None:
        """Writes the model as a safetensors file (path or binary file object);
        ``rnnext.load`` reads it back."""
        _io.save(self, file)

    def to_bytes(self) -> bytes:
        """The model file's bytes; ``rnnext.from_bytes`` reads them back."""
        return _io.to_bytes(self)

    def to_torch(self) -> Any:
        """The same network as a ``torch.nn.RNN``/``LSTM``/``GRU`` (dtype,
        ``batch_first``, ``bias``, ``dropout`` kept): the module, or
        ``(module, head)`` with a ``torch.nn.Linear`` head when the model has
        one. ``rnnext.from_torch`` inverts it exactly.

        Raises
        ------
        ValueError
            For what torch cannot represent: a sigmoid RNN, or a GRU with
            ``linear_before_reset=False``.
        """
        from .interop import to_torch

        return to_torch(self)


def cache_out_shape(cache: ModelCache) -> Tuple[int, ...]:
    """The shape of the forward's ``out`` for a cache."""
    head = cache.stack.head
    features = cache.features.shape
    return features[:-1] + (head.out_features if head is not None else features[-1],)


_COMMON_DOC = """
    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    output_size : int, optional
        O: adds the head ``W_o`` (O, D*H), ``b_o`` (O,) on the last layer's
        states. Without it the outputs are the hidden states.
    num_layers : int
        Stacked layers; layer ``l``'s input is layer ``l - 1``'s hidden states.
    bidirectional : bool
        Each layer also reads every sequence backwards; its features are
        ``[forward, backward]`` (D = 2).{extra}
    bias : bool
        Whether the cells have ``b_x`` and ``b_h`` (the head always has ``b_o``).
    dropout : float
        Dropout probability on the input of every layer above the first,
        during ``fit`` only (never in the forward, ``step`` or ``generate``).
    batch_first : bool
        ``x`` is (B, T, I) when true, (T, B, I) otherwise; states are always
        (num_layers*D, B, H).
    dtype : "float32" or "float64"
        The dtype of the parameters and of every computation and result.
    seed : int, optional
        Seeds the PyTorch-style initialisation ``U(-1/sqrt(H), 1/sqrt(H))``
        (the head like ``torch.nn.Linear(D*H, O)``).

    Parameters are in ``params``, keyed like PyTorch's ``state_dict``
    (``"W_x_l0"``, ``"W_h_l0"``, ``"b_x_l0"``, ``"b_h_l0"``,
    ``"W_x_l0_reverse"``, ..., ``"W_o"``, ``"b_o"``), with G gate blocks
    stacked along the first axis: ``W_x_l{{k}}`` is (G*H, I) for layer 0 and
    (G*H, D*H) above it, ``W_h_l{{k}}`` (G*H, H), the biases (G*H,).
"""


class RNN(RecurrentModel):
    """The article's recurrent network: ``h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h)``,
    stacked ``num_layers`` deep, optionally bidirectional, with an optional
    linear head ``y_t = W_o h_t + b_o`` (G = 1).
    """

    __doc__ += _COMMON_DOC.format(extra="""
    activation : {"tanh", "sigmoid", "relu"}
        f.""")

    _cell = RNN_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "num_layers", "bidirectional", "activation",
                    "bias", "dropout", "batch_first", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        activation: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        if not isinstance(activation, str):
            raise TypeError(f"activation: expected a string, got {type(activation).__name__}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of 'tanh', 'sigmoid', 'relu', got {activation!r}")
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         num_layers=num_layers, bidirectional=bidirectional, activation=activation, bias=bias,
                         dropout=dropout, batch_first=batch_first, dtype=dtype), seed)

    activation = property(lambda self: self._config["activation"], doc="The cell's nonlinearity.")


class LSTM(RecurrentModel):
    """Long short-term memory, PyTorch's equations exactly (gate order i, f,
    g, o; G = 4), stacked ``num_layers`` deep, optionally bidirectional, with
    an optional linear head. States are ``(h, c)`` pairs.
    """

    __doc__ += _COMMON_DOC.format(extra="")

    _cell = LSTM_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "num_layers", "bidirectional", "bias", "dropout",
                    "batch_first", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         num_layers=num_layers, bidirectional=bidirectional, bias=bias, dropout=dropout,
                         batch_first=batch_first, dtype=dtype), seed)


class GRU(RecurrentModel):
    """Gated recurrent unit, PyTorch's equations (gate order r, z, n; G = 3),
    stacked ``num_layers`` deep, optionally bidirectional, with an optional
    linear head.
    """

    __doc__ += _COMMON_DOC.format(extra="""
    linear_before_reset : bool
        True (PyTorch's GRU): ``n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))``.
        False (ONNX's default, Keras' ``reset_after=False``):
        ``n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)``.""")

    _cell = GRU_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "num_layers", "bidirectional", "bias", "dropout",
                    "batch_first", "linear_before_reset", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        linear_before_reset: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        linear_before_reset = _check_bool("linear_before_reset", linear_before_reset)
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         num_layers=num_layers, bidirectional=bidirectional, bias=bias, dropout=dropout,
                         batch_first=batch_first, linear_before_reset=linear_before_reset, dtype=dtype), seed)

    linear_before_reset = property(lambda self: self._config["linear_before_reset"],
                                   doc="Whether r_t multiplies W_hn h_{t-1} + b_hn (PyTorch) or h_{t-1}.")
