"""Model files: safetensors with the configuration as JSON in its metadata.

No pickle anywhere: a file holds named arrays and strings, and everything in
it is checked against the configuration it claims before a model is built,
so a truncated, corrupted, inconsistent or hostile file raises ValueError.
"""

from __future__ import annotations

import json
import math
import os
from typing import IO, TYPE_CHECKING, Any, Dict, Union

import numpy as np

from ._arrays import count_str
from ._core import build_info
from ._params import MODEL_CLASSES
from .quantize import PRECISIONS, tensor_layout

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

__all__ = ["save", "load", "to_bytes", "from_bytes"]

FORMAT = "rnnext"
FORMAT_VERSION = "2"
# Version 1 (rnnext 0.3) held one-layer RNNs with tensors "W_x", "W_h", "b_x",
# "b_h", "W_o", "b_o" and no num_layers/bidirectional/dropout in the config.
# Version 3 (rnnext 0.8) is a quantized model: "precision" in the metadata
# and the tensors of quantize.tensor_layout (older readers refuse it rather
# than misread it); float models are still written as version 2.
QUANTIZED_VERSION = "3"
READABLE_VERSIONS = ("1", FORMAT_VERSION, QUANTIZED_VERSION)
V1_TENSOR_NAMES = {"W_x": "W_x_l0", "W_h": "W_h_l0", "b_x": "b_x_l0", "b_h": "b_h_l0"}
V1_CONFIG_DEFAULTS = {"num_layers": 1, "bidirectional": False, "dropout": 0.0}
MAX_HEADER_BYTES = 100 * 2**20
SAFETENSORS_DTYPES: Dict[Any, np.dtype] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I8": np.dtype("i1"), "U16": np.dtype("<u2")}

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


def to_bytes(model: "RecurrentModel") -> bytes:
    """The model as a safetensors file, in memory."""
    from safetensors.numpy import save as save_arrays

    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": type(model).__name__,
        "config": json.dumps(model.config, sort_keys=True),
        "rnnext_version": build_info()["version"],
    }
    quantized = model.quantized_tensors()
    if quantized is not None:
        metadata.update(format_version=QUANTIZED_VERSION, precision=quantized[0])
    source = model.params.items() if quantized is None else quantized[1].items()
    tensors = {k: np.ascontiguousarray(v) for k, v in source}
    return save_arrays(tensors, metadata=metadata)


def save(model: "RecurrentModel", file: PathOrFile) -> None:
    """Writes the model to a path or a binary file object."""
    data = to_bytes(model)
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(data)
    elif hasattr(file, "write"):
        file.write(data)
    else:
        raise TypeError(f"file: expected a path or a binary file object, got {type(file).__name__}")


