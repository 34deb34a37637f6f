#!/usr/bin/env python3
"""Fuzz target: ONNX graphs (``rnnext.from_onnx``).

API.md section 6: ``from_onnx`` returns the model a graph of RNN/LSTM/GRU
nodes computes or refuses it; a truncated, malformed or hostile graph
(missing or oversized tensors, wrong shapes and types, cycles, unknown ops,
attributes of any value) raises ``ValueError`` (``TypeError`` only for an
argument of the wrong type), never another exception, a warning, a crash or
a hang. So, for any bytes:

- ``from_onnx`` of the bytes (as bytes, a ``BytesIO`` or, when they parse, an
  ``onnx.ModelProto``) returns a model or raises ValueError/TypeError, and the
  three agree;
- a model that comes back is consistent: one of RNN/LSTM/GRU, parameters
  shaped as its configuration says and of its dtype, a tiny forward with the
  documented shapes, and ``from_onnx(model.to_onnx())`` gives it back
  bit for bit.

Half the mutations are structure-aware: they parse the ModelProto and change
an op type, an attribute, a node's inputs, an initializer's shape, type or
bytes, the node order (cycles), the graph's inputs and outputs or the
metadata, so they get past the protobuf parser; the other half are
libFuzzer's byte mutations. Seeds: ``corpus/onnx/`` (``make_corpus.py``
writes them; without it, a few exported models).

    python fuzz/fuzz_onnx.py -atheris_runs=100000 /tmp/onnx-corpus fuzz/corpus/onnx
"""

from __future__ import annotations

import io
import os
import random
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzlib  # noqa: E402

import numpy as np  # noqa: E402
import rnnext as rx  # noqa: E402

try:
    import onnx  # noqa: E402
    from onnx import helper  # noqa: E402
except ImportError:  # pragma: no cover
    onnx = None

ALLOWED = (ValueError, TypeError)
OPS = ["RNN", "LSTM", "GRU", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather", "Shape",
       "Cast", "Identity", "MatMul", "Gemm", "Add", "Mul", "Where", "Less", "Greater", "Range", "Expand",
       "ConstantOfShape", "Constant", "Dropout", "Loop", "Relu", "Div", "Sub", ""]
ATTRIBUTES = ["clip", "direction", "layout", "activations", "hidden_size", "perm", "axes", "axis", "to",
              "linear_before_reset", "input_forget", "activation_alpha", "transB", "alpha", "allowzero", "value",
              "start", "end"]
ODDITIES = [0, 1, -1, 2, 3, 2**31, 2**62, -2**63, 0.5, float("nan"), float("inf"), b"reverse", b"forward",
            b"bidirectional", b"Relu", b"", [1, 0, 2], [0, 2, 1, 3], [0], [-1], [2**40], [b"Tanh"] * 2,
            [b"Sigmoid", b"Tanh", b"Tanh"], [0.5] * 3, list(range(20))]


def seeds():
    """A few exported models, when the corpus directory is missing."""
    yield rx.LSTM(2, 3, 2, num_layers=2, bidirectional=True, seed=0).to_onnx(lengths=True, state=True)
    yield rx.GRU(2, 2, batch_first=False, linear_before_reset=False, seed=1).to_onnx()
    yield rx.RNN(1, 2, activation="relu", bias=False, seed=2, dtype="float64").to_onnx(state=True)


def _check_model(model) -> None:
    assert type(model) in (rx.RNN, rx.LSTM, rx.GRU), type(model)
    shapes = model.spec.param_shapes()
    assert list(model.params) == list(shapes), (list(model.params), list(shapes))
    for name, value in model.params.items():
        assert value.shape == shapes[name] and value.dtype == model.dtype, (name, value.shape, value.dtype)
    if sum(v.size for v in model.params.values()) > 20000:
        return
    I, H, D, L = model.input_size, model.hidden_size, model.num_directions, model.num_layers
    x = np.zeros((1, 2, I) if model.batch_first else (2, 1, I), model.dtype)
    with np.errstate(all="ignore"):
        out, state = model(x)
    assert out.shape[-1] == (model.output_size or D * H) and out.dtype == model.dtype
    h_n = state[0] if isinstance(state, tuple) else state
    assert h_n.shape == (L * D, 1, H), h_n.shape
    again = rx.from_onnx(model.to_onnx())
    assert type(again) is type(model) and again.config == model.config, (again.config, model.config)
    for name, value in model.params.items():
        assert again.params[name].tobytes() == value.tobytes(), name


def _outcome(call, *args):
    try:
        return call(*args)
    except ALLOWED as e:
        return type(e)
    except Exception as e:
        if fuzzlib.known_exception(e):
            return None
        raise


