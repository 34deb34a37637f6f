"""``model.to_onnx``: a model as an ONNX graph of ``RNN``/``LSTM``/``GRU``
nodes, one per layer (API.md section 6).

The graph, for a batch-first model (``x`` is (B, T, I)); a time-major one
has no Transpose at either end::

    x --Transpose--> (T, B, I) --LSTM l0--> Y (T, D, B, H) --Transpose+Reshape--> (T, B, D*H)
      --LSTM l1--> ... --MatMul+Add (head)--> --Where (zero past lengths)--> --Transpose--> out
    Y_h of every layer --Concat--> h_n      (Y_c --Concat--> c_n for LSTM)

``layout`` is always 0 (time-major) because onnxruntime refuses
``layout=1``; the Transposes are what a batch-first model costs. Weights are
reordered into ONNX's gate order (a permutation, so ``from_onnx`` gets the
parameters back bit for bit) and stored under rnnext's names: ``W_x_l0``
holds ``W_x_l0`` and ``W_x_l0_reverse`` stacked, ``b_l0`` the four biases.
The configuration is kept in ``metadata_props`` only for what the graph
cannot show (``dropout``); ``from_onnx`` reads everything else from the graph.

onnx is imported only here, when a model is exported.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, cast

import numpy as np

from ._params import check_bool, check_int

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

#: rnnext's gate blocks (PyTorch's order) in the order ONNX stacks them:
#: LSTM i, f, g, o -> i, o, f, c; GRU r, z, n -> z, r, h.
ONNX_GATE_ORDER = {"RNN": (0,), "LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}
#: ONNX's activation names, and the activations of the gated cells (the only
#: ones rnnext computes).
ONNX_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}
GATED_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh")}
#: The oldest opset whose RNN/LSTM/GRU have the ``layout`` attribute.
MIN_OPSET = 14
#: The metadata keys (``metadata_props``) an exported file carries.
META_CLASS, META_CONFIG = "rnnext.class", "rnnext.config"


def onnx_gates(array: np.ndarray, cell: str) -> np.ndarray:
    """A (G*H, ...) parameter with its gate blocks in ONNX's order."""
    order = ONNX_GATE_ORDER[cell]
    blocks = np.split(array, len(order))
    return np.concatenate([blocks[k] for k in order])


def rnnext_gates(array: np.ndarray, cell: str) -> np.ndarray:
    """The inverse of ``onnx_gates``: ONNX's gate blocks in rnnext's order."""
    order = ONNX_GATE_ORDER[cell]
    blocks = np.split(array, len(order))
    inverse = [order.index(k) for k in range(len(order))]
    return np.concatenate([blocks[k] for k in inverse])


def activations(cell: str, config: Dict[str, Any], directions: int) -> List[str]:
    """The node's ``activations`` attribute, written out even where it is
    ONNX's default, so that no reader has to know the defaults."""
    per_direction = (ONNX_ACTIVATIONS[config["activation"]],) if cell == "RNN" else GATED_ACTIVATIONS[cell]
    return list(per_direction) * directions


def _check_arguments(model: "RecurrentModel", file: Any, opset: Any, lengths: Any, state: Any) -> int:
    import onnx

    if file is not None and not isinstance(file, (str, os.PathLike)) and not hasattr(file, "write"):
        raise TypeError(f"file: expected None, a path or a binary file object, got {type(file).__name__}")
    opset = check_int("opset", opset, minimum=MIN_OPSET)
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ValueError(f"opset: expected an int in [{MIN_OPSET}, {newest}] (the installed onnx "
                         f"{onnx.__version__} knows opsets up to {newest}), got {opset}")
    check_bool("lengths", lengths)
    check_bool("state", state)
    if model.config.get("proj_size", 0):
        raise ValueError(f"to_onnx: ONNX's LSTM has no projection; this model has "
                         f"proj_size={model.config['proj_size']}")
    if model.config.get("vocab_size") is not None:
        raise ValueError(f"to_onnx: vocab_size={model.config['vocab_size']} (an embedding table) does not export "
                         "yet; export the model without it and look the ids up before the graph "
                         "(features = model.params['embedding'][ids])")
    return cast(int, opset)  # checked above


