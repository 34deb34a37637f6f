"""A model's configuration and parameters: the checks of the constructor's
options, what a configuration implies (``Spec``: parameter shapes and counts
in closed form, the memory check), the initialisation, the read-only
``ParameterDict`` and assignment with shape checks, and ``state_dict``
loading with the names of rnnext 0.3.

Nothing here imports ``models.py``: the model classes register themselves in
``MODEL_CLASSES`` so that ``io`` and ``interop``, which ``models.py`` imports,
can build them by name.
"""

from __future__ import annotations

import warnings

from collections.abc import Mapping
import typing
from typing import TYPE_CHECKING, Any, Dict, ItemsView, Iterator, Optional, Tuple, Type, ValuesView

import numpy as np

from ._arrays import as_array, cast, check_choice, count_str, require_memory
from ._typing import ArrayLike, DTypeLike
from .cells import Cell
from .layers import Stack, recurrent_param_count, recurrent_param_shapes

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

ACTIVATIONS = ("tanh", "sigmoid", "relu")

#: The classes a model file or a torch module may become, by name ("RNN",
#: "LSTM", "GRU"), filled in by ``models.py``: a registry, so nothing else is
#: ever built from a file, and so ``io`` and ``interop`` need not import
#: ``models`` (which imports them).
MODEL_CLASSES: Dict[str, Type[RecurrentModel]] = {}

#: The seed that makes a constructor check its configuration and stop before
#: the parameters (``RecurrentModel.declared``).
DECLARED = object()

# The attribute names of a one-layer, one-direction model, and the keys they
# stand for (also rnnext 0.3's tensor names).
SINGLE_LAYER_NAMES = {"W_x": "W_x_l0", "W_h": "W_h_l0", "b_x": "b_x_l0", "b_h": "b_h_l0", "W_o": "W_o", "b_o": "b_o"}


# ---------------------------------------------------------------- option checks


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {count_str(value)}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_dtype(value: DTypeLike) -> np.dtype:
    try:
        dtype = np.dtype(value) if value is not None else None
    except Exception:  # np.dtype's parser: TypeError, ValueError, also SyntaxError (",f4" is a comma string)
        dtype = None
    if dtype is None or dtype.type not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dtype


def check_dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout: expected a number, got {type(value).__name__}")
    if not 0 <= value <= 1:  # NaN and ints past float's range fail too (math.isfinite(10**400) raises)
        raise ValueError(f"dropout: expected a probability in [0, 1], got {value}")
    return float(value)


def check_activation(value: Any) -> str:
    return check_choice("activation", value, ACTIVATIONS, kind="a string")


#: The options RNN, LSTM and GRU share, for their docstrings ({extra}: the cell's own).
CONSTRUCTOR_DOC = """
    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    output_size : int, optional
        O: adds the head ``W_o`` (O, D*H), ``b_o`` (O,) on the last layer's
        states. Without it the outputs are the hidden states.
    vocab_size : int, optional
        V: adds an embedding table ``"embedding"`` (V, I) in front of layer
        0 (``torch.nn.Embedding(V, I)``, initialised N(0, 1)); ``x`` is then
        integer token ids, (B, T) ((T, B) when not ``batch_first``) or (T,),
        in [0, V), in every method, and ``fit`` trains the table.
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

    Notes
    -----
    Parameters are in ``params``, keyed like PyTorch's ``state_dict``
    (``"embedding"`` first with ``vocab_size``, then ``"W_x_l0"``,
    ``"W_h_l0"``, ``"b_x_l0"``, ``"b_h_l0"``, ``"W_x_l0_reverse"``, ...,
    ``"W_o"``, ``"b_o"``), with G gate blocks
    stacked along the first axis: ``W_x_l{{k}}`` is (G*H, I) for layer 0 and
    (G*H, D*H) above it, ``W_h_l{{k}}`` (G*H, H), the biases (G*H,).{extra_params}
"""


