"""ONNX export and import (API.md section 6): ``model.to_onnx`` run by
onnxruntime (and onnx's ReferenceEvaluator for float64) gives the model's
outputs; ``rx.from_onnx`` reads back rnnext's graphs exactly, reads what
``torch.onnx.export`` writes and the ONNX backend's node cases, refuses what
rnnext cannot compute by name, and refuses malformed graphs with ValueError.
Skipped without onnx / onnxruntime (and torch, for its tests)."""

import io
import itertools

import numpy as np
import pytest
from helpers import CELLS_ALL_ACTIVATIONS, assert_close, base, is_lstm

import rnnext as rx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx_cases import (as_node_outputs, backend_cases, call_inputs, initializer, make_model,  # noqa: E402
                        model_outputs, node_named, proto_of, replace_initializer, session, set_attribute,
                        stateful_torch_module, torch_export, torch_module, torch_outputs, with_weights_stored)


def run_onnx(data, feeds):
    s = session(data)
    names = [i.name for i in s.get_inputs()]
    return s.run(None, {k: v for k, v in feeds.items() if k in names})


def assert_same_model(a, b):
    assert type(a) is type(b) and a.config == b.config
    assert list(a.params) == list(b.params)
    for name, value in a.params.items():
        assert b.params[name].dtype == value.dtype and b.params[name].tobytes() == value.tobytes(), name


# ---------------------------------------------------------------- export: onnxruntime gives the model's outputs


@pytest.mark.parametrize("head", [None, 2], ids=["nohead", "head"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
def test_onnxruntime_matches_model(rng, cell, layers, bidirectional, head):
    batch_first = (layers + bidirectional + (head is None)) % 2 == 0  # both layouts for every cell
    model = make_model(cell, layers, bidirectional, head, batch_first, bias=layers != 2, seed=layers)
    for lengths, state in itertools.product([False, True], repeat=2):
        data = model.to_onnx(lengths=lengths, state=state)
        onnx.checker.check_model(proto_of(data), full_check=True)
        feeds, kwargs = call_inputs(model, rng, lengths=lengths, state=state)
        got, expected = run_onnx(data, feeds), model_outputs(model, feeds, kwargs)
        assert [v.name for v in proto_of(data).graph.output] == ["out", "h_n", "c_n"][:len(expected)]
        for name, g, e in zip(["out", "h_n", "c_n"], got, expected):
            assert_close(g, e, np.float32, f"{name}, lengths={lengths}, state={state}")
        if lengths:  # exactly zero past each length, the head's output too
            out = got[0] if batch_first else got[0].transpose(1, 0, 2)
            for b, n in enumerate(feeds["lengths"]):
                assert not out[b, n:].any()


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
def test_reference_evaluator_matches_float64(rng, cell):
    # onnxruntime has no float64 RNN/LSTM/GRU kernels; onnx's ReferenceEvaluator
    # has, but ignores sequence_lens: full lengths here.
    from onnx.reference import ReferenceEvaluator

    if cell in ("rnn_sigmoid", "rnn_relu"):
        pytest.skip("onnx's ReferenceEvaluator computes RNN with tanh only")
    model = make_model(cell, 2, True, 3, batch_first=cell != "lstm", dtype="float64")
    data = model.to_onnx(lengths=True, state=True)
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto_of(data).graph.initializer
               if t.name.startswith(("W_", "b_")))
    feeds, kwargs = call_inputs(model, rng, state=True)
    feeds["lengths"] = kwargs["lengths"] = np.full(3, 4, np.int64)
    got = ReferenceEvaluator(data).run(None, feeds)
    for g, e in zip(got, model_outputs(model, feeds, kwargs)):
        assert_close(g, e, np.float64)


def test_dynamic_batch_and_time(rng):
    model = make_model("gru", 2, True, 2)
    data = model.to_onnx(lengths=True)
    s = session(data)
    for B, T in [(1, 1), (5, 7)]:
        feeds, kwargs = call_inputs(model, rng, B=B, T=T, lengths=True)
        for g, e in zip(s.run(None, feeds), model_outputs(model, feeds, kwargs)):
            assert_close(g, e, np.float32, f"B={B}, T={T}")
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto_of(data).graph.input]
    assert dims == [["batch", "time", 3], ["batch"]]