class _Graph:
    """The nodes, initializers and names of the graph being written."""

    def __init__(self, dtype: np.dtype) -> None:
        from onnx import helper

        self.helper = helper
        self.dtype = dtype
        self.nodes: List[Any] = []
        self.initializers: List[Any] = []
        self.count = 0

    def constant(self, name: str, value: np.ndarray, doc: str = "") -> str:
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
        tensor.doc_string = doc
        self.initializers.append(tensor)
        return name

    def ints(self, name: str, values: List[int]) -> str:
        return self.constant(name, np.array(values, np.int64))

    def node(self, op: str, inputs: List[str], output: Optional[str] = None, name: Optional[str] = None,
             outputs: Optional[List[str]] = None, **attributes: Any) -> str:
        self.count += 1
        name = name or f"{op.lower()}_{self.count}"
        outputs = outputs or [output or name]
        while inputs and inputs[-1] == "":  # optional inputs left out at the end
            inputs = inputs[:-1]
        self.nodes.append(self.helper.make_node(op, inputs, outputs, name=name, **attributes))
        return outputs[0]


def _layer(g: _Graph, model: "RecurrentModel", layer: int, x: str, seq_lens: str, state_inputs: List[str]
           ) -> List[str]:
    """One layer's node; returns its outputs (Y, Y_h[, Y_c])."""
    cell, config = model.spec.cell.name, model.config
    D, H, params = model.num_directions, config["hidden_size"], model.params
    suffixes = [""] + ["_reverse"] * (D - 1)
    stack: Callable[[str], np.ndarray] = lambda kind: np.stack([onnx_gates(params[f"{kind}_l{layer}{s}"], cell) for s in suffixes])  # noqa: E731
    W = g.constant(f"W_x_l{layer}", stack("W_x"), f"W (D, G*H, inputs): W_x_l{layer}[_reverse], ONNX's gate order")
    R = g.constant(f"W_h_l{layer}", stack("W_h"), f"R (D, G*H, H): W_h_l{layer}[_reverse], ONNX's gate order")
    B = ""
    if config["bias"]:
        b = np.concatenate([stack("b_x"), stack("b_h")], axis=1)
        B = g.constant(f"b_l{layer}", b, f"B (D, 2*G*H): b_x_l{layer} and b_h_l{layer} (and _reverse), ONNX's order")
    initial = []
    for name in state_inputs:  # this layer's rows of h0 (c0): l{k}, l{k}_reverse
        rows = [g.ints(f"{name}_l{layer}_{bound}", [value]) for bound, value in
                (("start", layer * D), ("end", (layer + 1) * D))]
        initial.append(g.node("Slice", [name, *rows, g.ints(f"{name}_l{layer}_axis", [0])],
                              f"{name}_l{layer}"))
    if not state_inputs:
        initial = ["", ""][:2 if cell == "LSTM" else 1]
    outputs = [f"Y_l{layer}", f"Y_h_l{layer}"] + ([f"Y_c_l{layer}"] if cell == "LSTM" else [])
    attributes: Dict[str, Any] = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward",
                                      activations=activations(cell, config, D), layout=0)
    if cell == "GRU":
        attributes["linear_before_reset"] = int(config["linear_before_reset"])
    g.node(cell, [x, W, R, B, seq_lens, *initial], name=f"{cell.lower()}_l{layer}", outputs=outputs,
           **attributes)
    return outputs


def _valid_steps(g: _Graph, x: str, lengths: str) -> str:
    """The (T, B, 1) bool mask of the steps before each sequence's length,
    from a time-major ``x``."""
    steps = g.node("Gather", [g.node("Shape", [x], "x_shape"), g.constant("time_axis", np.array(0, np.int64))],
                   "steps")
    time = g.node("Range", [g.constant("zero_step", np.array(0, np.int64)), steps,
                            g.constant("one_step", np.array(1, np.int64))], "time")
    time = g.node("Unsqueeze", [time, g.ints("time_column_axes", [1])], "time_column")
    limits = g.node("Unsqueeze", [lengths, g.ints("lengths_row_axes", [0])], "lengths_row")
    valid = g.node("Less", [time, limits], "valid")
    return g.node("Unsqueeze", [valid, g.ints("valid_steps_axes", [2])], "valid_steps")


