"""Reduced-precision inference (API.md section 5): ``model.quantize("bfloat16")``
and ``model.quantize("int8")``.

The weights are quantized here, once, in NumPy, and the quantized values
are what a quantized model stores, saves and pickles; the C++ core packs
them (``_core.pack_quantized``) and its products take them as they are:

``"bfloat16"``
    Each recurrent weight rounded to bfloat16 (nearest even; subnormals to
    zero, as the dot-product instructions read them), kept as its 16-bit
    patterns (``uint16``).
``"int8"``
    Each row of ``W_x`` and ``W_h`` (one gate unit) symmetric int8,
    ``q = round(w / s)`` with ``s = max|row| / 127``, kept with its float32
    scales (``"<name>.scale"``).

Biases, the head (``W_o``, ``b_o``), the gate arithmetic, the cell state and
every output stay float32; inputs and hidden states are converted as each
product reads them (quant_gemm.h). ``params`` of a quantized model are the
float32 values it computes with (dequantized), read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, TypeVar

import numpy as np

from ._arrays import check_choice
from .layers import Stack

if TYPE_CHECKING:  # pragma: no cover
    from ._model import RecurrentModel

_Model = TypeVar("_Model", bound="RecurrentModel")

__all__ = ["PRECISIONS", "quantize_model", "bfloat16_bits", "bfloat16_values", "int8_rows", "QuantizedWeights",
           "quantized_tensors", "tensor_layout"]

PRECISIONS = ("bfloat16", "int8")
QUANTIZED_KINDS = ("W_x", "W_h")  # the weights that are quantized; biases and the head are not


def check_precision(value: Any) -> str:
    return check_choice("precision", value, PRECISIONS, kind="a string")


def bfloat16_bits(w: np.ndarray) -> np.ndarray:
    """float -> bfloat16 bit patterns (uint16): via float32, rounded to nearest
    even; subnormals become signed zero, NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    exponent = u & 0x7F800000
    rounded = ((u.astype(np.uint64) + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    bits = np.where(exponent == 0, (u >> 16) & 0x8000, rounded)
    bits = np.where((u & 0x7FFFFFFF) > 0x7F800000, (u >> 16) | 0x40, bits)
    return bits.astype(np.uint16)


def bfloat16_values(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns -> their float32 values."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def int8_rows(w: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``(q, scale)`` with ``q`` int8 in [-127, 127]
    and ``scale`` float32 (rows,), ``w ~ q * scale[:, None]``."""
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError("int8: the weights hold NaN or Inf, which int8 cannot represent")
    scale = (np.abs(w).max(axis=1, initial=0.0) / 127.0).astype(np.float32)
    divisor = np.where(scale > 0, scale, 1).astype(np.float64)[:, None]
    q = np.clip(np.rint(w / divisor), -127, 127).astype(np.int8)
    return q, scale


def _quantized_name(name: str) -> bool:
    return name.split("_l")[0] in QUANTIZED_KINDS


def quantized_tensors(params: Mapping[str, np.ndarray], precision: str) -> Dict[str, np.ndarray]:
    """What a quantized model stores: the quantized weights (and int8
    scales, ``"<name>.scale"``), the other parameters as float32."""
    tensors: Dict[str, np.ndarray] = {}
    for name, value in params.items():
        if not _quantized_name(name):
            tensors[name] = np.ascontiguousarray(value, dtype=np.float32)
        elif precision == "bfloat16":
            tensors[name] = bfloat16_bits(value)
        else:
            tensors[name], tensors[name + ".scale"] = int8_rows(value)
    return tensors


def tensor_layout(param_shapes: Mapping[str, Tuple[int, ...]], precision: str
                  ) -> Dict[str, Tuple[np.dtype, Tuple[int, ...]]]:
    """Every stored tensor's (dtype, shape) for a model with these parameters:
    what a file must hold, and all it may hold."""
    layout: Dict[str, Tuple[np.dtype, Tuple[int, ...]]] = {}
    for name, shape in param_shapes.items():
        if not _quantized_name(name):
            layout[name] = (np.dtype(np.float32), shape)
        elif precision == "bfloat16":
            layout[name] = (np.dtype(np.uint16), shape)
        else:
            layout[name] = (np.dtype(np.int8), shape)
            layout[name + ".scale"] = (np.dtype(np.float32), shape[:1])
    return layout


def dequantized(tensors: Mapping[str, np.ndarray], param_shapes: Mapping[str, Tuple[int, ...]],
                precision: str) -> Dict[str, np.ndarray]:
    """The float32 values a quantized model computes with, keyed like ``params``."""
    values = {}
    for name in param_shapes:
        if not _quantized_name(name):
            values[name] = np.asarray(tensors[name], dtype=np.float32)
        elif precision == "bfloat16":
            values[name] = bfloat16_values(tensors[name])
        else:
            values[name] = tensors[name].astype(np.float32) * tensors[name + ".scale"][:, None]
    return values


def quantize_model(model: _Model, precision: str) -> _Model:
    """A new model of the same class for inference in reduced precision
    (API.md section 5); this model is unchanged.

    Parameters
    ----------
    precision : "bfloat16" or "int8"
        ``"bfloat16"``: the recurrent weights rounded to bfloat16, products
        with bfloat16 operands and float32 sums. ``"int8"``: symmetric int8
        weights with one scale per row (gate unit), inputs and hidden
        states quantized per row (each sequence and step) as the products
        read them, exact int32 sums. Biases, the head, the gate arithmetic,
        the cell state and every output stay float32, and so do the
        inputs, states and outputs of every method.

    Returns
    -------
    RNN, LSTM or GRU
        Configured like this model with ``dtype="float32"``; its
        ``params`` are the (read-only) values it computes with. Every
        inference method works (``__call__``, ``predict``, ``step``,
        ``generate``, ``evaluate``), as do ``save``, ``to_bytes`` and
        pickling, which store the quantized weights exactly. Training
        (``fit``, ``loss_and_grads``), assigning parameters,
        ``load_state_dict`` and ``to_torch`` raise ``ValueError``.

    Raises
    ------
    ValueError
        For another precision, for a model that is already quantized, for
        int8 weights holding NaN or Inf, and for int8 layers with more
        than 65536 inputs (their int32 sums could overflow).
    """
    precision = check_precision(precision)
    if model.quantized_tensors() is not None:
        raise ValueError(f"quantize: this model is already quantized ({model.precision}); "
                         f"quantize the float model instead")
    if model.config.get("proj_size", 0):
        raise ValueError("quantize: an LSTM with projections (proj_size) has no reduced-precision kernels; "
                         "run it in float32")
    quantized = type(model).declared(dict(model.config, dtype="float32"))
    quantized.set_quantized(precision, quantized_tensors(model.params, precision))
    return quantized


#: The largest int8 scale: any int8 (-128 included) times it is a float32.
MAX_SCALE = np.nextafter(np.float32(np.finfo(np.float32).max / 128), np.float32(0))


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)  # its own copy: the caller's (or a file's) buffer stays theirs
    array.setflags(write=False)
    return array


class QuantizedWeights:
    """A quantized model's weights: the stored tensors, the dequantized
    float32 ``values`` (read-only, for ``params``) and, built on first use,
    the packed layers. The counterpart of ``_params.Weights``."""

    __slots__ = ("values", "tensors", "precision", "_spec", "_stack")

    def __init__(self, spec: Any, precision: str, tensors: Mapping[str, np.ndarray]) -> None:
        """ValueError unless ``tensors`` holds every tensor of
        ``tensor_layout`` with its dtype and shape, and finite scales >= 0;
        packs them at once, so the core's own checks fail here too."""
        if spec.config.get("proj_size", 0):
            raise ValueError("proj_size: an LSTM with projections has no reduced-precision kernels")
        shapes = spec.param_shapes()
        layout = tensor_layout(shapes, precision)
        for name, (dtype, shape) in layout.items():
            value = tensors.get(name)
            if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != shape:
                raise ValueError(f"{name}: expected a {dtype} array of shape {shape}")
            # q * scale must be a float32 too: the dequantized weights are.
            if name.endswith(".scale") and not ((value >= 0).all() and (value <= MAX_SCALE).all()):
                raise ValueError(f"{name}: int8 scales must be in [0, float32 max / 128]")
        self.precision = precision
        self.tensors = {k: _frozen(tensors[k]) for k in layout}
        self.values = {k: _frozen(v) for k, v in dequantized(self.tensors, shapes, precision).items()}
        self._spec = spec
        self._stack: Optional[Stack] = None
        self.packed()

    def packed(self) -> Stack:
        stack = self._stack
        if stack is None:
            stack = self._stack = Stack(self._spec.cell, self.values, self._spec.config,
                                        quantized=(self.precision, self.tensors))
        return stack