def test_graph_structure():
    proto = proto_of(make_model("lstm", 2, True, 2).to_onnx(lengths=True, state=True))
    recurrent = [n for n in proto.graph.node if n.op_type == "LSTM"]
    assert [n.name for n in recurrent] == ["lstm_l0", "lstm_l1"]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in recurrent[0].attribute}
    assert attributes["direction"] == b"bidirectional" and attributes["layout"] == 0
    assert attributes["activations"] == [b"Sigmoid", b"Tanh", b"Tanh"] * 2
    gru = proto_of(make_model("gru_onnx").to_onnx())
    assert {a.name: a.i for a in gru.graph.node[1].attribute if a.name == "linear_before_reset"} == \
        {"linear_before_reset": 0}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rnnext.class"] == "LSTM" and '"dropout": 0.0' in meta["rnnext.config"]
    # Weights in ONNX's gate order (i, o, f, c) under rnnext's names.
    model = make_model("lstm")
    W = initializer(proto_of(model.to_onnx()), "W_x_l0")[0]
    i, f, g, o = np.split(model.params["W_x_l0"], 4)
    np.testing.assert_array_equal(W, np.concatenate([i, o, f, g]))


# ---------------------------------------------------------------- export: arguments and targets


def test_file_targets(tmp_path):
    model = make_model("rnn", 2)
    data = model.to_onnx()
    assert isinstance(data, bytes)
    path = tmp_path / "model.onnx"
    assert model.to_onnx(path) is None and path.read_bytes() == data
    assert model.to_onnx(str(path), opset=14) is None and path.read_bytes() != data
    buffer = io.BytesIO()
    assert model.to_onnx(buffer) is None and buffer.getvalue() == data
    for source in [data, bytearray(data), memoryview(data), io.BytesIO(data), tmp_path / "again.onnx",
                   proto_of(data)]:
        if isinstance(source, type(tmp_path)):
            source.write_bytes(data)
        assert_same_model(rx.from_onnx(source), model)
    assert proto_of(data).opset_import[0].version == 17


