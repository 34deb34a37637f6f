"""What ``from_onnx`` finds a graph's nodes mean (``_onnx_import.py`` walks
the graph and calls these): each ``RNN``/``LSTM``/``GRU`` node checked
against what an rnnext layer computes and recorded as one, the head (a
MatMul or Gemm of the last layer's features by constants, plus a bias), the
mask of the steps before ``lengths``, and from all of them the model.

Every refusal names the attribute or input and the node: an rnnext layer has
no ``clip``, no coupled input and forget gates (``input_forget``), no
peepholes (``P``), only tanh/sigmoid/relu for RNN and the standard
activations for LSTM and GRU (no ``activation_alpha``/``activation_beta``),
the same activation both ways and in every layer, one hidden size, and reads
forward (or both ways).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ._onnx_export import GATED_ACTIVATIONS, META_CLASS, META_CONFIG, ONNX_ACTIVATIONS, rnnext_gates
from ._onnx_plumbing import ONE, Const, all_zero, Refused, Tensor, Zeros, describe, dim
from ._params import MODEL_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from ._onnx_import import _Trace
    from .models import RecurrentModel

RECURRENT = {"RNN": 1, "LSTM": 4, "GRU": 3}  # op -> G, the gate blocks
ATTRIBUTES = {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout"}
OWN_ATTRIBUTES = {"RNN": set(), "LSTM": {"input_forget"}, "GRU": {"linear_before_reset"}}
RNNEXT_ACTIVATIONS = {v.lower(): k for k, v in ONNX_ACTIVATIONS.items()}


# ---------------------------------------------------------------- recurrent nodes


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _activation(op: str, given: Any, D: int) -> Optional[str]:
    """rnnext's activation for an RNN node (None for LSTM/GRU, whose
    activations must be the standard ones)."""
    standard = [a.lower() for a in (("Tanh",) if op == "RNN" else GATED_ACTIVATIONS[op])]
    if given is None:
        return "tanh" if op == "RNN" else None
    names = [_text(a).lower() for a in given]
    if len(names) != len(standard) * D:
        raise Refused(f"attribute 'activations' {names}: expected {len(standard)} per direction, {D} directions")
    per_direction = [names[d * len(standard):(d + 1) * len(standard)] for d in range(D)]
    if any(p != per_direction[0] for p in per_direction):
        raise Refused(f"attribute 'activations' {names}: rnnext uses the same activations in both directions")
    if op != "RNN":
        if per_direction[0] != standard:
            raise Refused(f"attribute 'activations' {names}: rnnext's {op} computes {standard} only")
        return None
    if names[0] not in RNNEXT_ACTIVATIONS:
        raise Refused(f"attribute 'activations' {names}: rnnext's RNN computes tanh, sigmoid or relu")
    return RNNEXT_ACTIVATIONS[names[0]]


def _attributes(op: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
    """The node's options an rnnext layer has, or Refused naming the one it has not."""
    unknown = sorted(set(attrs) - ATTRIBUTES - OWN_ATTRIBUTES[op])
    if unknown:
        raise Refused(f"attribute {unknown[0]!r} is not an attribute of {op}")
    if "clip" in attrs:
        raise Refused(f"attribute 'clip' ({attrs['clip']}): rnnext does not clip the gates' inputs")
    if attrs.get("input_forget", 0) != 0:
        raise Refused(f"attribute 'input_forget'={attrs['input_forget']}: rnnext's LSTM has separate "
                      "input and forget gates")
    for key in ("activation_alpha", "activation_beta"):
        if key in attrs:
            raise Refused(f"attribute {key!r}: rnnext's activations take no parameters")
    direction = _text(attrs.get("direction", "forward"))
    if direction == "reverse":
        raise Refused("attribute 'direction'='reverse': an rnnext layer reads forward or both ways "
                      "(bidirectional), not backward only; a reverse-only layer is a forward one run on "
                      "each sequence reversed")
    if direction not in ("forward", "bidirectional"):
        raise Refused(f"attribute 'direction'={direction!r}: expected 'forward' or 'bidirectional'")
    D = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise Refused(f"attribute 'layout'={layout}: expected 0 or 1")
    linear_before_reset = attrs.get("linear_before_reset", 0)
    if linear_before_reset not in (0, 1):
        raise Refused(f"attribute 'linear_before_reset'={linear_before_reset}: expected 0 or 1")
    return dict(D=D, layout=layout, activation=_activation(op, attrs.get("activations"), D),
                linear_before_reset=bool(linear_before_reset) if op == "GRU" else None,
                hidden_size=attrs.get("hidden_size"))


