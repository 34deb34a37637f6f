"""Keras interop: ``rnnext.from_keras``. keras is imported only here.

Keras stores a layer's weights transposed (``kernel`` (I, G*H),
``recurrent_kernel`` (H, G*H)); LSTM's gate order i, f, c, o is PyTorch's, the
GRU's z, r, h is reordered to r, z, n. Keras's GRU update
``h = z * h_prev + (1 - z) * hh`` is PyTorch's, so ``reset_after=True`` is
rnnext's ``linear_before_reset=True`` (its bias (2, 3H) holds the input and
the recurrent bias) and ``reset_after=False`` is ``linear_before_reset=False``
(one bias).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from ._params import MODEL_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

__all__ = ["from_keras"]

# rnnext's GRU blocks r, z, n as Keras's block indices (Keras: z, r, h).
GRU_BLOCKS = (1, 0, 2)
CELLS = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _refuse(layer: Any, attribute: str, value: Any, why: str) -> None:
    raise ValueError(f"layer: {attribute}={value!r} on {type(layer).__name__} {layer.name!r} {why}")


def _blocks(array: np.ndarray, order: Optional[Tuple[int, ...]], hidden: int) -> np.ndarray:
    """Keras's gate blocks (last axis) in rnnext's order."""
    if order is None:
        return array
    return np.concatenate([array[..., k * hidden:(k + 1) * hidden] for k in order], axis=-1)


def _checked_config(layer: Any) -> Dict[str, Any]:
    """The recurrent layer's options rnnext can represent, or ValueError."""
    config: Dict[str, Any] = layer.get_config()
    name = type(layer).__name__
    if config.get("stateful"):
        _refuse(layer, "stateful", True, "keeps states between calls; pass h0 to the rnnext model instead")
    activation = config.get("activation", "tanh")
    allowed = ("tanh", "sigmoid", "relu") if name == "SimpleRNN" else ("tanh",)
    if activation not in allowed:
        _refuse(layer, "activation", activation, f"is not one rnnext computes (it has {', '.join(allowed)})")
    if name != "SimpleRNN" and config.get("recurrent_activation", "sigmoid") != "sigmoid":
        _refuse(layer, "recurrent_activation", config["recurrent_activation"],
                "is not one rnnext computes (its gates use sigmoid)")
    policy = getattr(layer, "dtype_policy", None)
    if policy is not None and policy.compute_dtype != policy.variable_dtype:
        _refuse(layer, "dtype", policy.name, "computes in another dtype than its weights; rnnext computes in the "
                "weights' dtype (float32 or float64)")
    if not layer.built or not layer.get_weights():
        raise ValueError(f"layer: {name} {layer.name!r} has no weights yet; build it (call it on an input, "
                         f"or layer.build(input_shape)) first")
    return config


def _direction(layer: Any, cls_name: str) -> Dict[str, np.ndarray]:
    """One direction's W_x, W_h (and b_x, b_h) in rnnext's layout."""
    config = layer.get_config()
    weights = layer.get_weights()
    kernel, recurrent = np.asarray(weights[0]), np.asarray(weights[1])
    hidden = recurrent.shape[0]
    order = GRU_BLOCKS if cls_name == "GRU" else None
    out = {"W_x": _blocks(kernel, order, hidden).T.copy(), "W_h": _blocks(recurrent, order, hidden).T.copy()}
    if config.get("use_bias", True):
        bias = np.asarray(weights[2])
        if bias.ndim == 2:  # GRU reset_after: (input bias, recurrent bias)
            out["b_x"], out["b_h"] = _blocks(bias[0], order, hidden), _blocks(bias[1], order, hidden)
        else:
            out["b_x"], out["b_h"] = _blocks(bias, order, hidden), np.zeros_like(bias)
    return out


# The options that change what a layer computes at inference (dropout,
# initialisers, unroll and the like do not).
COMPUTING_OPTIONS = ("units", "activation", "recurrent_activation", "use_bias", "reset_after", "dtype")


def _same_options(forward: Dict[str, Any], backward: Dict[str, Any]) -> List[str]:
    return sorted(k for k in COMPUTING_OPTIONS if forward.get(k) != backward.get(k))