def checked_config(keys: Tuple[str, ...], config: Dict[str, Any], seed: Any) -> Dict[str, Any]:
    """The options every model has, checked (the cell's own options are
    checked by its constructor), as a configuration with ``keys`` in order."""
    config["input_size"] = check_int("input_size", config["input_size"])
    config["hidden_size"] = check_int("hidden_size", config["hidden_size"])
    if config["output_size"] is not None:
        config["output_size"] = check_int("output_size", config["output_size"])
    if config.get("vocab_size") is not None:
        config["vocab_size"] = check_int("vocab_size", config["vocab_size"])
    config["num_layers"] = check_int("num_layers", config["num_layers"])
    config["bidirectional"] = check_bool("bidirectional", config["bidirectional"])
    config["bias"] = check_bool("bias", config["bias"])
    config["dropout"] = check_dropout(config["dropout"])
    config["batch_first"] = check_bool("batch_first", config["batch_first"])
    config["dtype"] = check_dtype(config["dtype"]).name
    if seed is not None and seed is not DECLARED:
        check_int("seed", seed, minimum=0)
    if config["dropout"] > 0 and config["num_layers"] == 1 and seed is not DECLARED:
        # torch's warning, in torch's words; a model rebuilt from a file or a
        # configuration (DECLARED) was warned about when it was made.
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                      f"expects num_layers greater than 1, but got dropout={config['dropout']} and num_layers=1",
                      UserWarning, stacklevel=4)
    return {key: config[key] for key in keys}