def _weights(trace: "_Trace", op: str, D: int, W: Any, R: Any, B: Any, hidden: Optional[int]) -> Dict[str, Any]:
    G = RECURRENT[op]
    W = weight(trace, W, "input 'W'", 3)
    R = weight(trace, R, "input 'R'", 3)
    D_w, GH, I = W.shape
    H = GH // G
    if D_w != D or GH % G or H < 1 or I < 1:
        raise Refused(f"input 'W' has shape {W.shape}; expected ({D}, {G}*hidden_size, input_size), both >= 1")
    if R.shape != (D, GH, H):
        raise Refused(f"input 'R' has shape {R.shape}; expected {(D, GH, H)}")
    if hidden is not None and hidden != H:
        raise Refused(f"attribute 'hidden_size'={hidden} but the weights have hidden size {H}")
    if B is not None:
        B = weight(trace, B, "input 'B'", 2)
        if B.shape != (D, 2 * GH):
            raise Refused(f"input 'B' has shape {B.shape}; expected {(D, 2 * GH)}")
    return dict(W=W, R=R, B=B, H=H, I=I, dtype=W.dtype)


def weight(trace: "_Trace", value: Any, what: str, rank: Optional[int]) -> np.ndarray:
    """A weight: a float32 or float64 constant of the first layer's dtype."""
    if isinstance(value, Tensor) and value.kind == "input":
        raise Refused(f"{what} is graph input {value.name!r}: from_onnx reads weights stored in the graph "
                      "(initializers or Constant nodes)")
    if not isinstance(value, Const):
        raise Refused(f"{what} is {describe(value)}, not a constant")
    if value.value.dtype not in (np.float32, np.float64):
        raise Refused(f"{what} is {value.value.dtype}: rnnext's weights are float32 or float64")
    if rank is not None and value.value.ndim != rank:
        raise Refused(f"{what} has shape {value.value.shape}, expected {rank} axes")
    if trace.layers and value.value.dtype != trace.layers[0]["dtype"]:
        raise Refused(f"{what} is {value.value.dtype}, the first layer's weights {trace.layers[0]['dtype']}")
    return value.value


def _first_input(trace: "_Trace", X: Any, time: int, batch: int, I: int) -> None:
    """Layer 0 reads a graph input (T, B, I) or (B, T, I) at the node's layout:
    which one is ``batch_first``."""
    if not (isinstance(X, Tensor) and X.kind == "input" and not X.integer and len(X.axes) == 3):
        raise Refused(f"input 'X' is {describe(X)}: the first layer reads a float graph input of 3 axes")
    name = X.name
    t, b, f = (trace.meaning(X.axes[i]) for i in (time, batch, 2))
    axes = {((name, 0),), ((name, 1),)}
    if f != ((name, 2),) or t not in axes or b not in axes or t == b:
        raise Refused(f"input 'X' is graph input {name!r} laid out as {trace.show(X)}: rnnext reads "
                      "(B, T, I) or (T, B, I)")
    size = trace.size(f)
    if not size[1] and size[0] != I:
        raise Refused(f"graph input {name!r} has {size[0]} features; the weights take {I}")
    trace.x = (name, t[0], b[0])


def _next_input(trace: "_Trace", X: Any, time: int, batch: int, k: int, I: int, D: int, H: int) -> None:
    """Layer k > 0 reads layer k - 1's Y as (T, B, D*H): [forward, backward] features."""
    assert trace.x is not None
    if not (isinstance(X, Tensor) and X.kind == "seq" and X.layer == k - 1 and not X.head and not X.masked
            and len(X.axes) == 3):
        raise Refused(f"input 'X' is {describe(X)}: a layer reads the previous layer's output sequence")
    if (trace.meaning(X.axes[time]) != (trace.canon(trace.x[1]),)
            or trace.meaning(X.axes[batch]) != (trace.canon(trace.x[2]),)
            or trace.meaning(X.axes[2]) != trace.meaning(("D", "H"))):
        raise Refused(f"input 'X' is layer {k - 1}'s Y laid out as {trace.show(X)}: expected its directions' "
                      "states side by side, (T, B, D*H)")
    if I != D * H:
        raise Refused(f"input 'W' takes {I} features; layer {k - 1} gives {D * H}")


