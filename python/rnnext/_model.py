"""``RecurrentModel``: the one generic model behind ``rnnext.RNN``, ``LSTM``
and ``GRU`` (``models.py``, which documents the design and the package
interface this class implements)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import (IO, TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, Union,
                    overload)

import numpy as np

from . import _forward, _states, generate as _generate, interop as _interop, io as _io, quantize as _quantize
from . import train as _train
from ._forward import Gradients, ModelCache
from ._params import (DECLARED, ParameterDict, Spec, Weights, checked_config, checked_param, constructor_arguments, initial_params,
                      loaded_params, single_layer_parameter, unpickled)
from ._states import State
from ._typing import ArrayLike
from .cells import RNN_CELL, Cell

__all__ = ["RecurrentModel"]

_Method = TypeVar("_Method", bound=Callable[..., Any])
_Model = TypeVar("_Model", bound="RecurrentModel")


def _documented_by(function: Callable[..., Any]) -> Callable[[_Method], _Method]:
    """A method's docstring taken from the function that does its work, so
    the long ones (``fit``, ``generate``) are written once, beside the code."""

    def decorate(method: _Method) -> _Method:
        method.__doc__ = function.__doc__
        return method

    return decorate


# A read-only property over the configuration. Typed Any so that the class
# attribute's annotation (``input_size: int = _option(...)``) gives its type.
def _option(key: str, doc: str) -> Any:
    return property(lambda self: self._spec.config[key], doc=doc)


def _computed(fget: Callable[["RecurrentModel"], Any], doc: str) -> Any:
    """A read-only property, typed like ``_option``."""
    return property(fget, doc=doc)


class RecurrentModel:
    """The generic recurrent model behind ``RNN``, ``LSTM`` and ``GRU``:
    ``num_layers`` stacked layers of one cell, one or two directions, and an
    optional linear head ``y_t = W_o h_t + b_o`` on the last layer's states.

    Not instantiated directly: construct ``rnnext.RNN``, ``rnnext.LSTM`` or
    ``rnnext.GRU``. Subclasses set ``_cell`` (a ``cells.Cell``) and
    ``_CONFIG_KEYS`` (their constructor's options, in order). What the rest
    of the package may use beyond the public API is listed in ``models.py``'s
    docstring ("The package interface").
    """

    _cell: Cell = RNN_CELL
    _CONFIG_KEYS: Tuple[str, ...] = ()
    # The two attributes every model has (both owned by _params.py): _spec,
    # set once, and _weights, swapped whole by every assignment.
    _spec: Spec
    _weights: Weights

    if TYPE_CHECKING:  # what every subclass's constructor takes (MODEL_CLASSES builds models from configs)
        def __init__(self, input_size: int, hidden_size: int, output_size: Optional[int] = None, *,
                     seed: Optional[int] = None, **options: Any) -> None: ...

    W_x: np.ndarray = single_layer_parameter("W_x", "Input weights, (G*H, I).")
    W_h: np.ndarray = single_layer_parameter("W_h", "Recurrent weights, (G*H, H).")
    b_x: Optional[np.ndarray] = single_layer_parameter("b_x", "Input bias, (G*H,); None when bias=False.")
    b_h: Optional[np.ndarray] = single_layer_parameter("b_h", "Recurrent bias, (G*H,); None when bias=False.")
    W_o: Optional[np.ndarray] = single_layer_parameter("W_o", "Head weights, (O, H); None without a head.")
    b_o: Optional[np.ndarray] = single_layer_parameter("b_o", "Head bias, (O,); None without a head.")

    def _setup(self, config: Dict[str, Any], seed: Any) -> None:
        """Checks the options every model has, then initialises the parameters
        (unless ``seed`` is ``DECLARED``)."""
        self._spec = Spec(type(self).__name__, self._cell, checked_config(self._CONFIG_KEYS, config, seed))
        if seed is DECLARED:
            return
        self._spec.check_memory()
        self.set_params(initial_params(self._spec, np.random.default_rng(seed)))

    # ------------------------------------------------------------ the package interface

    @property
    def spec(self) -> Spec:
        """What the model is apart from its parameter values (package interface)."""
        return self._spec

    def set_params(self, params: Mapping[str, ArrayLike]) -> None:
        """Replaces every parameter, unchecked (package interface: callers
        check names and shapes; use ``load_state_dict`` otherwise)."""
        self._require_float("assigning parameters")
        self._weights = Weights(self._spec, params)

    def set_quantized(self, precision: str, tensors: Mapping[str, np.ndarray]) -> None:
        """Makes this (float32-configured) model a quantized one with these
        stored tensors, checked and packed (package interface; see ``quantize.py``)."""
        self._weights = _quantize.QuantizedWeights(self._spec, precision, tensors)  # type: ignore[assignment]

    def quantized_tensors(self) -> Optional[Tuple[str, Dict[str, np.ndarray]]]:
        """``(precision, tensors)`` of a quantized model, None for a float one."""
        weights = getattr(self, "_weights", None)  # a declared model has none yet
        if isinstance(weights, _quantize.QuantizedWeights):
            return weights.precision, weights.tensors
        return None

    def _require_float(self, what: str) -> None:
        weights = getattr(self, "_weights", None)
        if isinstance(weights, _quantize.QuantizedWeights):
            raise ValueError(f"{what}: this model is quantized ({weights.precision}) and is for inference only; "
                             f"train the float model and quantize it again")

    @classmethod
    def config_keys(cls) -> Tuple[str, ...]:
        """The configuration's keys, in the constructor's order."""
        return cls._CONFIG_KEYS

    _config_keys = config_keys

    @classmethod
    def declared(cls: "type[_Model]", config: Mapping[str, Any]) -> _Model:
        """A model with ``config`` checked as ``from_config`` does, but no
        parameters yet (``set_params`` gives them)."""
        return cls._from_config(config, DECLARED)

    def forward_cache(self, x: ArrayLike, h0: Optional[State] = None, *, lengths: Optional[ArrayLike] = None,
                      return_sequences: bool = True, dropout_rng: Optional[np.random.Generator] = None
                      ) -> Tuple[np.ndarray, State, ModelCache]:
        """``(out, h_n, cache)``: the forward for training (package interface);
        see ``_forward.forward_cache``."""
        self._require_float("forward_cache")
        return _forward.forward_cache(self._spec, self._weights, x, h0, lengths=lengths,
                                      return_sequences=return_sequences, dropout_rng=dropout_rng)

    def backward_cache(self, cache: ModelCache, d_out: Optional[ArrayLike] = None,
                       dh_n: Optional[State] = None) -> Gradients:
        """Backpropagation through time from a ``forward_cache`` (package
        interface); see ``_forward.backward_cache``."""
        return _forward.backward_cache(self._spec, cache, d_out, dh_n)

    _forward_cache = forward_cache
    _backward_cache = backward_cache

    # ------------------------------------------------------------ configuration

    @property
    def config(self) -> Dict[str, Any]:
        """The constructor's arguments (except ``seed``); ``from_config`` inverts it."""
        return dict(self._spec.config)

    @classmethod
    def from_config(cls: "type[_Model]", config: Mapping[str, Any]) -> _Model:
        """A new model (freshly initialised) with the given configuration;
        options left out take their defaults."""
        return cls._from_config(config, None)

    @classmethod
    def _from_config(cls: "type[_Model]", config: Mapping[str, Any], seed: Any) -> _Model:
        arguments = constructor_arguments(cls, cls._CONFIG_KEYS, config)
        return cls(arguments.pop("input_size"), arguments.pop("hidden_size"), **arguments, seed=seed)

    input_size: int = _option("input_size", "I.")
    hidden_size: int = _option("hidden_size", "H.")
    output_size: Optional[int] = _option("output_size", "O, or None without a head.")
    vocab_size: Optional[int] = _computed(lambda self: self._spec.config.get("vocab_size"),
                                          doc="V: the embedding table's rows (x is token ids), or None (x is features).")
    num_layers: int = _option("num_layers", "Stacked layers.")
    bidirectional: bool = _option("bidirectional", "Whether each layer reads both ways.")
    bias: bool = _option("bias", "Whether the cells have biases.")
    dropout: float = _option("dropout", "Dropout between layers during fit.")
    batch_first: bool = _option("batch_first", "Layout of x and outputs.")
    dtype: np.dtype = _computed(lambda self: self._spec.dtype, doc="Parameter and compute dtype.")
    num_directions: int = _computed(lambda self: self._spec.num_directions, doc="D: 2 when bidirectional, else 1.")

    def __repr__(self) -> str:
        text = self._spec.describe()
        quantized = self.quantized_tensors()
        return text if quantized is None else f"{text[:-1]}, precision={quantized[0]!r})"

    @property
    def precision(self) -> str:
        """What the model computes in: its dtype (``"float32"``, ``"float64"``),
        or ``"bfloat16"`` / ``"int8"`` for a model made by ``quantize``."""
        quantized = self.quantized_tensors()
        return self._spec.config["dtype"] if quantized is None else quantized[0]

    @_documented_by(_quantize.quantize_model)
    def quantize(self: _Model, precision: str) -> _Model:
        return _quantize.quantize_model(self, precision)

    # ------------------------------------------------------------ parameters

    @property
    def params(self) -> ParameterDict:
        """Every parameter by name, keyed like PyTorch's ``state_dict``:
        ``"embedding"`` (V, I) first with ``vocab_size``, then ``"W_x_l0"``,
        ``"W_h_l0"``, ``"b_x_l0"``, ``"b_h_l0"``, then ``"..._l0_reverse"``
        for the backward direction, ``"..._l1"`` for the next layer, and
        ``"W_o"``, ``"b_o"`` for the head."""
        return ParameterDict(self)

    def _assign(self, name: str, value: ArrayLike) -> None:
        self._require_float(f"assigning {name}")
        array = checked_param(self._spec, name, value)
        params = dict(self._weights.values)
        params[name] = array
        self.set_params(params)

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Writable copies of the parameters, keyed like ``params``."""
        return {k: v.copy() for k, v in self._weights.values.items()}

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike], strict: bool = True) -> None:
        """Replaces the parameters. With ``strict`` the keys must be exactly
        those of ``params``; otherwise missing keys keep their values and
        unknown keys are ignored. Shapes are always checked, and nothing is
        changed unless every value is valid.

        A one-layer, one-direction model also accepts the names of rnnext 0.3
        (``"W_x"``, ``"W_h"``, ``"b_x"``, ``"b_h"`` for ``"W_x_l0"``, ...).
        """
        self._require_float("load_state_dict")
        self.set_params(loaded_params(self._spec, self._weights.values, state_dict, strict))

    def __getstate__(self) -> Dict[str, Any]:
        quantized = self.quantized_tensors()
        if quantized is not None:  # the quantized tensors themselves: nothing is recomputed
            return {"config": dict(self._spec.config), "precision": quantized[0],
                    "tensors": {k: np.array(v) for k, v in quantized[1].items()}}
        return {"config": dict(self._spec.config),
                "params": {k: np.array(v) for k, v in self._weights.values.items()}}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        if "precision" in state:
            self._spec = Spec(type(self).__name__, self._cell, {"vocab_size": None, **state["config"]})
            self.set_quantized(state["precision"], state["tensors"])
            return
        self._spec, params = unpickled(type(self).__name__, self._cell, state)
        self.set_params(params)

    # ------------------------------------------------------------ forward and streaming

    def initial_state(self, batch_size: Optional[int] = None) -> State:
        """Zeros shaped like ``h_n``: (num_layers*D, batch_size, H), or
        (num_layers*D, H) when None; an (h, c) pair of them for LSTM."""
        return _states.initial_state(self._spec, batch_size)

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
            With ``vocab_size``: integer token ids (B, T), (T, B) or (T,),
            in [0, V) where counted (past a length they may hold anything).
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
        return _forward.call(self._spec, self._weights, x, h0, lengths, return_sequences)

    def predict(
        self, x: ArrayLike, *, lengths: Optional[ArrayLike] = None, batch_size: Optional[int] = None
    ) -> np.ndarray:
        """``self(x, lengths=lengths)[0]``, computed ``batch_size`` sequences at a time."""
        return _forward.predict(self, x, lengths, batch_size)

    def step(self, x_t: ArrayLike, state: Optional[State] = None) -> Tuple[np.ndarray, State]:
        """One time step of every layer, for streaming.

        Parameters
        ----------
        x_t : array_like, (B, I) or (I,)
            With ``vocab_size``: token ids (B,) or a scalar.
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
        return _forward.step(self._spec, self._weights, x_t, state)

    @_documented_by(_generate.generate)
    def generate(self, x0: ArrayLike, steps: int, *, h0: Optional[State] = None, mode: str = "continuous",
                 temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
                 eos: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
        return _generate.generate(self, x0, steps, h0=h0, mode=mode, temperature=temperature, top_k=top_k,
                                  top_p=top_p, eos=eos, seed=seed)

    # ------------------------------------------------------------ training

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
        self._require_float("loss_and_grads")
        return _train.model_loss_and_grads(self, x, target, loss=loss, h0=h0, lengths=lengths,
                                           return_sequences=return_sequences)

    @_documented_by(_train.fit)
    def fit(self, x: ArrayLike, y: ArrayLike, *, loss: str, epochs: int = 1, batch_size: int = 32,
            optimizer: Any = "adam", lr: Any = None, clip_norm: Optional[float] = None,
            tbptt: Optional[int] = None, lengths: Optional[ArrayLike] = None,
            validation_data: Optional[Sequence[Any]] = None, shuffle: bool = True,
            callbacks: Optional[Iterable[Callable[[int, Dict[str, float]], Any]]] = None,
            seed: Optional[int] = None, metrics: Optional[Iterable[str]] = None,
            progress: bool = True) -> Dict[str, List[float]]:
        self._require_float("fit")
        return _train.fit(self, x, y, loss=loss, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                          lr=lr, clip_norm=clip_norm, tbptt=tbptt, lengths=lengths,
                          validation_data=validation_data, shuffle=shuffle, callbacks=callbacks, seed=seed,
                          metrics=metrics, progress=progress)

    @overload
    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None, metrics: None = None) -> float: ...
    @overload
    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None, metrics: Iterable[str]) -> Dict[str, float]: ...
    @overload
    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None, metrics: Optional[Iterable[str]] = None
                 ) -> Union[float, Dict[str, float]]: ...
    @_documented_by(_train.evaluate)
    def evaluate(self, x: ArrayLike, y: ArrayLike, *, loss: str, lengths: Optional[ArrayLike] = None,
                 batch_size: Optional[int] = None, metrics: Optional[Iterable[str]] = None
                 ) -> Union[float, Dict[str, float]]:
        return _train.evaluate(self, x, y, loss=loss, lengths=lengths, batch_size=batch_size, metrics=metrics)

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
        ``batch_first``, ``bias``, ``dropout`` kept), with the modules in
        the order they apply: the module, or ``(module, head)`` with a
        ``torch.nn.Linear`` head, and with ``vocab_size`` a
        ``torch.nn.Embedding`` first, ``(embedding, module)`` or
        ``(embedding, module, head)``. ``rnnext.from_torch`` inverts it exactly.

        Raises
        ------
        ValueError
            For what torch cannot represent: a sigmoid RNN, or a GRU with
            ``linear_before_reset=False``.
        """
        self._require_float("to_torch")
        return _interop.to_torch(self)

    @overload
    def to_onnx(self, file: None = None, *, opset: int = 17, lengths: bool = False, state: bool = False) -> bytes: ...
    @overload
    def to_onnx(self, file: Union[str, "os.PathLike[str]", IO[bytes]], *, opset: int = 17, lengths: bool = False,
                state: bool = False) -> None: ...
    def to_onnx(self, file: Any = None, *, opset: int = 17, lengths: bool = False, state: bool = False) -> Optional[bytes]:
        """The model as an ONNX graph (API.md section 6), one ``RNN``/``LSTM``/
        ``GRU`` node per layer and the head as MatMul + Add: written to a path
        or binary file object, or returned as bytes when ``file`` is None.

        The graph's inputs: ``x`` in the model's layout (batch and time axes
        dynamic); with ``lengths=True`` also ``lengths``, int64 (B,) (values
        in [1, T], unchecked); with ``state=True`` also ``h0`` (and ``c0``),
        shaped like ``h_n``. Its outputs ``out``, ``h_n`` (and ``c_n``), as
        ``model(x, lengths=..., h0=...)`` returns them, zeros past the lengths
        included: onnxruntime agrees within rtol 1e-5, atol 1e-6 (float32; its
        recurrent kernels are float32 only). ``opset`` is at least 14 (the
        recurrent ops' ``layout``). ``rnnext.from_onnx`` reads the file back
        exactly. Needs the ``onnx`` package.

        Raises TypeError for a ``file`` of another kind, a non-int ``opset``
        or non-bool ``lengths``/``state``; ValueError for an ``opset`` outside
        [14, the installed onnx's newest], an LSTM with ``proj_size`` (ONNX's
        LSTM has no projection), a model with ``vocab_size`` (not exported
        yet) and a quantized model.
        """
        self._require_float("to_onnx")
        from . import _onnx_export

        return _onnx_export.to_onnx(self, file, opset=opset, lengths=lengths, state=state)