def test_argument_errors():
    model = make_model("lstm")
    with pytest.raises(TypeError, match="file"):
        model.to_onnx(3)
    for opset, error in [(13, ValueError), (10**6, ValueError), ("17", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="opset"):
            model.to_onnx(opset=opset)
    with pytest.raises(TypeError, match="lengths"):
        model.to_onnx(lengths=1)
    with pytest.raises(TypeError, match="state"):
        model.to_onnx(state="yes")
    with pytest.raises(ValueError, match="quantized"):
        model.quantize("int8").to_onnx()
    with pytest.raises(TypeError, match="model"):
        rx.from_onnx(3.5)


def test_proj_size_refused():
    try:
        model = rx.LSTM(3, 5, proj_size=2)
    except TypeError:  # before LSTM(proj_size=) exists: the configuration key alone
        model = make_model("lstm")
        model.spec.config["proj_size"] = 2
    with pytest.raises(ValueError, match="proj_size"):
        model.to_onnx()


# ---------------------------------------------------------------- import: rnnext's own graphs, exactly


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
def test_round_trip_is_exact(rng, cell):
    for layers, bidirectional, head, batch_first, bias, dtype in [
            (1, False, None, True, True, "float32"), (3, True, 2, False, False, "float32"),
            (2, True, None, True, False, "float64"), (1, False, 4, False, True, "float64")]:
        model = make_model(cell, layers, bidirectional, head, batch_first, bias, dtype, dropout=0.25 * (layers > 1))
        for lengths, state in [(False, False), (True, True)]:
            again = rx.from_onnx(model.to_onnx(lengths=lengths, state=state))
            assert_same_model(again, model)
            feeds, kwargs = call_inputs(model, rng, lengths=lengths, state=state)
            for a, b in zip(model_outputs(again, feeds, kwargs), model_outputs(model, feeds, kwargs)):
                np.testing.assert_array_equal(a, b)


def test_metadata_only_restores_dropout():
    model = make_model("gru", 2, True, 2, dropout=0.5)
    proto = proto_of(model.to_onnx())
    del proto.metadata_props[:]
    again = rx.from_onnx(proto)
    assert again.config == {**model.config, "dropout": 0.0}
    proto = proto_of(model.to_onnx())
    onnx.helper.set_model_props(proto, {"rnnext.class": "GRU", "rnnext.config": '{"hidden_size": 7, "dropout": 0.5}'})
    assert rx.from_onnx(proto).config["dropout"] == 0.0  # the graph disagrees: metadata ignored
    assert_same_model(rx.from_onnx(model.to_onnx()), model)


# ---------------------------------------------------------------- import: torch.onnx.export


@pytest.mark.parametrize("head", [False, True], ids=["nohead", "head"])
@pytest.mark.parametrize("kind", ["RNN tanh", "RNN relu", "LSTM", "GRU"])
def test_torch_script_export(rng, kind, head):
    pytest.importorskip("torch")
    kind, _, nonlinearity = kind.partition(" ")
    for layers, bidirectional, batch_first in itertools.product([1, 2], [False, True], [True, False]):
        module = torch_module(kind, nonlinearity or "tanh", layers, bidirectional, batch_first, head)
        shape = (2, 4, 3) if batch_first else (4, 2, 3)
        model = rx.from_onnx(torch_export(module, rng.standard_normal(shape).astype(np.float32), dynamo=False))
        assert model.batch_first == batch_first and model.num_layers == layers
        assert model.output_size == (2 if head else None)
        x = rng.standard_normal((3, 6, 3) if batch_first else (6, 3, 3)).astype(np.float32)
        out, state = model(x)
        for g, e in zip([out, *(state if isinstance(state, tuple) else (state,))], torch_outputs(module, x)):
            np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_torch_export_with_initial_states(rng, kind):
    # The states as graph inputs (sliced per layer), float64 weights, no biases.
    pytest.importorskip("torch")
    module, n = stateful_torch_module(kind), 2 if kind == "LSTM" else 1
    x, *states = [rng.standard_normal(s) for s in [(4, 2, 3)] + [(4, 2, 5)] * n]
    model = rx.from_onnx(torch_export(module, x, dynamo=False, states=states))
    assert model.dtype == np.float64 and not model.bias and not model.batch_first
    x, *states = [rng.standard_normal(s) for s in [(6, 3, 3)] + [(4, 3, 5)] * n]
    out, state = model(x, tuple(states) if n == 2 else states[0])
    for g, e in zip([out, *(state if isinstance(state, tuple) else (state,))], torch_outputs(module, x, *states)):
        assert_close(g, e, np.float64)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_dynamo_export(rng, kind):
    # torch 2.13's dynamo exporter writes LSTM/GRU nodes; for GRU it must write
    # linear_before_reset=1 (pytorch#189225 wrote 0: from_onnx then reads the
    # graph's GRU faithfully, which is not torch's).
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")  # the dynamo exporter's
    module = torch_module(kind, layers=2, bidirectional=kind == "LSTM", batch_first=True, head=kind == "LSTM")
    data = torch_export(module, rng.standard_normal((2, 4, 3)).astype(np.float32), dynamo=True)
    model = rx.from_onnx(data)
    if kind == "GRU":
        assert model.linear_before_reset
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    out, state = model(x)
    for g, e in zip([out, *(state if isinstance(state, tuple) else (state,))], torch_outputs(module, x)):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-6)