def _lengths(trace: "_Trace", value: Any) -> Optional[str]:
    if value is None:
        return None
    if not (isinstance(value, Tensor) and value.kind == "input" and value.integer and len(value.axes) == 1
            and len(value.axes[0]) == 1):
        raise Refused(f"input 'sequence_lens' is {describe(value)}: rnnext's lengths come from a graph input "
                      "(the call's lengths=)")
    assert trace.x is not None
    trace.unite(value.axes[0][0], trace.x[2])
    return value.name


def _state(trace: "_Trace", value: Any, what: str, batch: int, H: int) -> Optional[str]:
    if value is None or isinstance(value, Zeros) or isinstance(value, Const) and all_zero(value.value):
        return None
    if not (isinstance(value, Tensor) and value.kind == "input" and not value.integer and len(value.axes) == 3
            and len(value.axes[batch]) == 1):
        raise Refused(f"input {what!r} is {describe(value)}: rnnext's initial states are zeros or come from a "
                      "graph input (the call's h0=)")
    size = trace.size(value.axes[2])
    if not size[1] and size[0] != H:
        raise Refused(f"input {what!r} has {size[0]} features; the hidden size is {H}")
    assert trace.x is not None
    trace.unite(value.axes[batch][0], trace.x[2])
    return value.name


def layer(trace: "_Trace", node: Any, args: List[Any], attrs: Dict[str, Any]) -> List[Any]:
    """One recurrent node: checked, recorded as the next layer; returns its
    outputs (Y, Y_h[, Y_c]) as abstract values."""
    op = node.op_type
    options = _attributes(op, attrs)
    D, layout = options["D"], options["layout"]
    X, W, R, B, seq_lens, h0, c0, P = (args + [None] * 8)[:8]
    if P is not None:
        raise Refused("input 'P' (peepholes): rnnext's LSTM has none")
    if len(args) < 3 or X is None:
        raise Refused("inputs 'X', 'W' and 'R' are required")
    weights = _weights(trace, op, D, W, R, B, options.pop("hidden_size"))
    k, H = len(trace.layers), weights["H"]
    if k:
        first = trace.layers[0]
        for key, value in (("op", op), ("D", D), ("H", H), ("activation", options["activation"]),
                           ("linear_before_reset", options["linear_before_reset"])):
            if first[key] != value:
                name = {"op": "op type", "D": "direction", "H": "hidden_size"}.get(key, key)
                raise Refused(f"{name} {value!r} differs from layer 0's {first[key]!r}: rnnext's layers are alike")
    time, batch = (0, 1) if layout == 0 else (1, 0)
    if k == 0:
        _first_input(trace, X, time, batch, weights["I"])
        trace.sizes.update(D=dim(D), H=dim(H))
    else:
        _next_input(trace, X, time, batch, k, weights["I"], D, H)
    lengths = _lengths(trace, seq_lens)
    if k and lengths != trace.layers[0]["lengths"]:
        raise Refused(f"input 'sequence_lens' is {lengths!r}, layer 0's {trace.layers[0]['lengths']!r}: "
                      "rnnext applies one lengths to every layer")
    states = [_state(trace, h0, "initial_h", batch, H), _state(trace, c0, "initial_c", batch, H)]
    trace.layers.append(dict(op=op, **options, **weights, lengths=lengths, states=states, node=node.name))
    assert trace.x is not None
    T, N = (trace.x[1],), (trace.x[2],)
    y = (T, ("D",), N, ("H",)) if layout == 0 else (N, T, ("D",), ("H",))
    outputs: List[Any] = [Tensor("seq", y, layer=k)]
    for which in ("h", "c"):
        rows = ("rows", k, which)
        trace.sizes[rows] = dim(D)
        axes = ((rows,), N, ("H",)) if layout == 0 else (N, (rows,), ("H",))
        outputs.append(Tensor("state", axes, layer=k))
    return outputs if op == "LSTM" else outputs[:2]


# ---------------------------------------------------------------- the head


