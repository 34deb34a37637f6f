"""What tests/test_onnx.py shares: models of every cell, their inputs and
expected outputs, onnxruntime sessions, edits of exported graphs, torch
modules and their export, and the ONNX backend's RNN/LSTM/GRU node cases.

Import only after ``pytest.importorskip("onnx")``: the functions import onnx
(and onnxruntime, torch) when called.
"""

import contextlib
import glob
import importlib
import io
import os
import warnings

import numpy as np
from helpers import OPTIONS, base

import rnnext as rx

CLASSES = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}


def make_model(cell, layers=1, bidirectional=False, head=None, batch_first=True, bias=True, dtype="float32",
               seed=0, I=3, H=5, dropout=0.0):
    """An rnnext model of a cell of tests/helpers.py (rnn, rnn_sigmoid, ..., gru_onnx), seeded."""
    return CLASSES[base(cell)](I, H, head, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                               bias=bias, dtype=dtype, seed=seed, dropout=dropout, **OPTIONS[cell])


def call_inputs(model, rng, B=3, T=4, lengths=False, state=False):
    """(feeds, kwargs): the graph's inputs for onnxruntime, and the same as
    ``model(x, **kwargs)``'s arguments (x is in both)."""
    shape = (B, T, model.input_size) if model.batch_first else (T, B, model.input_size)
    x = rng.standard_normal(shape).astype(model.dtype)
    feeds, kwargs = {"x": x}, {}
    if lengths:
        kwargs["lengths"] = feeds["lengths"] = np.concatenate([[T], rng.integers(1, T + 1, B - 1)]).astype(np.int64)
    if state:
        h0 = model.initial_state(B)
        h0 = tuple(rng.standard_normal(a.shape).astype(model.dtype) for a in (h0 if isinstance(h0, tuple) else (h0,)))
        feeds.update(zip(("h0", "c0"), h0))
        kwargs["h0"] = h0 if len(h0) == 2 else h0[0]
    return feeds, kwargs


def model_outputs(model, feeds, kwargs):
    """[out, h_n(, c_n)] of ``model(x, **kwargs)``."""
    out, state = model(feeds["x"], **kwargs)
    return [out, *(state if isinstance(state, tuple) else (state,))]


def session(data):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1  # the machine is shared
    options.log_severity_level = 3  # no shape-mismatch notes on dynamic outputs
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- editing graphs


def proto_of(data):
    import onnx

    return onnx.load_from_string(data)


def node_named(proto, name):
    return next(n for n in proto.graph.node if n.name == name)


def set_attribute(node, name, value):
    import onnx

    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def replace_initializer(proto, name, array):
    from onnx import numpy_helper

    for i, t in enumerate(proto.graph.initializer):
        if t.name == name:
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def initializer(proto, name):
    from onnx import numpy_helper

    return numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == name))


# ---------------------------------------------------------------- torch


def torch_module(kind, nonlinearity="tanh", layers=1, bidirectional=False, batch_first=True, head=False, seed=0):
    """torch.nn.RNN/LSTM/GRU (3 -> 5) with an optional nn.Linear head (-> 2),
    returning ``(out, h_n[, c_n])`` like rnnext's model."""
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            options = {"nonlinearity": nonlinearity} if kind == "RNN" else {}
            self.rnn = getattr(torch.nn, kind)(3, 5, num_layers=layers, bidirectional=bidirectional,
                                               batch_first=batch_first, **options)
            self.head = torch.nn.Linear(5 * (2 if bidirectional else 1), 2) if head else None

        def forward(self, x):
            out, state = self.rnn(x)
            out = self.head(out) if self.head is not None else out
            return (out, *state) if isinstance(state, tuple) else (out, state)

    torch.manual_seed(seed)
    return Model().eval()


def stateful_torch_module(kind, seed=0):
    """torch.nn.RNN/LSTM/GRU (3 -> 5, two layers, bidirectional, no biases,
    float64) called with its initial states: ``module(x, h0[, c0])``."""
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(3, 5, num_layers=2, bidirectional=True, bias=False,
                                               dtype=torch.float64)

        def forward(self, x, *state):
            out, state = self.rnn(x, state if kind == "LSTM" else state[0])
            return (out, *state) if kind == "LSTM" else (out, state)

    torch.manual_seed(seed)
    return Model().eval()