def test_torch_dynamo_refusals(rng):
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    # nn.RNN is unrolled into MatMul/Tanh: no recurrent node to read.
    data = torch_export(torch_module("RNN"), rng.standard_normal((2, 4, 3)).astype(np.float32), dynamo=True)
    with pytest.raises(ValueError, match="dynamo=False"):
        rx.from_onnx(data)
    # Time-major with a dynamic time axis: the example's T is baked into a Reshape.
    data = torch_export(torch_module("GRU", batch_first=False), rng.standard_normal((4, 2, 3)).astype(np.float32),
                        dynamo=True)
    with pytest.raises(ValueError, match="Reshape.*fixed size 4.*dynamo=False"):
        rx.from_onnx(data)


# ---------------------------------------------------------------- import: the ONNX backend's node cases

BACKEND = backend_cases()


@pytest.mark.parametrize("case", BACKEND, ids=[c[0] for c in BACKEND])
def test_backend_node_case(case):
    name, model, inputs, outputs = case
    proto, feeds = with_weights_stored(model, inputs)
    node = proto.graph.node[0]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "peepholes" in name:
        with pytest.raises(ValueError, match="'P'.*peephole|peephole.*'P'"):
            rx.from_onnx(proto)
        return
    if attributes.get("direction") == b"reverse":
        with pytest.raises(ValueError, match="direction.*reverse"):
            rx.from_onnx(proto)
        # What the message says instead: a forward layer on the reversed sequences.
        set_attribute(node, "direction", "forward")
        model, x = rx.from_onnx(proto), feeds["X"]
        flip = (lambda a: a[:, ::-1]) if attributes.get("layout", 0) else (lambda a: a[::-1])
        out, state = model(flip(x).copy())
        mine = as_node_outputs(model, flip(out), state, attributes.get("layout", 0))
    else:
        model = rx.from_onnx(proto)
        layout = attributes.get("layout", 0)
        assert model.batch_first == (layout == 1)
        kwargs = {}
        if "sequence_lens" in feeds:
            kwargs["lengths"] = feeds["sequence_lens"]
        if "initial_h" in feeds:
            to_rnnext = (lambda a: a.transpose(1, 0, 2)) if layout else (lambda a: a)
            h0 = [to_rnnext(feeds[k]) for k in ("initial_h", "initial_c") if k in feeds]
            kwargs["h0"] = tuple(h0) if is_lstm(base(node.op_type)) else h0[0]
        out, state = model(feeds["X"], **kwargs)
        mine = as_node_outputs(model, out, state, layout)
    roles = dict(zip(node.output, ["Y", "Y_h", "Y_c"]))
    for output, expected in zip(proto.graph.output, outputs):
        np.testing.assert_allclose(mine[roles[output.name]], expected, rtol=1e-5, atol=1e-6, err_msg=output.name)


# ---------------------------------------------------------------- import: refusals, by attribute and node


def _refused(proto, *words):
    with pytest.raises(ValueError) as e:
        rx.from_onnx(proto)
    for word in words:
        assert word in str(e.value), (word, str(e.value))


@pytest.mark.parametrize("edit, words", [
    (lambda n: set_attribute(n, "clip", 3.0), ["'clip'"]),
    (lambda n: set_attribute(n, "input_forget", 1), ["'input_forget'"]),
    (lambda n: set_attribute(n, "activation_alpha", [0.5] * 6), ["'activation_alpha'"]),
    (lambda n: set_attribute(n, "activation_beta", [0.5] * 6), ["'activation_beta'"]),
    (lambda n: set_attribute(n, "activations", ["Sigmoid", "Tanh", "Relu"] * 2), ["'activations'"]),
    (lambda n: set_attribute(n, "activations", ["Sigmoid", "Tanh", "Tanh", "Sigmoid", "Tanh", "Sigmoid"]),
     ["'activations'", "both directions"]),
    (lambda n: set_attribute(n, "direction", "reverse"), ["'direction'"]),
    (lambda n: set_attribute(n, "layout", 2), ["'layout'"]),
    (lambda n: set_attribute(n, "hidden_size", 4), ["'hidden_size'"]),
    (lambda n: (set_attribute(n, "direction", "forward"), set_attribute(n, "activations", ["Sigmoid", "Tanh", "Tanh"])),
     ["input 'W'"]),
    (lambda n: n.input.extend(["", "", "", "", "W_x_l1"][len(n.input) - 3:]), ["'P'", "peephole"]),
], ids=["clip", "input_forget", "alpha", "beta", "activations", "per_direction", "reverse", "layout",
        "hidden_size", "direction_vs_weights", "peepholes"])
