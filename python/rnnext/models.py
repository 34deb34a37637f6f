"""Recurrent models that own their weights: ``rnnext.RNN``, ``rnnext.LSTM``,
``rnnext.GRU``.

``RecurrentModel`` (``_model.py``) is the one generic model; each class here
adds only its cell's description (``cells.py``) and its constructor's options. The model is thin:
it holds a ``Spec`` and a ``Weights`` (``_params.py``: configuration and
parameters) and hands every computation to the module that owns it:

=============  ==============================================================
``_params``    configuration checks, ``Spec`` (shapes, counts, memory check),
               initialisation, ``ParameterDict``, ``state_dict`` and 0.3 names
``_states``    reading and shaping ``h0``, ``state`` and their gradients
``_forward``   ``__call__``, ``predict``, ``step``, and the training forward
               and backward with their caches (``ModelCache``, ``Gradients``)
``train``      losses, optimisers, ``loss_and_grads``, ``fit``, ``evaluate``
``generate``   ``generate``;  ``io``: model files;  ``interop``: torch
=============  ==============================================================

Imports run one way: ``_params`` <- ``_states`` <- ``_forward`` <- ``train``,
``generate``, ``io``, ``interop`` <- ``models`` <- ``seq2seq``. Nothing below
``models`` imports it (``io`` and ``interop`` find the classes in
``_params.MODEL_CLASSES``).

The package interface
---------------------
What ``train``, ``io``, ``generate``, ``interop`` and ``seq2seq`` may use of
a model besides its public API. Its private attributes (``_spec``,
``_weights``) are touched only by ``_model.py`` and by the parts of the class
that ``_params`` defines (``ParameterDict``, the ``W_x``, ... properties):

``model.spec``
    The ``_params.Spec``: class name, ``cell`` (``cells.Cell``), checked
    ``config``, ``param_shapes()``, ``param_count()``. Read-only.
``model.set_params(params)``
    Replaces every parameter at once, unchecked: ``params`` must have the
    keys and shapes of ``spec.param_shapes()`` (values are cast to the
    model's dtype and made read-only). Read them with ``model.params``.
``model.forward_cache(...)``, ``model.backward_cache(cache, ...)``
    The forward that keeps a ``ModelCache``, and backpropagation through
    time from it (``Gradients``); see ``_forward``. ``_forward_cache`` and
    ``_backward_cache`` are the same methods under their older names.
``model.set_quantized(precision, tensors)``, ``model.quantized_tensors()``
    A quantized model's stored tensors (``quantize.py``): set them all at
    once (checked against ``quantize.tensor_layout``), or read them as
    ``(precision, tensors)`` (None for a float model).
``cls.config_keys()``, ``cls.declared(config)``
    The configuration's keys in order (also ``_config_keys``); a model with
    ``config`` checked but no parameters yet (``set_params`` gives them), so
    ``from_bytes`` checks a file before allocating anything the model's size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

import numpy as np

from ._forward import Gradients, ModelCache, cache_out_shape  # noqa: F401 (names models.py had)
from ._model import RecurrentModel, _option
from ._params import CONSTRUCTOR_DOC, MODEL_CLASSES, check_activation, check_bool, check_int
from ._states import State
from ._typing import ArrayLike, DTypeLike, FloatArray
from .cells import GRU_CELL, LSTM_CELL, RNN_CELL

__all__ = ["RNN", "LSTM", "GRU", "RecurrentModel", "Gradients"]

if TYPE_CHECKING:
    # What the state is, for a type checker: h for RNN and GRU, an (h, c) pair
    # for LSTM. The methods are RecurrentModel's; these bases (only seen by
    # type checkers, RecurrentModel itself at run time) narrow their results.
    class _HiddenStateModel(RecurrentModel):
        def __call__(self, x: ArrayLike, h0: Optional[State] = None, *, lengths: Optional[ArrayLike] = None,
                     return_sequences: bool = True) -> Tuple[FloatArray, FloatArray]: ...
        def step(self, x_t: ArrayLike, state: Optional[State] = None) -> Tuple[FloatArray, FloatArray]: ...
        def initial_state(self, batch_size: Optional[int] = None) -> FloatArray: ...

    class _PairStateModel(RecurrentModel):
        def __call__(self, x: ArrayLike, h0: Optional[State] = None, *, lengths: Optional[ArrayLike] = None,
                     return_sequences: bool = True) -> Tuple[FloatArray, Tuple[FloatArray, FloatArray]]: ...
        def step(self, x_t: ArrayLike, state: Optional[State] = None
                 ) -> Tuple[FloatArray, Tuple[FloatArray, FloatArray]]: ...
        def initial_state(self, batch_size: Optional[int] = None) -> Tuple[FloatArray, FloatArray]: ...
else:
    _HiddenStateModel = _PairStateModel = RecurrentModel


class RNN(_HiddenStateModel):
    """The article's recurrent network: ``h_t = f(W_x x_t + b_x + W_h h_{t-1} + b_h)``,
    stacked ``num_layers`` deep, optionally bidirectional, with an optional
    linear head ``y_t = W_o h_t + b_o`` (G = 1).
    """

    __doc__ += CONSTRUCTOR_DOC.format(extra="""
    activation : {"tanh", "sigmoid", "relu"}
        f.""", extra_params="")

    _cell = RNN_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "vocab_size", "num_layers", "bidirectional",
                    "activation", "bias", "dropout", "batch_first", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        vocab_size: Optional[int] = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        activation: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        activation = check_activation(activation)
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         vocab_size=vocab_size, num_layers=num_layers, bidirectional=bidirectional,
                         activation=activation, bias=bias, dropout=dropout, batch_first=batch_first,
                         dtype=dtype), seed)

    activation: str = _option("activation", "The cell's nonlinearity.")


class LSTM(_PairStateModel):
    """Long short-term memory, PyTorch's equations exactly (gate order i, f,
    g, o; G = 4), stacked ``num_layers`` deep, optionally bidirectional, with
    an optional linear head. States are ``(h, c)`` pairs.
    """

    __doc__ += CONSTRUCTOR_DOC.format(extra="""
    proj_size : int
        P > 0 (P < H): PyTorch's projections, ``h_t = W_hr (o_t * tanh(c_t))``
        with ``W_hr`` (P, H): h states, each direction's outputs and the
        head's inputs are P wide, c states stay H wide.""", extra_params="""
    With ``proj_size``, ``W_h_l{k}`` is (4H, P), layers above the first read
    D*P features, and each layer-direction also has ``W_hr_l{k}`` (P, H).""")

    _cell = LSTM_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "vocab_size", "num_layers", "bidirectional",
                    "proj_size", "bias", "dropout", "batch_first", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        vocab_size: Optional[int] = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        proj_size: int = 0,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        proj_size = check_int("proj_size", proj_size, minimum=0)
        if proj_size and isinstance(hidden_size, (int, np.integer)) and proj_size >= hidden_size:
            raise ValueError(f"proj_size: expected 0 <= proj_size < hidden_size = {hidden_size} "
                             f"(PyTorch's rule), got {proj_size}")
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         vocab_size=vocab_size, num_layers=num_layers, bidirectional=bidirectional,
                         proj_size=proj_size, bias=bias, dropout=dropout, batch_first=batch_first,
                         dtype=dtype), seed)

    proj_size: int = _option("proj_size", "P: the width of h with projections, or 0.")


class GRU(_HiddenStateModel):
    """Gated recurrent unit, PyTorch's equations (gate order r, z, n; G = 3),
    stacked ``num_layers`` deep, optionally bidirectional, with an optional
    linear head.
    """

    __doc__ += CONSTRUCTOR_DOC.format(extra="""
    linear_before_reset : bool
        True (PyTorch's GRU): ``n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))``.
        False (ONNX's default, Keras' ``reset_after=False``):
        ``n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)``.""", extra_params="")

    _cell = GRU_CELL
    _CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "vocab_size", "num_layers", "bidirectional",
                    "bias", "dropout", "batch_first", "linear_before_reset", "dtype")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: Optional[int] = None,
        *,
        vocab_size: Optional[int] = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = True,
        linear_before_reset: bool = True,
        dtype: DTypeLike = "float32",
        seed: Optional[int] = None,
    ) -> None:
        linear_before_reset = check_bool("linear_before_reset", linear_before_reset)
        self._setup(dict(input_size=input_size, hidden_size=hidden_size, output_size=output_size,
                         vocab_size=vocab_size, num_layers=num_layers, bidirectional=bidirectional,
                         bias=bias, dropout=dropout, batch_first=batch_first,
                         linear_before_reset=linear_before_reset, dtype=dtype), seed)

    linear_before_reset: bool = _option("linear_before_reset",
                                        "Whether r_t multiplies W_hn h_{t-1} + b_hn (PyTorch) or h_{t-1}.")


# The classes io and interop build by name (see _params.MODEL_CLASSES).
MODEL_CLASSES.update({cls.__name__: cls for cls in (RNN, LSTM, GRU)})