def torch_export(module, x, dynamo, dynamic=True, states=()):
    """The bytes ``torch.onnx.export`` writes for ``module(x, *states)`` (NumPy
    arrays, named x, h0, c0; batch and time axes dynamic when ``dynamic``; the
    states time-major), quietly."""
    import torch

    f = io.BytesIO()
    names = ["x", "h0", "c0"][:1 + len(states)]
    options = dict(dynamo=dynamo, input_names=names)
    if dynamic and dynamo:
        options["dynamic_shapes"] = ({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},)
    elif dynamic:
        options["dynamic_axes"] = {name: {0: "a", 1: "b"} if name == "x" else {1: "b"} for name in names}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(torch.from_numpy(a) for a in (x, *states)), f, **options)
    return f.getvalue()


def torch_outputs(module, *inputs):
    import torch

    with torch.no_grad():
        return [t.numpy() for t in module(*map(torch.from_numpy, inputs))]


# ---------------------------------------------------------------- ONNX backend node cases


def _from_directories():
    """The cases as the onnx package ships them, when it does."""
    import onnx
    from onnx import numpy_helper

    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    cases = []
    for prefix in ("test_rnn_", "test_simple_rnn_", "test_lstm_", "test_gru_"):
        for folder in sorted(glob.glob(os.path.join(root, prefix + "*"))):
            if "_expanded" in folder:
                continue

            def read(kind):
                tensors = []
                for path in sorted(glob.glob(os.path.join(folder, "test_data_set_0", f"{kind}_*.pb"))):
                    t = onnx.TensorProto()
                    with open(path, "rb") as f:
                        t.ParseFromString(f.read())
                    tensors.append(numpy_helper.to_array(t))
                return tensors

            cases.append((os.path.basename(folder), onnx.load(os.path.join(folder, "model.onnx")), read("input"),
                          read("output")))
    return cases


def _from_case_modules():
    """The same cases built by onnx's test generators (wheels without the data)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        node = importlib.import_module("onnx.backend.test.case.node")
        for name in ("rnn", "lstm", "gru"):
            importlib.import_module("onnx.backend.test.case.node." + name)
    return [(c.name, c.model, list(c.data_sets[0][0]), list(c.data_sets[0][1])) for c in node._NodeTestCases
            if c.name.startswith(("test_rnn_", "test_simple_rnn_", "test_lstm_", "test_gru_"))
            and "_expanded" not in c.name]


def backend_cases():
    """[(name, model, inputs, outputs)] of every RNN/LSTM/GRU node case."""
    return _from_directories() or _from_case_modules()


def with_weights_stored(model, inputs):
    """(model, feeds): the case's model with its weights W, R, B, P (fed as
    graph inputs by the backend tests) stored as initializers, and the other
    inputs (X, sequence_lens, initial_h, initial_c) by name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.ModelProto()
    proto.CopyFrom(model)
    graph, node = proto.graph, proto.graph.node[0]
    given = [name for name in node.input if name]
    feeds = dict(zip(given, inputs))
    weights = {node.input[k] for k in (1, 2, 3, 7) if k < len(node.input) and node.input[k]}
    kept = [v for v in graph.input if v.name not in weights]
    for name in sorted(weights):
        graph.initializer.append(numpy_helper.from_array(feeds.pop(name), name))
    del graph.input[:]
    graph.input.extend(kept)
    return proto, feeds


def as_node_outputs(model, out, state, layout):
    """rnnext's (out, h_n[, c_n]) as the node's Y, Y_h, Y_c in its layout:
    Y (T, D, B, H) or (B, T, D, H), Y_h (D, B, H) or (B, D, H)."""
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    D, H = model.num_directions, model.hidden_size
    if layout == 0:
        T, B = out.shape[:2]
        return {"Y": out.reshape(T, B, D, H).transpose(0, 2, 1, 3), "Y_h": h_n, "Y_c": c_n}
    B, T = out.shape[:2]
    swap = lambda a: None if a is None else a.transpose(1, 0, 2)  # noqa: E731
    return {"Y": out.reshape(B, T, D, H), "Y_h": swap(h_n), "Y_c": swap(c_n)}