def test_refuses_what_rnnext_cannot_compute(edit, words):
    proto = proto_of(make_model("lstm", 2, True).to_onnx())
    edit(node_named(proto, "lstm_l1"))
    _refused(proto, "'lstm_l1' (LSTM)", *words)


def test_refuses_other_activations_and_layer_differences():
    proto = proto_of(make_model("rnn", 2, True).to_onnx())
    set_attribute(node_named(proto, "rnn_l0"), "activations", ["Tanh", "Relu"])
    _refused(proto, "'rnn_l0' (RNN)", "'activations'", "both directions")
    proto = proto_of(make_model("rnn", 2).to_onnx())
    set_attribute(node_named(proto, "rnn_l0"), "activations", ["LeakyRelu"])
    _refused(proto, "'rnn_l0' (RNN)", "'activations'", "tanh, sigmoid or relu")
    set_attribute(node_named(proto, "rnn_l0"), "activations", ["Relu"])
    _refused(proto, "'rnn_l1' (RNN)", "activation", "layer 0")  # layer 1 is tanh
    proto = proto_of(make_model("gru", 2).to_onnx())
    set_attribute(node_named(proto, "gru_l1"), "linear_before_reset", 0)
    _refused(proto, "'gru_l1' (GRU)", "linear_before_reset")
    # A second layer of another hidden size (weights that fit each other).
    proto = proto_of(make_model("gru", 2).to_onnx())
    other = make_model("gru", 2, H=4, I=5)
    for name in ("W_x_l1", "W_h_l1", "b_l1"):
        replace_initializer(proto, name, initializer(proto_of(other.to_onnx()), name))
    _refused(proto, "'gru_l1' (GRU)", "hidden_size")


# ---------------------------------------------------------------- import: malformed and hostile graphs


def test_malformed_graphs_raise_value_error():
    data = make_model("lstm", 2, True, 2).to_onnx(lengths=True)
    for bad in [data[:len(data) // 2], b"\x00" * 16, b"not an onnx model", bytes(range(256)) * 4]:
        with pytest.raises(ValueError):
            rx.from_onnx(bad)
    # A missing initializer.
    proto = proto_of(data)
    del proto.graph.initializer[[t.name for t in proto.graph.initializer].index("W_h_l0")]
    _refused(proto, "'lstm_l0' (LSTM) reads 'W_h_l0', which nothing defines")
    # Wrong weight shape, string weights, integer weights, a huge declared shape.
    for value, words in [(np.zeros((2, 20, 4), np.float32), ["input 'R'", "shape"]),
                         (np.array(["a"] * 200).reshape(2, 20, 5), ["STRING"]),
                         (np.zeros((2, 20, 5), np.int64), ["int64", "float32 or float64"])]:
        proto = proto_of(data)
        replace_initializer(proto, "W_h_l0", value)
        _refused(proto, *words)
    proto = proto_of(data)
    tensor = next(t for t in proto.graph.initializer if t.name == "W_h_l0")
    tensor.dims[:] = [2, 2**40, 5]
    _refused(proto, "W_h_l0", "elements")
    tensor.dims[:] = [2, 21, 5]
    _refused(proto, "W_h_l0", "stores")


def test_cycles_and_unknown_ops_raise_value_error():
    proto = proto_of(make_model("rnn", 2).to_onnx())
    first = node_named(proto, "rnn_l0")
    first.input[0] = "h_seq_l1"  # layer 0 reads layer 1's output
    _refused(proto, "cycle")
    proto = proto_of(make_model("rnn", 2).to_onnx())
    squeeze = next(n for n in proto.graph.node if n.output[0] == "h_seq_l0")
    squeeze.output[0] = "squeezed"
    proto.graph.node.append(onnx.helper.make_node("Relu", ["squeezed"], ["h_seq_l0"], name="sneaky"))
    _refused(proto, "'sneaky' (Relu)")
    proto = proto_of(make_model("rnn").to_onnx())
    proto.graph.node.append(onnx.helper.make_node("Identity", ["out"], ["out"], name="again"))
    _refused(proto, "already defined")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])])
    _refused(onnx.helper.make_model(graph), "no RNN, LSTM or GRU node")


