"""Recurrent models that own their weights: ``rnnext.RNN``.

A model keeps its parameters as read-only NumPy arrays (change one by
assigning a new array) and, for speed, packed copies of them in the C++ core,
rebuilt after an assignment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core, generate as _generate, io as _io, train as _train
from ._typing import ArrayLike, DTypeLike

__all__ = ["RNN"]

_ACTIVATIONS = ("tanh", "sigmoid", "relu")


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _check_dtype(value: DTypeLike) -> np.dtype:
    try:
        dtype = np.dtype(value) if value is not None else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.type not in (np.float32, np.float64):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dtype


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class ParameterDict(Mapping):
    """The model's parameters by name; ``params[key] = array`` assigns one
    (shape-checked, cast to the model's dtype). Values are read-only arrays."""

    def __init__(self, model: "RNN") -> None:
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


def _parameter(name: str, doc: str) -> property:
    def get(self):
        return self._params.get(name)

    def set(self, value):
        if name not in self._params:
            raise AttributeError(f"{name}: {self!r} has no such parameter")
        self._assign(name, value)

    return property(get, set, doc=doc)


class RNN:
    """The article's recurrent network: ``h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h)``,
    with an optional linear head ``y_t = W_o h_t + b_o``.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    output_size : int, optional
        O: adds the head ``W_o`` (O, H), ``b_o`` (O,). Without it the outputs
        are the hidden states.
    activation : {"tanh", "sigmoid", "relu"}
    bias : bool
        Whether the cell has ``b_x`` and ``b_h`` (the head always has ``b_o``).
    batch_first : bool
        ``x`` is (B, T, I) when true, (T, B, I) otherwise; states are always
        (1, B, H).
    dtype : "float32" or "float64"
        The dtype of the parameters and of every computation and result.
    seed : int, optional
        Seeds the PyTorch-style initialisation ``U(-1/sqrt(H), 1/sqrt(H))``
        (the head like ``torch.nn.Linear``).
    """

    W_x = _parameter("W_x", "Input weights, (H, I).")
    W_h = _parameter("W_h", "Recurrent weights, (H, H).")
    b_x = _parameter("b_x", "Input bias, (H,); None when bias=False.")
    b_h = _parameter("b_h", "Recurrent bias, (H,); None when bias=False.")
    W_o = _parameter("W_o", "Head weights, (O, H); None without a head.")
    b_o = _parameter("b_o", "Head bias, (O,); None without a head.")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        activation: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        input_size = _check_int("input_size", input_size)
        hidden_size = _check_int("hidden_size", hidden_size)
        if output_size is not None:
            output_size = _check_int("output_size", output_size)
        if not isinstance(activation, str):
            raise TypeError(f"activation: expected a string, got {type(activation).__name__}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of 'tanh', 'sigmoid', 'relu', got {activation!r}")
        dtype = _check_dtype(dtype)
        self._config = {
            "input_size": input_size,
            "hidden_size": hidden_size,
            "output_size": output_size,
            "activation": activation,
            "bias": _check_bool("bias", bias),
            "batch_first": _check_bool("batch_first", batch_first),
            "dtype": dtype.name,
        }
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        self._set_params(self._initial_params(np.random.default_rng(seed)))

    # ------------------------------------------------------------ configuration

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor's arguments (except ``seed``); ``from_config`` inverts it."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: Mapping) -> "RNN":
        """A new model (freshly initialised) with the given configuration."""
        unknown = sorted(set(config) - set(cls._config_keys()))
        if unknown:
            raise ValueError(f"config: unknown keys {unknown} for {cls.__name__}")
        config = dict(config)
        return cls(config.pop("input_size"), config.pop("hidden_size"), **config)

    @staticmethod
    def _config_keys() -> Tuple[str, ...]:
        return ("input_size", "hidden_size", "output_size", "activation", "bias", "batch_first", "dtype")

    input_size = property(lambda self: self._config["input_size"], doc="I.")
    hidden_size = property(lambda self: self._config["hidden_size"], doc="H.")
    output_size = property(lambda self: self._config["output_size"], doc="O, or None without a head.")
    activation = property(lambda self: self._config["activation"], doc="The cell's nonlinearity.")
    bias = property(lambda self: self._config["bias"], doc="Whether the cell has biases.")
    batch_first = property(lambda self: self._config["batch_first"], doc="Layout of x and outputs.")
    dtype = property(lambda self: np.dtype(self._config["dtype"]), doc="Parameter and compute dtype.")

    def __repr__(self) -> str:
        c = self._config
        parts = [str(c["input_size"]), str(c["hidden_size"])]
        if c["output_size"] is not None:
            parts.append(f"output_size={c['output_size']}")
        if c["activation"] != "tanh":
            parts.append(f"activation={c['activation']!r}")
        if not c["bias"]:
            parts.append("bias=False")
        if not c["batch_first"]:
            parts.append("batch_first=False")
        if c["dtype"] != "float32":
            parts.append(f"dtype={c['dtype']}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # ------------------------------------------------------------ parameters

    def _initial_params(self, rng: np.random.Generator) -> Dict[str, np.ndarray]:
        c = self._config
        I, H, O = c["input_size"], c["hidden_size"], c["output_size"]
        bound = 1.0 / np.sqrt(H)
        shapes = {"W_x": (H, I), "W_h": (H, H)}
        if c["bias"]:
            shapes.update(b_x=(H,), b_h=(H,))
        params = {k: rng.uniform(-bound, bound, shape) for k, shape in shapes.items()}
        if O is not None:  # torch.nn.Linear(H, O): kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(H))
            params["W_o"] = rng.uniform(-bound, bound, (O, H))
            params["b_o"] = rng.uniform(-bound, bound, (O,))
        return params

    def _param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        c = self._config
        I, H, O = c["input_size"], c["hidden_size"], c["output_size"]
        shapes = {"W_x": (H, I), "W_h": (H, H)}
        if c["bias"]:
            shapes.update(b_x=(H,), b_h=(H,))
        if O is not None:
            shapes.update(W_o=(O, H), b_o=(O,))
        return shapes

    def _checked_param(self, name: str, value: ArrayLike) -> np.ndarray:
        shapes = self._param_shapes()
        if name not in shapes:
            raise KeyError(f"{type(self).__name__} has no parameter {name!r}; it has {list(shapes)}")
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise TypeError(f"{name}: expected an array of real numbers, got dtype {array.dtype}")
        if array.shape != shapes[name]:
            raise ValueError(f"{name}: expected shape {shapes[name]}, got {array.shape}")
        return np.array(array, dtype=self.dtype, copy=True)

    def _set_params(self, params: Dict[str, np.ndarray]) -> None:
        self._params = {k: _frozen(np.asarray(v, dtype=self.dtype)) for k, v in params.items()}
        self._packed = None

    def _assign(self, name: str, value: ArrayLike) -> None:
        array = self._checked_param(name, value)
        params = dict(self._params)
        params[name] = array
        self._set_params(params)

    @property
    def params(self) -> ParameterDict:
        """Every parameter by name (``W_x``, ``W_h``, ``b_x``, ``b_h``, ``W_o``, ``b_o``)."""
        return ParameterDict(self)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Writable copies of the parameters, keyed like ``params``."""
        return {k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping, strict: bool = True) -> None:
        """Replaces the parameters. With ``strict`` the keys must be exactly
        those of ``params``; otherwise missing keys keep their values and
        unknown keys are ignored. Shapes are always checked, and nothing is
        changed unless every value is valid."""
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

    def _packed_weights(self):
        packed = self._packed  # one read: a concurrent assignment swaps the tuple whole
        if packed is None:
            p, c = self._params, self._config
            layer = _core.pack_rnn(p["W_x"], p["W_h"], p.get("b_x"), p.get("b_h"), c["activation"])
            head = _core.pack_dense(p["W_o"], p["b_o"]) if "W_o" in p else None
            packed = self._packed = (layer, head)
        return packed

    # ------------------------------------------------------------ pickling

    def __getstate__(self) -> Dict[str, Any]:
        return {"config": dict(self._config), "params": {k: np.array(v) for k, v in self._params.items()}}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._config = dict(state["config"])
        self._set_params(state["params"])

    # ------------------------------------------------------------ compute

    def _state_in(self, state: Any, name: str, batch: Optional[int]) -> Optional[np.ndarray]:
        """A model state (1, B, H) / (1, H) as the kernel's (B, H) / (H,)."""
        if state is None:
            return None
        array = np.asarray(state)
        H = self.hidden_size
        expected = (1, H) if batch is None else (1, batch, H)
        if array.shape != expected:
            layout = "(num_layers, H)" if batch is None else "(num_layers, B, H)"
            raise ValueError(f"{name}: expected shape {layout} = {expected}, got {array.shape}")
        return array[0]

    def _batch_of(self, x: np.ndarray) -> Optional[int]:
        if x.ndim != 3:
            return None
        return x.shape[0] if self.batch_first else x.shape[1]

    def __call__(
        self,
        x: ArrayLike,
        h0: Optional[ArrayLike] = None,
        *,
        lengths: Optional[ArrayLike] = None,
        return_sequences: bool = True,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Runs the model over whole sequences.

        Parameters
        ----------
        x : array_like, (B, T, I), (T, B, I) if not ``batch_first``, or (T, I)
        h0 : array_like, (1, B, H) or (1, H), optional
        lengths : array_like of int, (B,), optional
            Valid steps per sequence; outputs past them are zero.
        return_sequences : bool
            True: one output per step, (B, T, O) (or (B, T, H) without a
            head). False: one per sequence, (B, O) or (B, H), from the state
            after each sequence's last valid step (many-to-one).

        Returns
        -------
        out : ndarray
        h_n : ndarray, (1, B, H), or (1, H) for unbatched input
        """
        layer, head = self._packed_weights()
        x = np.asarray(x)
        if x.ndim in (2, 3):
            h0 = self._state_in(h0, "h0", self._batch_of(x))
        out, h_n = layer.forward(x, h0, lengths, self.batch_first, False, head if return_sequences else None)
        if not return_sequences:
            out = head.forward(h_n) if head is not None else h_n.copy()
        return out, h_n[None]

    def predict(
        self, x: ArrayLike, *, lengths: Optional[ArrayLike] = None, batch_size: Optional[int] = None
    ) -> np.ndarray:
        """``self(x, lengths=lengths)[0]``, computed ``batch_size`` sequences at a time."""
        x = np.asarray(x)
        if batch_size is None or x.ndim != 3:
            return self(x, lengths=lengths)[0]
        batch_size = _check_int("batch_size", batch_size)
        axis = 0 if self.batch_first else 1
        lengths = None if lengths is None else np.asarray(lengths)
        parts = []
        for start in range(0, max(x.shape[axis], 1), batch_size):
            part = slice(start, start + batch_size)
            xs = x[part] if axis == 0 else x[:, part]
            parts.append(self(xs, lengths=None if lengths is None else lengths[part])[0])
        return np.concatenate(parts, axis=axis)

    def initial_state(self, batch_size: Optional[int] = None) -> np.ndarray:
        """Zeros shaped like ``h_n``: (1, batch_size, H), or (1, H) when None."""
        if batch_size is None:
            return np.zeros((1, self.hidden_size), self.dtype)
        return np.zeros((1, _check_int("batch_size", batch_size, 0), self.hidden_size), self.dtype)

    def step(self, x_t: ArrayLike, state: Optional[ArrayLike] = None) -> Tuple[np.ndarray, np.ndarray]:
        """One time step for streaming: ``x_t`` (B, I) or (I,) and the state
        (shaped like ``h_n``; None means zeros) -> ``(y_t, state)``, where
        ``y_t`` is the head's output (or ``h_t`` without a head). Kept lean:
        one C++ call, which checks the arguments."""
        layer, head = self._packed or self._packed_weights()
        return layer.step_model(x_t, state, head)

    def generate(self, x0: ArrayLike, steps: int, *, h0: Optional[ArrayLike] = None, mode: str = "continuous",
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
        """
        return _generate.generate(self, x0, steps, h0=h0, mode=mode, temperature=temperature, seed=seed)

    # ------------------------------------------------------------ training

    def loss_and_grads(self, x: ArrayLike, target: ArrayLike, *, loss: str = "mse", h0: Optional[ArrayLike] = None,
                       lengths: Optional[ArrayLike] = None, return_sequences: Optional[bool] = None
                       ) -> Tuple[float, Dict[str, np.ndarray]]:
        """The loss on (x, target) and its gradient for every parameter.

        ``loss`` is ``"mse"`` (mean over valid steps x outputs) or
        ``"cross_entropy"`` (softmax over the last axis against integer class
        ids, mean over valid steps), both as torch's ``reduction="mean"``.
        Targets follow ``x``'s layout. With ``return_sequences=None`` their
        shape decides: ids (B,) or values (B, O) train on each sequence's last
        valid step; ids (B, T) or values (B, T, O) on every valid step.
        Returns ``(loss, grads)``, ``grads`` keyed like ``params``.
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
        """
        return _train.fit(self, x, y, loss=loss, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                          lr=lr, clip_norm=clip_norm, tbptt=tbptt, lengths=lengths,
                          validation_data=validation_data, shuffle=shuffle, callbacks=callbacks, seed=seed,
                          progress=progress)

    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None) -> float:
        """The loss over a data set (the mean over every counted element)."""
        return _train.evaluate(self, x, y, loss=loss, lengths=lengths, batch_size=batch_size)

    # ------------------------------------------------------------ files

    def save(self, file: Union[str, "os.PathLike[str]", IO[bytes]]) -> None:
        """Writes the model as a safetensors file (path or binary file object);
        ``rnnext.load`` reads it back."""
        _io.save(self, file)

    def to_bytes(self) -> bytes:
        """The model file's bytes; ``rnnext.from_bytes`` reads them back."""
        return _io.to_bytes(self)