def constructor_arguments(cls: type, keys: Tuple[str, ...], config: Any) -> Dict[str, Any]:
    """A configuration mapping (``from_config``'s argument) checked for
    unknown and missing keys, as a dict the caller may pop from."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config: expected a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - set(keys))
    if unknown:
        raise ValueError(f"config: unknown keys {unknown} for {cls.__name__}")
    missing = [key for key in ("input_size", "hidden_size") if key not in config]
    if missing:
        raise ValueError(f"config: missing keys {missing} for {cls.__name__}")
    return dict(config)


# ---------------------------------------------------------------- what a configuration implies


class Spec:
    """What a model is apart from its parameter values: its class name, its
    cell (``cells.Cell``) and its checked configuration. Treat as read-only.

    Attributes
    ----------
    name : str
        The model's class name, for messages.
    cell : Cell
    config : dict
        The constructor's options, in the class's ``config_keys()`` order.
    """

    __slots__ = ("name", "cell", "config")

    def __init__(self, name: str, cell: Cell, config: Dict[str, Any]) -> None:
        self.name = name
        self.cell = cell
        self.config = config

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.config["bidirectional"] else 1

    @property
    def dtype(self) -> np.dtype:
        """The parameters' and every computation's dtype."""
        return typing.cast(np.dtype, np.dtype(self.config["dtype"]))

    @property
    def state_size(self) -> int:
        """The width of h (each direction's outputs and states): P for an
        LSTM with projections, else H."""
        return typing.cast(int, self.config.get("proj_size", 0) or self.config["hidden_size"])

    @property
    def single_layer(self) -> bool:
        """Whether the model has one layer and one direction (and so ``.W_x``, ...)."""
        return self.config["num_layers"] == 1 and not self.config["bidirectional"]

    def param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """Every parameter's shape, in PyTorch's ``state_dict`` order, then the head."""
        c = self.config
        shapes: Dict[str, Tuple[int, ...]] = {}
        if c.get("vocab_size") is not None:  # first, as torch applies it (and as to_torch returns it)
            shapes["embedding"] = (c["vocab_size"], c["input_size"])
        shapes.update(recurrent_param_shapes(self.cell.gates, c["input_size"], c["hidden_size"], c["num_layers"],
                                        self.num_directions, c["bias"], c.get("proj_size", 0)))
        if c["output_size"] is not None:
            shapes.update(W_o=(c["output_size"], self.num_directions * self.state_size), b_o=(c["output_size"],))
        return shapes

    def param_count(self) -> Tuple[int, int]:
        """(tensors, numbers) of the parameters, computed without listing them
        (a configuration may declare millions of layers)."""
        c = self.config
        tensors, numbers = recurrent_param_count(self.cell.gates, c["input_size"], c["hidden_size"],
                                                 c["num_layers"], self.num_directions, c["bias"],
                                                 c.get("proj_size", 0))
        if c["output_size"] is not None:
            tensors, numbers = tensors + 2, numbers + c["output_size"] * (self.num_directions * self.state_size + 1)
        if c.get("vocab_size") is not None:
            tensors, numbers = tensors + 1, numbers + c["vocab_size"] * c["input_size"]
        return tensors, numbers

    def check_memory(self) -> None:
        """MemoryError before allocating anything when the parameters (drawn
        in float64, stored, and packed by the core) cannot fit in this
        machine's memory, instead of a swap storm or a failure halfway."""
        count = self.param_count()[1]
        c = self.config
        require_memory(count * (8 + 3 * self.dtype.itemsize),
                       f"{self.name}(input_size={count_str(c['input_size'])}, "
                       f"hidden_size={count_str(c['hidden_size'])}, num_layers={count_str(c['num_layers'])}) "
                       f"has {count_str(count)} parameters and")

    def describe(self) -> str:
        """The model's repr, like torch's: the options that differ from the defaults."""
        c = self.config
        parts = [str(c["input_size"]), str(c["hidden_size"])]
        if c["output_size"] is not None:
            parts.append(f"output_size={c['output_size']}")
        if c.get("vocab_size") is not None:
            parts.append(f"vocab_size={c['vocab_size']}")
        if c["num_layers"] != 1:
            parts.append(f"num_layers={c['num_layers']}")
        if c.get("proj_size", 0):
            parts.append(f"proj_size={c['proj_size']}")
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
        return f"{self.name}({', '.join(parts)})"


# ---------------------------------------------------------------- parameter values


def initial_params(spec: Spec, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    # PyTorch: every recurrent parameter U(-1/sqrt(H), 1/sqrt(H)); the head as
    # torch.nn.Linear(D*H, O): kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(D*H)), bias alike.
    bound = 1.0 / np.sqrt(spec.config["hidden_size"])
    head_bound = 1.0 / np.sqrt(spec.num_directions * spec.state_size)
    params = {}
    for name, shape in spec.param_shapes().items():  # drawn in state_dict order: seeded models stay the same
        if name == "embedding":  # torch.nn.Embedding's N(0, 1)
            params[name] = rng.standard_normal(shape)
            continue
        limit = head_bound if name in ("W_o", "b_o") else bound
        params[name] = rng.uniform(-limit, limit, shape)
    return params


def checked_param(spec: Spec, name: str, value: ArrayLike) -> np.ndarray:
    """A new value for parameter ``name``, checked against its shape, as a copy
    in the model's dtype (so the caller's array stays writable and its own)."""
    shapes = spec.param_shapes()
    if name not in shapes:
        raise KeyError(f"{spec.name} has no parameter {name!r}; it has {list(shapes)}")
    array = as_array(value, name, spec.dtype)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
    if array.shape != shapes[name]:
        raise ValueError(f"{name}: expected shape {shapes[name]}, got {array.shape}")
    return cast(array, spec.dtype, copy=True)


def renamed_legacy(spec: Spec, state_dict: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state_dict`` with rnnext 0.3's names (``"W_x"``, ...) renamed, on a
    one-layer, one-direction model, where a name has no current twin."""
    if not spec.single_layer:
        return state_dict
    renames = {old: new for old, new in SINGLE_LAYER_NAMES.items()
               if old != new and old in state_dict and new not in state_dict}
    if not renames:
        return state_dict
    return {renames.get(k, k): v for k, v in state_dict.items()}


def loaded_params(spec: Spec, current: Dict[str, np.ndarray], state_dict: Any, strict: bool
                  ) -> Dict[str, np.ndarray]:
    """The parameters after ``load_state_dict(state_dict, strict)``: every value
    checked before any is used, so a refused call changes nothing."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping, got {type(state_dict).__name__}")
    state_dict = renamed_legacy(spec, state_dict)
    expected = set(current)
    given = set(state_dict)
    if strict and given != expected:
        raise ValueError(
            f"state_dict: missing keys {sorted(expected - given)}, "
            f"unexpected keys {sorted(given - expected)}"
        )
    params = dict(current)
    for key in given & expected:
        params[key] = checked_param(spec, key, state_dict[key])
    return params


def unpickled(name: str, cell: Cell, state: Dict[str, Any]) -> Tuple[Spec, Mapping[str, Any]]:
    """(spec, params) of a pickled model's state, also of one pickled by
    rnnext 0.3 (a one-layer RNN with tensors "W_x", ... and no num_layers)."""
    config = dict(state["config"])
    legacy = "num_layers" not in config
    if legacy:
        config.update(num_layers=1, bidirectional=False, dropout=0.0)
    if cell.has_cell_state:  # pickled before 0.9: no projections
        config.setdefault("proj_size", 0)
    config.setdefault("vocab_size", None)  # pickled before token inputs (0.11)
    spec = Spec(name, cell, config)
    return spec, renamed_legacy(spec, state["params"]) if legacy else state["params"]


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class Weights:
    """One set of parameter values (read-only arrays keyed like
    ``state_dict``, in its order) and, built on first use, their packed copy
    in the C++ core.

    A model swaps its ``Weights`` whole on every assignment, never changes
    one: a forward that took a ``Weights`` runs on one consistent set of
    packed weights however other threads assign meanwhile.
    """

    __slots__ = ("values", "_spec", "_stack")

    def __init__(self, spec: Spec, params: Mapping[str, ArrayLike]) -> None:
        self.values = {k: _frozen(cast(params[k], spec.dtype)) for k in spec.param_shapes()}
        self._spec = spec
        self._stack: Optional[Stack] = None

    def packed(self) -> Stack:
        stack = self._stack
        if stack is None:  # two threads may both pack; either Stack is right
            stack = self._stack = Stack(self._spec.cell, self.values, self._spec.config)
        return stack


# ---------------------------------------------------------------- the model's views of them
# These two reach the model's own storage (``_weights``, ``_assign``): they
# are the model's attributes, defined here with the rest of the parameters.


class ParameterDict(Mapping[str, np.ndarray]):
    """The model's parameters by name; ``params[key] = array`` assigns one
    (shape-checked, cast to the model's dtype). Values are read-only arrays."""

    def __init__(self, model: "RecurrentModel") -> None:
        self._model = model

    def __getitem__(self, key: str) -> np.ndarray:
        return self._model._weights.values[key]

    def __setitem__(self, key: str, value: ArrayLike) -> None:
        self._model._assign(key, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._model._weights.values)

    def __len__(self) -> int:
        return len(self._model._weights.values)

    # items() and values() read one set of values: a save or a copy racing an
    # assignment in another thread gets the old set or the new, never a mix.
    def items(self) -> ItemsView[str, np.ndarray]:
        return self._model._weights.values.items()

    def values(self) -> ValuesView[np.ndarray]:
        return self._model._weights.values.values()

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k!r}: {v.shape}" for k, v in self.items())
        return f"ParameterDict({{{shapes}}})"


def single_layer_parameter(name: str, doc: str) -> Any:  # a property; Any so the model annotates its type
    """The attribute ``name`` (``W_x``, ...) of a one-layer, one-direction
    model; AttributeError naming ``.params`` on the others."""
    key = SINGLE_LAYER_NAMES[name]

    def check(model: "RecurrentModel") -> None:
        if not model._spec.single_layer:
            bidirectional = model._spec.config["bidirectional"]
            example = key if key in ("W_o", "b_o") else key + ("_reverse" if bidirectional else "")
            raise AttributeError(
                f"{name}: only a one-layer, one-direction model has .{name}; {model!r} keeps its parameters "
                f"in .params, keyed like PyTorch's state_dict (e.g. .params[{example!r}])")

    def get(model: "RecurrentModel") -> Optional[np.ndarray]:
        check(model)
        return model._weights.values.get(key)

    def set(model: "RecurrentModel", value: ArrayLike) -> None:
        check(model)
        if key not in model._weights.values:
            raise AttributeError(f"{name}: {model!r} has no such parameter")
        model._assign(key, value)

    return property(get, set, doc=doc + " Only on one-layer, one-direction models (else see ``params``).")