def test_weights_as_graph_inputs_are_refused():
    name, model, inputs, _ = next(c for c in BACKEND if c[0] == "test_gru_defaults")
    _refused(model, "input 'W'", "graph input")


def test_reads_a_gemm_head_and_computed_shapes(rng):
    # Another writer's plumbing: batch-major x, a Gemm head on (T*B, H) rows
    # (transB=1), and the output reshaped with a shape computed from x.
    from onnx import TensorProto, helper, numpy_helper

    model = make_model("lstm", head=2)
    ours = proto_of(model.to_onnx())
    W_o, b_o = model.params["W_o"], model.params["b_o"]
    h = helper
    nodes = [h.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
             h.make_node("LSTM", ["xt", "W_x_l0", "W_h_l0", "b_l0"], ["Y", "Y_h", "Y_c"], hidden_size=5, name="l0"),
             h.make_node("Squeeze", ["Y", "one"], ["seq"]),
             h.make_node("Transpose", ["seq"], ["bt"], perm=[1, 0, 2]),
             h.make_node("Reshape", ["bt", "rows"], ["flat"]),
             h.make_node("Gemm", ["flat", "W_o", "b_o"], ["y"], transB=1),
             h.make_node("Shape", ["x"], ["shape"]),
             h.make_node("Slice", ["shape", "zero", "two"], ["bt_shape"]),
             h.make_node("Concat", ["bt_shape", "outs"], ["target"], axis=0),
             h.make_node("Reshape", ["y", "target"], ["out"])]
    inits = [t for t in ours.graph.initializer if t.name in ("W_x_l0", "W_h_l0", "b_l0")] + [
        numpy_helper.from_array(a, n) for a, n in [(W_o, "W_o"), (b_o, "b_o"), (np.array([1]), "one"),
                                                   (np.array([-1, 5]), "rows"), (np.array([0]), "zero"),
                                                   (np.array([2]), "two"), (np.array([2]), "outs")]]
    graph = h.make_graph(nodes, "gemm", [h.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", 3])],
                         [h.make_tensor_value_info("out", TensorProto.FLOAT, None),
                          h.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)], inits)
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    proto.ir_version = 8
    again = rx.from_onnx(proto)
    assert_same_model(again, model)
    feeds, _ = call_inputs(model, rng)
    got = run_onnx(proto.SerializeToString(), feeds)
    assert_close(got[0], model(feeds["x"])[0], np.float32)


def test_fuzz_findings():
    # fuzz/fuzz_onnx.py: StopIteration escaped from a Mul of an output by itself.
    from onnx import numpy_helper

    proto = proto_of(make_model("rnn").to_onnx())
    node = next(n for n in proto.graph.node if n.output[0] == "out")
    node.input[0] = "squared"
    proto.graph.node.insert(len(proto.graph.node) - 2, onnx.helper.make_node("Mul", ["h_seq_l0", "h_seq_l0"],
                                                                             ["squared"], name="square"))
    _refused(proto, "'square' (Mul)")
    # A constant initial state holding NaN: np.any warned (an error under the fuzzer's filter).
    proto = proto_of(make_model("lstm").to_onnx(state=True))
    proto.graph.initializer.append(numpy_helper.from_array(np.full((1, 3, 5), np.nan, np.float32), "nan_state"))
    node_named(proto, "lstm_l0").input[5] = "nan_state"
    _refused(proto, "'lstm_l0' (LSTM)", "'initial_h'")