def load(file: PathOrFile) -> "RecurrentModel":
    """Reads a model saved by ``save`` (a path or a binary file object); returns
    an instance of the class that was saved."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            data = f.read()
    elif hasattr(file, "read"):
        data = file.read()
    else:
        raise TypeError(f"file: expected a path or a binary file object, got {type(file).__name__}")
    return from_bytes(data)


def _invalid(reason: str) -> ValueError:
    return ValueError(f"not a valid rnnext model file: {reason}")


def _read_header(data: bytes) -> Dict[str, Any]:
    if len(data) < 8:
        raise _invalid(f"{len(data)} bytes is too short for a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_HEADER_BYTES):
        raise _invalid(f"the header claims {size} bytes, the file has {len(data) - 8} after the size field")
    try:
        header = json.loads(bytes(data[8:8 + size]).decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _invalid(f"the header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise _invalid("the header is not a JSON object")
    return header


def from_bytes(data: Union[bytes, bytearray, memoryview]) -> "RecurrentModel":
    """A model from the bytes of a model file (see ``to_bytes``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    header = _read_header(data)
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _invalid("no rnnext metadata (format) in the header")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise _invalid(f"format_version {version!r}; this rnnext reads {' and '.join(map(repr, READABLE_VERSIONS))}")
    classes = MODEL_CLASSES  # a registry: nothing else is ever built from a file
    name = meta.get("class")
    cls = classes.get(name) if isinstance(name, str) else None
    if cls is None or (version == "1" and name != "RNN"):
        raise _invalid(f"unknown model class {name!r}; expected one of {sorted(classes)}")
    try:
        config = json.loads(meta.get("config", ""))
    except (ValueError, RecursionError, TypeError) as e:
        raise _invalid(f"the configuration is not JSON ({e})") from None
    if not isinstance(config, dict):
        raise _invalid("the configuration is not a JSON object")
    if version == "1":
        if any(key in config for key in V1_CONFIG_DEFAULTS):
            raise _invalid(f"a version 1 configuration has no {sorted(V1_CONFIG_DEFAULTS)}")
        config.update(V1_CONFIG_DEFAULTS)
        if any(name in header for name in V1_TENSOR_NAMES.values()):
            raise _invalid("a version 1 file names its tensors W_x, W_h, b_x, b_h")
        header = {V1_TENSOR_NAMES.get(k, k): v for k, v in header.items()}
    precision = meta.get("precision") if version == QUANTIZED_VERSION else None
    if version == QUANTIZED_VERSION and precision not in PRECISIONS:
        raise _invalid(f"a quantized model's precision {precision!r} is not one of {list(PRECISIONS)}")
    if precision is not None and config.get("dtype") != "float32":
        raise _invalid(f"a quantized model computes in float32, its configuration says {config.get('dtype')!r}")
    if "proj_size" in cls.config_keys():
        config.setdefault("proj_size", 0)  # LSTM files written before projections (0.9)
    config.setdefault("vocab_size", None)  # files written before token inputs (0.11)
    missing = sorted(set(cls.config_keys()) - set(config))
    if missing:
        raise _invalid(f"the configuration lacks {missing}")
    # The model the configuration declares, checked but not yet allocated:
    # nothing the size of the model is allocated before the file is known to
    # hold its tensors (a 300-byte file may declare billions of parameters).
    try:
        model = cls.declared(config)
    except (TypeError, ValueError) as e:
        raise _invalid(f"bad configuration: {e}") from None

    # The tensors the configuration implies, and nothing else; counted first,
    # as the configuration may declare millions of layers.
    expected = model.spec.param_count()[0]
    if precision == "int8":  # a scale per quantized weight
        expected += 2 * model.spec.config["num_layers"] * model.spec.num_directions
    if len(header) != expected:
        raise _invalid(f"{len(header)} tensors, {model!r} has {count_str(expected)} parameters")
    shapes = model.spec.param_shapes()
    layout = ({name: (model.dtype, shape) for name, shape in shapes.items()} if precision is None
              else tensor_layout(shapes, precision))
    if set(header) != set(layout):
        raise _invalid(f"tensors {sorted(header)} do not match the parameters {sorted(layout)} of {model!r}")
    data_size = len(data) - 8 - int.from_bytes(data[:8], "little")
    extents = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise _invalid(f"tensor {name!r} has no description")
        want_dtype, want_shape = layout[name]
        dtype = SAFETENSORS_DTYPES.get(info.get("dtype")) if isinstance(info.get("dtype"), str) else None
        if dtype is None or dtype != want_dtype:
            raise _invalid(f"tensor {name!r} has dtype {info.get('dtype')!r}, expected {want_dtype}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or tuple(shape) != want_shape:
            raise _invalid(f"tensor {name!r} has shape {shape!r}, expected {list(want_shape)}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise _invalid(f"tensor {name!r} has bad data_offsets {offsets!r}")
        start, end = offsets
        if not 0 <= start <= end <= data_size or end - start != math.prod(want_shape) * dtype.itemsize:
            raise _invalid(f"tensor {name!r} has data_offsets {offsets!r} that do not fit its shape "
                           f"or the file ({data_size} bytes of data)")
        extents.append((start, end))
    extents.sort()
    position = 0
    for start, end in extents:
        if start != position:
            raise _invalid("tensor data overlaps or leaves gaps")
        position = end
    if position != data_size:
        raise _invalid(f"{data_size - position} bytes of trailing data")

    from safetensors.numpy import load as load_arrays

    try:
        tensors = load_arrays(data)
    except Exception as e:  # the safetensors parser found something the checks above did not
        raise _invalid(str(e)) from None
    if version == "1":
        tensors = {V1_TENSOR_NAMES.get(k, k): v for k, v in tensors.items()}
    if precision is not None:
        try:
            model.set_quantized(precision, tensors)  # the core checks what it packs
        except (TypeError, ValueError) as e:
            raise _invalid(f"bad quantized tensors: {e}") from None
        return model
    model.set_params(tensors)  # names, dtypes and shapes checked above
    return model