def from_keras(layer: Any, head: Optional[Any] = None) -> "RecurrentModel":
    import keras

    recurrent_classes = {getattr(keras.layers, name): name for name in CELLS}
    bidirectional = isinstance(layer, keras.layers.Bidirectional)
    if bidirectional:
        merge_mode = layer.merge_mode
        if merge_mode != "concat":
            _refuse(layer, "merge_mode", merge_mode, "is not rnnext's (its directions' features are concatenated)")
        directions = [layer.forward_layer, layer.backward_layer]
    else:
        directions = [layer]
    kind = next((name for cls, name in recurrent_classes.items() if type(directions[0]) is cls), None)
    if kind is None or (bidirectional and type(directions[1]) is not type(directions[0])):
        got = type(directions[0]).__name__ if bidirectional else type(layer).__name__
        raise TypeError("layer: expected a keras.layers.SimpleRNN, LSTM or GRU, or a keras.layers.Bidirectional "
                        f"of one, got {'Bidirectional of ' if bidirectional else ''}{got}")
    configs = [_checked_config(d) for d in directions]
    if not bidirectional and configs[0].get("go_backwards"):
        _refuse(layer, "go_backwards", True, "alone (one direction read backwards) is not an rnnext model; "
                "reverse the sequences, or use Bidirectional")
    if bidirectional:
        if configs[0].get("go_backwards") or not configs[1].get("go_backwards"):
            _refuse(layer, "go_backwards", configs[0].get("go_backwards"),
                    "on the forward layer: rnnext's backward direction is the second")
        differ = _same_options(configs[0], configs[1])
        if differ:
            raise ValueError(f"layer: the backward layer of {layer.name!r} differs from the forward one in "
                             f"{differ}; rnnext's directions share their options")
    cls_name = CELLS[kind]
    config = configs[0]
    weights = [_direction(d, cls_name) for d in directions]
    dtype = weights[0]["W_x"].dtype
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"layer: expected float32 or float64 weights, got {dtype}")
    hidden = weights[0]["W_h"].shape[1]
    features = hidden * len(directions)
    head_weights = None
    if head is not None:
        if not isinstance(head, keras.layers.Dense):
            raise TypeError(f"head: expected a keras.layers.Dense, got {type(head).__name__}")
        activation = head.get_config().get("activation", "linear")
        if activation not in ("linear", None):
            raise ValueError(f"head: activation={activation!r}; rnnext's head is linear (apply it to the outputs)")
        if not head.built:
            raise ValueError(f"head: Dense {head.name!r} has no weights yet; build it first")
        mode = head.quantization_mode
        if mode is not None:  # its weights are integers and scales, not a float kernel
            raise ValueError(f"head: quantization_mode={mode!r} on Dense {head.name!r}; rnnext's head is "
                             "float (quantize the rnnext model instead)")
        # head.kernel, not get_weights()[0]: with LoRA enabled Keras computes with
        # kernel + lora_a @ lora_b * alpha / rank, which only the property includes.
        head_weights = [keras.ops.convert_to_numpy(head.kernel)]
        if head.use_bias:
            head_weights.append(keras.ops.convert_to_numpy(head.bias))
        if head_weights[0].shape[0] != features:
            raise ValueError(f"head: expected a Dense on units * directions = {features} features, "
                             f"got {head_weights[0].shape[0]}")
        if head_weights[0].dtype != dtype:
            raise ValueError(f"head: expected the layer's dtype {dtype}, got {head_weights[0].dtype}")
    options: Dict[str, Any] = dict(bidirectional=bidirectional, bias=bool(config.get("use_bias", True)),
                                   batch_first=True, dtype=dtype.name)
    if cls_name == "RNN":
        options["activation"] = config.get("activation", "tanh")
    if cls_name == "GRU":
        options["linear_before_reset"] = bool(config.get("reset_after", True))
    model = MODEL_CLASSES[cls_name](weights[0]["W_x"].shape[1], hidden,
                                    None if head_weights is None else head_weights[0].shape[1], **options)
    state = {}
    for d, w in enumerate(weights):
        for key, value in w.items():
            state[f"{key}_l0" + ("_reverse" if d else "")] = value
    if head_weights is not None:
        state["W_o"] = head_weights[0].T.copy()
        state["b_o"] = head_weights[1] if len(head_weights) > 1 else np.zeros(head_weights[0].shape[1], dtype)
    model.load_state_dict(state)
    return model
