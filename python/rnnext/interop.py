"""PyTorch interop: ``rnnext.from_torch`` and ``model.to_torch()``.

torch is imported only inside these functions. Parameters map one to one
(``weight_ih_l1_reverse`` <-> ``W_x_l1_reverse``, ...; the head is a
``torch.nn.Linear``, the embedding a ``torch.nn.Embedding`` in front), so a
round trip is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type, Union, cast

import numpy as np

from ._params import MODEL_CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

__all__ = ["from_keras", "from_onnx", "from_torch", "to_torch"]

# rnnext's parameter kinds and PyTorch's.
TORCH_NAMES = {"W_x": "weight_ih", "W_h": "weight_hh", "b_x": "bias_ih", "b_h": "bias_hh", "W_hr": "weight_hr"}
RNNEXT_NAMES = {v: k for k, v in TORCH_NAMES.items()}


def _numpy(tensor: Any) -> np.ndarray:
    return cast(np.ndarray, tensor.detach().cpu().numpy().copy())


def _torch_classes() -> Dict[type, Type[RecurrentModel]]:
    """torch's module classes and the model classes they map to (the same names)."""
    import torch

    return {getattr(torch.nn, name): MODEL_CLASSES[name] for name in ("RNN", "LSTM", "GRU")}


def _to_rnnext_name(name: str) -> str:
    kind, _, rest = name.partition("_l")  # "weight_ih_l0_reverse" -> "weight_ih", "0_reverse"
    return f"{RNNEXT_NAMES[kind]}_l{rest}"


def _to_torch_name(name: str) -> str:
    kind, _, rest = name.partition("_l")  # "W_x_l0_reverse" -> "W_x", "0_reverse"
    return f"{TORCH_NAMES[kind]}_l{rest}"


# torch.nn.Embedding's options that change what rnnext would compute or train, and why each is refused.
EMBEDDING_REFUSED = {
    "padding_idx": "torch never trains that row (its gradient is zero), rnnext trains every row; for the same "
                   "forward, copy the weights into an Embedding without padding_idx",
    "max_norm": "torch renormalises the looked-up rows in place on every forward; rnnext's lookup is exact",
    "scale_grad_by_freq": "torch scales each row's gradient by its ids' frequency in the batch; rnnext's "
                          "gradient is the plain sum",
}


def _embedding_options(embedding: Any, input_size: int, dtype: Any) -> None:
    """TypeError/ValueError naming ``embedding`` unless it is a ``torch.nn.Embedding``
    rnnext computes exactly, reading ``input_size`` features of the module's dtype."""
    import torch

    if not isinstance(embedding, torch.nn.Embedding):
        raise TypeError(f"embedding: expected a torch.nn.Embedding, got {type(embedding).__name__}")
    for option, why in EMBEDDING_REFUSED.items():
        value = getattr(embedding, option)
        if value is not None and value is not False:  # not "in (None, False)": padding_idx=0 == False
            raise ValueError(f"embedding: {option}={value!r} is not supported ({why})")
    if embedding.embedding_dim != input_size:
        raise ValueError(f"embedding: expected embedding_dim = the module's input_size = {input_size}, "
                         f"got {embedding.embedding_dim}")
    if embedding.weight.dtype != dtype:
        raise ValueError(f"embedding: expected the module's dtype {dtype}, got {embedding.weight.dtype}")