def TestOneInput(data: bytes) -> None:
    model = _outcome(rx.from_onnx, data)
    again = _outcome(rx.from_onnx, io.BytesIO(data))
    if isinstance(model, type) != isinstance(again, type):
        raise AssertionError(f"from_onnx(bytes) gave {model!r}, from_onnx(BytesIO) {again!r}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:
        proto = None
    if proto is not None:
        third = _outcome(rx.from_onnx, proto)
        if isinstance(model, type) != isinstance(third, type):
            raise AssertionError(f"from_onnx(bytes) gave {model!r}, from_onnx(ModelProto) {third!r}")
    if model is not None and not isinstance(model, type):
        _check_model(model)


# ---------------------------------------------------------------- mutator


def _names(proto):
    names = [v.name for v in proto.graph.input] + [t.name for t in proto.graph.initializer]
    return names + [o for n in proto.graph.node for o in n.output] + ["", "missing"]


def _mutate_attribute(node, rng: random.Random) -> None:
    if node.attribute and rng.random() < 0.3:
        del node.attribute[rng.randrange(len(node.attribute))]
        return
    name = rng.choice([a.name for a in node.attribute] + ATTRIBUTES)
    value = rng.choice(ODDITIES)
    if name == "value":
        value = helper.make_tensor("v", rng.choice([1, 7, 11, 8]), [rng.choice([0, 1, 3])], [])
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    try:
        node.attribute.append(helper.make_attribute(name, value))
    except (ValueError, TypeError):
        pass


def _mutate_tensor(tensor, rng: random.Random) -> None:
    op = rng.randrange(5)
    if op == 0:
        dims = list(tensor.dims)
        if dims and rng.random() < 0.7:
            dims[rng.randrange(len(dims))] = rng.choice([0, 1, 2, 3, 7, -1, 2**40, 2**62])
        else:
            dims = dims[::-1] + [1] if rng.random() < 0.5 else dims[:-1]
        del tensor.dims[:]
        tensor.dims.extend(dims)
    elif op == 1:
        tensor.data_type = rng.choice([0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 16, 17, 40])
    elif op == 2:
        raw = tensor.raw_data
        tensor.raw_data = raw[:rng.randrange(len(raw) + 1)] if raw and rng.random() < 0.5 else raw + bytes(4)
    elif op == 3:
        tensor.data_location = 1  # external
    else:
        tensor.name = rng.choice(["W_x_l0", "W_h_l0", "b_l0", "W_o_T", "x", "out", ""])


def _mutate(proto, rng: random.Random) -> None:
    graph, op = proto.graph, rng.randrange(9)
    nodes = graph.node
    if op == 0 and nodes:
        rng.choice(nodes).op_type = rng.choice(OPS)
    elif op == 1 and nodes:
        _mutate_attribute(rng.choice(nodes), rng)
    elif op == 2 and nodes:
        node = rng.choice(nodes)
        names = _names(proto)
        if node.input and rng.random() < 0.8:
            node.input[rng.randrange(len(node.input))] = rng.choice(names)
        else:
            node.input.append(rng.choice(names))
    elif op == 3 and graph.initializer:
        _mutate_tensor(rng.choice(graph.initializer), rng)
    elif op == 4 and nodes:
        i, j = rng.randrange(len(nodes)), rng.randrange(len(nodes))
        if rng.random() < 0.5:
            nodes[i].output[0:1] = [nodes[j].input[0] if nodes[j].input else "loop"]  # a cycle, or a redefinition
        else:
            del nodes[i]
    elif op == 5 and graph.output:
        graph.output[rng.randrange(len(graph.output))].name = rng.choice(_names(proto))
    elif op == 6 and graph.input:
        dims = rng.choice(graph.input).type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            if rng.random() < 0.5:
                d.dim_value = rng.choice([0, 1, 2, 3, 2**40])
            else:
                d.dim_param = rng.choice(["batch", "time", "x"])
    elif op == 7:
        helper.set_model_props(proto, {"rnnext.class": rng.choice(["LSTM", "GRU", "RNN", "Seq2Seq"]),
                                       "rnnext.config": rng.choice(['{"dropout": 0.5}', "[", '{"dropout": 2}',
                                                                    '{"hidden_size": 3, "dropout": 0.1}'])})
    else:
        proto.opset_import[0].version = rng.choice([1, 7, 13, 14, 17, 22, 10**6]) if proto.opset_import else 17


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        return atheris.Mutate(data, max_size)
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception:
        return atheris.Mutate(data, max_size)
    for _ in range(rng.choice([1, 1, 2, 3])):
        try:
            _mutate(proto, rng)
        except (ValueError, TypeError, IndexError):  # an edit protobuf refuses
            pass
    out = proto.SerializeToString()
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def main() -> None:
    if onnx is None:
        print("fuzz_onnx.py: onnx is not installed; nothing to fuzz")
        return
    rx.set_num_threads(1)
    rx.from_onnx(next(seeds()))  # imports the modules a call imports lazily, to instrument them
    fuzzlib.instrument("rnnext", "__main__")
    fuzzlib.limit_process()
    fuzzlib.print_summary_at_exit()
    argv = list(sys.argv)
    if not any(os.path.isdir(a) and os.listdir(a) for a in argv[1:] if not a.startswith("-")):
        scratch = next((a for a in argv[1:] if not a.startswith("-") and os.path.isdir(a)), None)
        for i, data in enumerate(seeds() if scratch else ()):
            with open(os.path.join(scratch, f"seed{i}"), "wb") as f:
                f.write(data)
    atheris.Setup(argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