def head(trace: "_Trace", data: Any, W: Any, bias: Any, op: str) -> Tensor:
    """MatMul (Gemm) of the last layer's features (D*H, the last axis) by a
    constant (D*H, O): the head, ``W_o`` its transpose."""
    if not (isinstance(data, Tensor) and data.kind == "seq" and not data.head and not data.masked):
        raise Refused(f"{op} of {describe(data)}: a head reads the last layer's output sequence")
    if trace.head is not None:
        raise Refused("a second head: rnnext's head is one linear layer")
    features = trace.meaning(data.axes[-1]) if data.axes else ()
    if features != trace.meaning(("D", "H")):
        raise Refused(f"{op} of {trace.show(data)}: a head reads the features (D*H), the last axis")
    W = weight(trace, W, f"{op}'s weight", 2)
    if W.shape[0] != trace.size(("D", "H"))[0]:
        raise Refused(f"{op}'s weight {W.shape} does not take the {trace.size(('D', 'H'))[0]} features")
    trace.sizes["O"] = dim(W.shape[1])
    trace.head = (np.ascontiguousarray(W.T), None)
    out = dataclasses.replace(data, head=True, axes=data.axes[:-1] + (("O",),))
    return head_bias(trace, [out, bias]) if bias is not None else out


def head_bias(trace: "_Trace", args: List[Any]) -> Tensor:
    """Add of a constant (O,) (or (1, ..., O)) to the head's output: ``b_o``."""
    data, bias = args if isinstance(args[0], Tensor) and args[0].kind == "seq" else args[::-1]
    if not isinstance(data, Tensor) or not data.head or data.bias or data.masked or not isinstance(bias, Const):
        raise Refused("Add other than the head's bias")
    assert trace.head is not None
    O = trace.size(("O",))[0]
    b = weight(trace, bias, "the head's bias", None)
    if b.size != O or b.ndim > len(data.axes) or (b.ndim and b.shape[-1] != O):
        raise Refused(f"the head's bias {b.shape} does not fit its {O} outputs")
    trace.head = (trace.head[0], b.reshape(O))
    return dataclasses.replace(data, bias=True)


# ---------------------------------------------------------------- the mask of valid steps


def steps(trace: "_Trace", start: Any, limit: Any, delta: Any) -> Tensor:
    """Range(0, T, 1) over an axis of the graph: the time steps."""
    entries = trace.vec(limit).entries
    if not (isinstance(start, Const) and isinstance(delta, Const) and start.value.size == delta.value.size == 1
            and start.value.item() == 0 and delta.value.item() == 1 and len(entries) == 1
            and entries[0].atoms is not None):
        raise Refused("Range other than 0, 1, ..., T - 1 over an axis of the graph")
    return Tensor("steps", (entries[0].atoms,), integer=True)


def valid_steps(trace: "_Trace", time: Any, lengths: Any) -> Tensor:
    """``steps < lengths`` (broadcast): the mask of the valid steps."""
    if not (isinstance(time, Tensor) and time.kind == "steps" and isinstance(lengths, Tensor)
            and lengths.kind == "input" and lengths.integer):
        raise Refused("a comparison other than steps < lengths (the mask of valid steps)")
    a, b = time.axes, lengths.axes
    rank = max(len(a), len(b))
    a, b = (("1",),) * (rank - len(a)) + a, (("1",),) * (rank - len(b)) + b
    axes = []
    for x, y in zip(a, b):
        if trace.size(x) != ONE and trace.size(y) != ONE and trace.meaning(x) != trace.meaning(y):
            raise Refused("a mask comparing steps and lengths along the same axis")
        axes.append(y if trace.size(x) == ONE else x)
    return Tensor("mask", tuple(axes), lengths.name, integer=True)


def masked(trace: "_Trace", data: Any, mask: Any) -> Tensor:
    """Where(mask, output, 0) or output * mask: what rnnext does past lengths anyway."""
    if not (isinstance(data, Tensor) and data.kind == "seq" and isinstance(mask, Tensor) and mask.kind == "mask"):
        raise Refused(f"Where/Mul of {describe(data)} by {describe(mask)}: only outputs are masked, "
                      "by the steps before lengths")
    if len(mask.axes) > len(data.axes):
        raise Refused("a mask with more axes than the output")
    covered = set()
    for m, d in zip(mask.axes[::-1], data.axes[::-1]):
        if trace.size(m) != ONE:
            if trace.meaning(m) != trace.meaning(d):
                raise Refused(f"the mask's axes do not line up with the output's {trace.show(data)}")
            covered |= set(trace.meaning(m))
    if trace.x is None or covered != {trace.canon(trace.x[1]), trace.canon(trace.x[2])}:
        raise Refused("a mask that is not over the time and batch axes")
    trace.masks.append(mask.name)
    return dataclasses.replace(data, masked=True)