def from_torch(module: Any, head: Optional[Any] = None, embedding: Optional[Any] = None) -> "RecurrentModel":
    """An ``rnnext.RNN``, ``LSTM`` or ``GRU`` with the weights and options of
    a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (any ``num_layers``,
    ``bidirectional``, ``batch_first``, ``bias``, ``dropout``, an LSTM's
    ``proj_size``; float32 or float64), optionally a ``torch.nn.Linear``
    head reading the last layer's states, and optionally a
    ``torch.nn.Embedding`` in front of the module (the model then has
    ``vocab_size = num_embeddings`` and reads token ids: ``embedding(ids)``
    then ``module``).

    The model owns copies of the weights. A head without a bias gets
    ``b_o = 0``. An embedding's ``sparse`` only changes how torch stores
    its gradient, and is accepted.

    Raises
    ------
    TypeError
        For other module types.
    ValueError
        For what rnnext cannot represent: a dtype other than float32/float64,
        a head or an embedding of the wrong size or dtype, an embedding with
        ``padding_idx``, ``max_norm`` or ``scale_grad_by_freq`` (each named:
        they change the forward or the training).
    """
    import torch

    cls = next((c for torch_class, c in _torch_classes().items() if isinstance(module, torch_class)), None)
    if cls is None:
        raise TypeError(f"module: expected a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
                        f"got {type(module).__name__}")
    dtype = module.weight_ih_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"module: expected float32 or float64 weights, got {dtype}")
    features = (getattr(module, "proj_size", 0) or module.hidden_size) * (2 if module.bidirectional else 1)
    if head is not None:
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"head: expected a torch.nn.Linear, got {type(head).__name__}")
        if head.in_features != features:
            width = "proj_size" if getattr(module, "proj_size", 0) else "hidden_size"
            raise ValueError(f"head: expected in_features = {width} * num_directions = {features}, "
                             f"got {head.in_features}")
        if head.weight.dtype != dtype:
            raise ValueError(f"head: expected the module's dtype {dtype}, got {head.weight.dtype}")
    if embedding is not None:
        _embedding_options(embedding, module.input_size, dtype)
    options: Dict[str, Any] = dict(num_layers=module.num_layers, bidirectional=module.bidirectional,
                                   bias=module.bias, dropout=float(module.dropout),
                                   batch_first=module.batch_first,
                                   dtype="float64" if dtype == torch.float64 else "float32")
    if cls is MODEL_CLASSES["RNN"]:
        options["activation"] = module.nonlinearity
    if getattr(module, "proj_size", 0):
        options["proj_size"] = module.proj_size
    if embedding is not None:
        options["vocab_size"] = embedding.num_embeddings
    model = cls(module.input_size, module.hidden_size, None if head is None else head.out_features, **options)
    state = {_to_rnnext_name(name): _numpy(value) for name, value in module.state_dict().items()}
    if head is not None:
        state["W_o"] = _numpy(head.weight)
        state["b_o"] = _numpy(head.bias) if head.bias is not None else np.zeros(head.out_features)
    if embedding is not None:
        state["embedding"] = _numpy(embedding.weight)
    model.load_state_dict(state)
    return model


def to_torch(model: "RecurrentModel") -> Union[Any, Tuple[Any, Any]]:
    """The torch modules of a model in the order they apply (an
    ``Embedding``, the module, a ``Linear`` head); see ``RecurrentModel.to_torch``."""
    import torch

    module_class = next(torch_class for torch_class, cls in _torch_classes().items() if isinstance(model, cls))
    c = model.config
    options: Dict[str, Any] = dict(num_layers=c["num_layers"], bias=c["bias"], batch_first=c["batch_first"],
                                   dropout=c["dropout"], bidirectional=c["bidirectional"])
    if isinstance(model, MODEL_CLASSES["RNN"]):
        if c["activation"] not in ("tanh", "relu"):
            raise ValueError(f"to_torch: torch.nn.RNN has no {c['activation']!r} activation "
                             "(only 'tanh' and 'relu')")
        options["nonlinearity"] = c["activation"]
    if c.get("proj_size", 0):
        options["proj_size"] = c["proj_size"]
    if isinstance(model, MODEL_CLASSES["GRU"]) and not c["linear_before_reset"]:
        raise ValueError("to_torch: torch.nn.GRU computes linear_before_reset=True only; this GRU has "
                         "linear_before_reset=False")
    dtype = torch.float64 if c["dtype"] == "float64" else torch.float32
    if c["dropout"] > 0 and c["num_layers"] == 1:
        import warnings

        with warnings.catch_warnings():  # torch warns that one layer never drops; rnnext keeps the option as is
            warnings.simplefilter("ignore", UserWarning)
            module = module_class(c["input_size"], c["hidden_size"], dtype=dtype, **options)
    else:
        module = module_class(c["input_size"], c["hidden_size"], dtype=dtype, **options)
    params = model.params
    state = {_to_torch_name(name): torch.from_numpy(np.array(params[name]))
             for name in params if name not in ("W_o", "b_o", "embedding")}
    module.load_state_dict(state, strict=True)
    modules = [module]
    if c.get("vocab_size") is not None:
        embedding = torch.nn.Embedding(c["vocab_size"], c["input_size"], dtype=dtype)
        embedding.load_state_dict({"weight": torch.from_numpy(np.array(params["embedding"]))})
        modules.insert(0, embedding)
    if c["output_size"] is not None:
        head = torch.nn.Linear(model.num_directions * model.spec.state_size, c["output_size"], dtype=dtype)
        head.load_state_dict({"weight": torch.from_numpy(np.array(params["W_o"])),
                              "bias": torch.from_numpy(np.array(params["b_o"]))})
        modules.append(head)
    return modules[0] if len(modules) == 1 else tuple(modules)