def build(model: "RecurrentModel", opset: int, lengths: bool, state: bool) -> Any:
    """The checked ``onnx.ModelProto`` of a model."""
    import onnx
    from onnx import TensorProto, helper

    config, cell = model.config, model.spec.cell.name
    D, L, H = model.num_directions, config["num_layers"], config["hidden_size"]
    batch_first, dtype = config["batch_first"], model.dtype
    g = _Graph(dtype)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    batch, time = "batch", "time"
    inputs = [helper.make_tensor_value_info(
        "x", elem, [batch, time, config["input_size"]] if batch_first else [time, batch, config["input_size"]])]
    seq_lens = ""
    if lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, [batch]))
        seq_lens = g.node("Cast", ["lengths"], "sequence_lens", to=TensorProto.INT32)  # ONNX wants int32
    state_names = (["h0", "c0"] if cell == "LSTM" else ["h0"]) if state else []
    inputs += [helper.make_tensor_value_info(name, elem, [L * D, batch, H]) for name in state_names]

    x = g.node("Transpose", ["x"], "x_time_major", perm=[1, 0, 2]) if batch_first else "x"
    first_x, finals = x, []
    for layer in range(L):
        y, *layer_finals = _layer(g, model, layer, x, seq_lens, state_names)
        finals.append(layer_finals)
        if D == 1:
            x = g.node("Squeeze", [y, g.ints(f"direction_axis_l{layer}", [1])], f"h_seq_l{layer}")
        else:  # (T, D, B, H) -> (T, B, D, H) -> (T, B, D*H): [forward, backward] features
            x = g.node("Transpose", [y], f"Y_l{layer}_time_batch", perm=[0, 2, 1, 3])
            x = g.node("Reshape", [x, g.ints(f"features_l{layer}", [0, 0, -1])], f"h_seq_l{layer}")
    out = x
    if config["output_size"] is not None:
        params = model.params
        out = g.node("MatMul", [out, g.constant("W_o_T", params["W_o"].T, "W_o transposed, (D*H, O)")], "head")
        out = g.node("Add", [out, g.constant("b_o", params["b_o"])], "head_out")
    if lengths:  # rnnext's outputs are exactly zero past each length, the head's too
        zero = g.constant("zero", np.zeros((), dtype))
        out = g.node("Where", [_valid_steps(g, first_x, "lengths"), out, zero], "masked")
    if batch_first:
        out = g.node("Transpose", [out], "out", perm=[1, 0, 2])
    else:
        out = g.node("Identity", [out], "out")
    outputs = [helper.make_tensor_value_info("out", elem, [batch, time, config["output_size"] or D * H]
                                             if batch_first else [time, batch, config["output_size"] or D * H])]
    for k, name in enumerate(["h_n", "c_n"][:len(finals[0])]):
        g.node("Concat", [f[k] for f in finals], name, axis=0)
        outputs.append(helper.make_tensor_value_info(name, elem, [L * D, batch, H]))

    graph = helper.make_graph(g.nodes, f"rnnext_{cell}", inputs, outputs, g.initializers,
                              doc_string=repr(model))
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="rnnext",
                              producer_version=_version(), ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=f"{model!r}, written by rnnext's to_onnx")
    helper.set_model_props(proto, {META_CLASS: type(model).__name__,
                                   META_CONFIG: json.dumps(config, sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _version() -> str:
    from . import _core

    return str(_core.build_info()["version"])


def to_onnx(model: "RecurrentModel", file: Any = None, *, opset: int = 17, lengths: bool = False,
            state: bool = False) -> Optional[bytes]:
    """``model.to_onnx``: the graph's bytes when ``file`` is None, else writes
    them to a path or binary file object and returns None."""
    opset = _check_arguments(model, file, opset, lengths, state)
    data: bytes = build(model, opset, bool(lengths), bool(state)).SerializeToString()
    if file is None:
        return data
    if isinstance(file, (str, os.PathLike)):
        with open(file, "wb") as f:
            f.write(data)
    else:
        file.write(data)
    return None