# ---------------------------------------------------------------- the model


def _check_outputs(trace: "_Trace", proto: Any) -> None:
    last = len(trace.layers) - 1
    for output in proto.graph.output:
        value = trace.values.get(output.name)
        if isinstance(value, Tensor) and value.kind == "state":
            continue
        if not (isinstance(value, Tensor) and value.kind == "seq"):
            raise ValueError(f"from_onnx: graph output {output.name!r} is {describe(value)}, not an output of "
                             "the recurrent layers")
        if value.layer != last:
            raise ValueError(f"from_onnx: graph output {output.name!r} is layer {value.layer}'s output; rnnext "
                             f"returns the last layer's ({last})")
        if value.head != (trace.head is not None):
            raise ValueError(f"from_onnx: graph output {output.name!r} is the last layer's output "
                             f"{'after' if value.head else 'before'} the head and another output is "
                             f"{'before' if value.head else 'after'} it; rnnext returns one of them")
    lengths = trace.layers[0]["lengths"]
    for name in trace.masks:
        if name != lengths:
            raise ValueError(f"from_onnx: the output is masked by lengths {name!r} but the recurrent nodes read "
                             f"sequence_lens {lengths!r}; rnnext masks by the lengths its layers read")


def _dropout(proto: Any, cls: str, config: Dict[str, Any]) -> float:
    """``dropout`` from to_onnx's metadata, when the graph agrees with the rest
    of the configuration stored beside it (training only: no graph shows it)."""
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get(META_CLASS) != cls or META_CONFIG not in meta:
        return 0.0
    try:
        saved = json.loads(meta[META_CONFIG])
    except (ValueError, RecursionError):
        return 0.0
    if not isinstance(saved, dict) or any(saved.get(k, v) != v for k, v in config.items() if k != "dropout"):
        return 0.0
    dropout = saved.get("dropout")
    ok = isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout <= 1
    return float(dropout) if ok else 0.0  # type: ignore[arg-type]  # ok: dropout is a number


def model(trace: "_Trace", proto: Any) -> "RecurrentModel":
    """The rnnext model of a traced graph."""
    if not trace.layers:
        raise ValueError("from_onnx: no RNN, LSTM or GRU node computes the graph's outputs")
    _check_outputs(trace, proto)
    layers, first = trace.layers, trace.layers[0]
    op, D, H = first["op"], first["D"], first["H"]
    assert trace.x is not None
    bias = any(layer["B"] is not None for layer in layers)
    config: Dict[str, Any] = dict(input_size=first["I"], hidden_size=H,
                                  output_size=None if trace.head is None else trace.head[0].shape[0],
                                  num_layers=len(layers), bidirectional=D == 2, bias=bias, dropout=0.0,
                                  batch_first=trace.x[1] == (trace.x[0], 1), dtype=first["dtype"].name)
    if op == "RNN":
        config["activation"] = first["activation"]
    if op == "GRU":
        config["linear_before_reset"] = first["linear_before_reset"]
    config["dropout"] = _dropout(proto, op, config)
    params: Dict[str, np.ndarray] = {}
    GH = RECURRENT[op] * H
    for k, layer in enumerate(layers):
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            params["W_x" + suffix] = rnnext_gates(layer["W"][d], op)
            params["W_h" + suffix] = rnnext_gates(layer["R"][d], op)
            if bias:
                b = layer["B"][d] if layer["B"] is not None else np.zeros(2 * GH, first["dtype"])
                params["b_x" + suffix], params["b_h" + suffix] = rnnext_gates(b[:GH], op), rnnext_gates(b[GH:], op)
    if trace.head is not None:
        W_o, b_o = trace.head
        params["W_o"] = W_o
        params["b_o"] = b_o if b_o is not None else np.zeros(W_o.shape[0], first["dtype"])
    result = MODEL_CLASSES[op].declared(config)
    shapes = result.spec.param_shapes()
    if set(shapes) != set(params) or any(params[k].shape != s for k, s in shapes.items()):
        raise ValueError("from_onnx: the layers' weights do not fit one model")  # _weights checks each
    result.set_params(params)
    return result