def from_onnx(model: Any) -> "RecurrentModel":
    """The rnnext model an ONNX graph of ``RNN``/``LSTM``/``GRU`` nodes
    computes (API.md section 6).

    ``model`` is a path, bytes, a binary file object or an ``onnx.ModelProto``
    holding one recurrent node per layer with the usual plumbing around them
    (Transpose, Squeeze, Unsqueeze, Reshape, Concat, Slice, Cast, Identity,
    Shape/Gather/Expand/ConstantOfShape for zero initial states), optionally a
    MatMul or Gemm (+ Add) head and a mask of the steps before the lengths:
    what ``model.to_onnx`` writes (read back exactly, ``dropout`` from its
    metadata), what ``torch.onnx.export(..., dynamo=False)`` writes for
    ``nn.RNN``/``LSTM``/``GRU`` (+ ``nn.Linear``), the dynamo exporter's
    LSTM and GRU graphs (batch-first, or with static shapes), and single-node
    graphs such as the ONNX backend's test cases (``layout`` 0 or 1). The
    graph is traced, not matched against one exporter's output; its weights
    must be stored in it (initializers or Constant nodes).

    To run the model on the graph's inputs: ``model(x, lengths=..., h0=...)``,
    with ``x`` as the graph takes it (``batch_first`` comes from the graph),
    ``lengths`` what feeds ``sequence_lens``, and ``h0`` the initial states
    stacked as rnnext's (num_layers*D, B, H), ordered ``l0, l0_reverse, l1,
    ...`` (an ``(h0, c0)`` pair for LSTM; a ``layout=1`` node's (B, D, H)
    states transposed). ``out`` is the last layer's ``Y`` with its directions
    side by side, (B, T, D*H) or (T, B, D*H) (ONNX's ``Y``, (T, D, B, H), is
    ``out.reshape(T, B, D, H).transpose(0, 2, 1, 3)``), after the head if
    there is one, and zero past each length (where a graph whose head is not
    masked gives the head's bias); ``h_n`` (``c_n``) the layers' ``Y_h``
    (``Y_c``) stacked.

    Raises
    ------
    TypeError
        ``model`` of another type.
    ValueError
        Bytes that are not an ONNX model; a malformed or hostile graph
        (missing or inconsistent tensors, cycles, ops between the recurrent
        nodes that from_onnx does not follow); what rnnext cannot compute,
        naming the attribute and the node: ``clip``, ``input_forget=1``,
        peepholes ``P``, activations other than rnnext's,
        ``activation_alpha``/``activation_beta``, different activations per
        direction or per layer, different hidden sizes,
        ``direction="reverse"`` (a forward layer on each sequence reversed
        computes it), initial states computed in the graph; and a graph with
        no recurrent node (torch's dynamo exporter unrolls ``nn.RNN``: export
        it with ``dynamo=False``).
    """
    from . import _onnx_import

    return _onnx_import.from_onnx(model)


def from_keras(layer: Any, head: Optional[Any] = None) -> "RecurrentModel":
    """An ``rnnext.RNN``, ``LSTM`` or ``GRU`` computing what a built Keras 3
    layer computes: ``keras.layers.SimpleRNN`` (tanh, sigmoid or relu),
    ``LSTM``, ``GRU`` (``reset_after=True`` is ``linear_before_reset=True``,
    ``False`` the other form), or ``keras.layers.Bidirectional`` of one
    (``merge_mode="concat"``), with an optional linear ``keras.layers.Dense``
    head on its outputs. The model is batch-first, in the layer's dtype, with
    copies of its weights; ``return_sequences`` and states are chosen at call
    time (``h0`` for Keras's ``initial_state``, ``lengths`` for a right-padded
    mask: equal valid steps and final states; past a length rnnext writes
    zeros where Keras repeats the last output). ``dropout`` and
    ``recurrent_dropout`` are training-only in Keras and not carried over.

    Raises
    ------
    TypeError
        ``layer`` is not one of those classes, ``head`` not a ``Dense``.
    ValueError
        Naming the attribute rnnext cannot represent: ``stateful``,
        ``go_backwards`` on a lone layer, another ``activation`` or
        ``recurrent_activation``, ``merge_mode``, a backward layer whose
        options differ; a layer or head without weights yet; a head of
        another size, activation or dtype.
    """
    from . import _keras

    return _keras.from_keras(layer, head)
