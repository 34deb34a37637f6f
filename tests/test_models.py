"""rnnext.RNN, LSTM and GRU: parameters and their initialisation, config and
repr, state dicts, pickles, the forward (one or more layers, one or two
directions) against a stack of rnnext.reference's layers, many-to-one,
unbatched input, predict. Streaming is in test_generate.py, files in
test_io.py, training in test_training.py, errors in test_errors.py."""

import copy
import pickle

import numpy as np
import pytest
from helpers import (CELLS_ALL_ACTIVATIONS, DTYPES, KINDS, assert_close, dtype_id, gates, is_lstm, make, model_of,
                     model_state, stacked_reference, states_of)

import rnnext as rx

GATES = {kind: gates(kind) for kind in KINDS}


# ---------------------------------------------------------------- construction


def test_one_layer_parameters_and_initialisation():
    model = rx.RNN(5, 8, 3, seed=0)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {"W_x_l0": (8, 5), "W_h_l0": (8, 8), "b_x_l0": (8,), "b_h_l0": (8,), "W_o": (3, 8), "b_o": (3,)}
    bound = 1 / np.sqrt(8)
    for name, value in model.params.items():
        assert value.dtype == np.float32
        assert np.all(np.abs(value) <= bound), name
        assert np.std(value) > bound / 4, name  # actually random, not zeros
    assert model.W_x is model.params["W_x_l0"]
    big = rx.RNN(10, 400, seed=1)  # U(-k, k) has variance k^2 / 3
    assert abs(np.var(big.W_h) - 1 / (3 * 400)) < 0.02 / (3 * 400) * 10


def test_seed_reproducible():
    a, b, c = rx.RNN(3, 4, 2, seed=7), rx.RNN(3, 4, 2, seed=7), rx.RNN(3, 4, 2, seed=8)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.W_h, c.W_h)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_parameter_names_shapes_and_initialisation(kind, bidirectional):
    H, I, O, G = 6, 4, 3, GATES[kind]
    model = make(kind, I, H, O, num_layers=3, bidirectional=bidirectional, seed=0)
    D = 2 if bidirectional else 1
    expected = {}
    for layer in range(3):
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            expected.update({"W_x" + sfx: (G * H, I if layer == 0 else D * H), "W_h" + sfx: (G * H, H),
                             "b_x" + sfx: (G * H,), "b_h" + sfx: (G * H,)})
    expected.update(W_o=(O, D * H), b_o=(O,))
    assert [(k, v.shape) for k, v in model.params.items()] == list(expected.items())  # torch's order too
    for name, value in model.params.items():
        bound = 1 / np.sqrt(D * H) if name in ("W_o", "b_o") else 1 / np.sqrt(H)
        assert value.dtype == np.float32 and not value.flags.writeable
        assert np.all(np.abs(value) <= bound), name
        assert value.size < 12 or np.std(value) > bound / 4, name  # actually random
    big = make(kind, 2, 50, 400, bidirectional=bidirectional, seed=0)  # torch.nn.Linear(D*H, O)'s bound
    assert 0.95 / np.sqrt(D * 50) < np.abs(big.params["W_o"]).max() <= 1 / np.sqrt(D * 50)
    again = make(kind, I, H, O, num_layers=3, bidirectional=bidirectional, seed=0)
    other = make(kind, I, H, O, num_layers=3, bidirectional=bidirectional, seed=1)
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], again.params[k])
        assert not np.array_equal(model.params[k], other.params[k])


def test_one_layer_rnn_initialisation_is_unchanged():
    """A one-layer RNN draws its parameters in 0.3's order: seeded models stay the same."""
    model = rx.RNN(3, 4, 2, seed=5)
    rng = np.random.default_rng(5)
    k = 0.5
    for name, shape in [("W_x_l0", (4, 3)), ("W_h_l0", (4, 4)), ("b_x_l0", (4,)), ("b_h_l0", (4,)),
                        ("W_o", (2, 4)), ("b_o", (2,))]:
        np.testing.assert_array_equal(model.params[name], rng.uniform(-k, k, shape).astype(np.float32))


def test_attributes_only_on_single_layer_models(kind):
    single = make(kind, 3, 4, 2, seed=0)
    assert single.W_x is single.params["W_x_l0"] and single.W_h.shape == (GATES[kind] * 4, 4)
    assert single.b_o is single.params["b_o"]
    single.W_h = np.zeros((GATES[kind] * 4, 4))
    assert not single.params["W_h_l0"].any()
    for model in (make(kind, 3, 4, 2, num_layers=2), make(kind, 3, 4, 2, bidirectional=True)):
        for name in ("W_x", "W_h", "b_x", "b_h", "W_o", "b_o"):
            with pytest.raises(AttributeError, match=rf"{name}: only a one-layer, one-direction model.*\.params"):
                getattr(model, name)
            with pytest.raises(AttributeError, match=name):
                setattr(model, name, np.zeros(3))
        assert not hasattr(model, "W_x")


def test_no_bias_no_head(kind):
    model = make(kind, 3, 4, bias=False)
    assert set(model.params) == {"W_x_l0", "W_h_l0"}
    assert model.b_x is None and model.W_o is None
    with pytest.raises(AttributeError, match="b_x"):
        model.b_x = np.zeros(4)
    with pytest.raises(KeyError, match="b_h_l0"):
        model.params["b_h_l0"] = np.zeros(4)


def test_config_repr():
    model = rx.RNN(3, 4, 2, activation="relu", bias=False, batch_first=False, dtype=np.float64, seed=3)
    assert model.config == dict(input_size=3, hidden_size=4, output_size=2, vocab_size=None, num_layers=1,
                                bidirectional=False,
                                activation="relu", bias=False, dropout=0.0, batch_first=False, dtype="float64")
    clone = rx.RNN.from_config(model.config)
    assert clone.config == model.config
    assert repr(model) == "RNN(3, 4, output_size=2, activation='relu', bias=False, batch_first=False, dtype=float64)"
    assert repr(rx.RNN(3, 4)) == "RNN(3, 4)"
    with pytest.raises(ValueError, match="unknown keys.*'layers'"):
        rx.RNN.from_config({**model.config, "layers": 2})


@pytest.mark.parametrize("kind,kwargs,expected", [
    ("LSTM", dict(num_layers=2, bidirectional=True), "LSTM(8, 16, num_layers=2, bidirectional=True)"),
    ("GRU", dict(output_size=3, dropout=0.5, num_layers=2, batch_first=False),
     "GRU(8, 16, output_size=3, num_layers=2, batch_first=False, dropout=0.5)"),
    ("GRU", dict(linear_before_reset=False, dtype="float64"), "GRU(8, 16, linear_before_reset=False, dtype=float64)"),
    ("RNN", dict(activation="relu", bias=False, bidirectional=True),
     "RNN(8, 16, activation='relu', bias=False, bidirectional=True)"),
    ("LSTM", {}, "LSTM(8, 16)"),
])
def test_repr_and_config(kind, kwargs, expected):
    model = make(kind, 8, 16, **kwargs)
    assert repr(model) == expected
    clone = type(model).from_config(model.config)
    assert clone.config == model.config and repr(clone) == expected
    assert set(model.config) == set(type(model)._config_keys())


def test_config_keys_per_class():
    common = {"input_size", "hidden_size", "output_size", "vocab_size", "num_layers", "bidirectional", "bias",
              "dropout", "batch_first", "dtype"}
    assert set(rx.RNN(2, 3).config) == common | {"activation"}
    assert set(rx.LSTM(2, 3).config) == common | {"proj_size"}
    assert set(rx.GRU(2, 3).config) == common | {"linear_before_reset"}
    assert rx.LSTM(2, 3, num_layers=2, dropout=1).config["dropout"] == 1.0
    with pytest.raises(ValueError, match=r"unknown keys \['activation'\] for LSTM"):
        rx.LSTM.from_config({**rx.LSTM(2, 3).config, "activation": "tanh"})
    with pytest.raises(ValueError, match=r"missing keys \['hidden_size'\]"):
        rx.GRU.from_config({"input_size": 2})
    with pytest.raises(TypeError, match="config"):
        rx.GRU.from_config([("input_size", 2)])


# ---------------------------------------------------------------- parameters and persistence


def test_params_items_and_values_read_one_set_of_values(kind):
    # What a save (io.to_bytes) or a copy reads while another thread assigns:
    # the old set or the new, never a mix of the two.
    model = make(kind, 3, 4, 2, seed=0)
    old = model.state_dict()
    items = iter(model.params.items())
    values = iter(model.params.values())
    first_key, _ = next(items)
    next(values)
    model.load_state_dict({k: np.zeros_like(v) for k, v in old.items()})
    rest = dict(items)
    assert first_key not in rest and set(rest) | {first_key} == set(old)
    for key, value in rest.items():
        np.testing.assert_array_equal(value, old[key], err_msg=key)
    assert all(v.any() or not old_v.any() for v, old_v in zip(values, list(old.values())[1:]))
    assert not any(v.any() for v in model.params.values())  # a new read sees the new set


def test_parameters_are_read_only_and_assignable(rng, kind):
    G = GATES[kind]
    model = make(kind, 3, 4, 2, seed=0)
    with pytest.raises(ValueError):
        model.W_h[0, 0] = 1.0
    x = rng.standard_normal((2, 5, 3))
    before = model(x)[0]
    new = rng.standard_normal((G * 4, 4))
    model.W_h = new  # float64 in, cast to the model's float32
    assert model.W_h.dtype == np.float32 and not model.W_h.flags.writeable
    new[:] = 0  # the model keeps its own copy
    assert model.W_h.any()
    after = model(x)[0]
    assert not np.allclose(before, after)  # packed weights were refreshed
    assert_close(after, stacked_reference(model, x)[0], np.float32, kind)
    model.params["b_o"] = [1.0, 2.0]
    assert_close(model(x)[0], stacked_reference(model, x)[0], np.float32, kind)
    with pytest.raises(ValueError, match=rf"W_h_l0: expected shape \({G * 4}, 4\), got \({G * 4}, 3\)"):
        model.W_h = np.zeros((G * 4, 3))
    with pytest.raises(TypeError, match="W_x"):
        model.W_x = np.zeros((G * 4, 3), complex)
    with pytest.raises(KeyError, match="W_q"):
        model.params["W_q"] = np.zeros(3)


def test_state_dict_round_trip(rng, kind):
    a, b = make(kind, 3, 4, 2, seed=0), make(kind, 3, 4, 2, seed=1)
    state = a.state_dict()
    assert state.keys() == a.params.keys()
    state["W_x_l0"][0, 0] = 100.0  # copies: the model is unchanged
    assert a.W_x[0, 0] != 100.0
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_load_state_dict_errors(kind):
    G = GATES[kind]
    model = make(kind, 3, 4, seed=0)
    state = model.state_dict()
    with pytest.raises(ValueError, match="missing keys \\['b_h_l0'\\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "b_h_l0"})
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    before = model.W_x.copy()
    bad = {**state, "W_x_l0": np.ones((G * 4, 3)), "W_h_l0": np.zeros((5, 5))}
    with pytest.raises(ValueError, match="W_h_l0"):
        model.load_state_dict(bad)
    np.testing.assert_array_equal(model.W_x, before)  # all or nothing
    model.load_state_dict({"W_x_l0": np.ones((G * 4, 3)), "unknown": 1}, strict=False)
    np.testing.assert_array_equal(model.W_x, np.ones((G * 4, 3)))


def test_pickle_and_deepcopy(rng):
    model = rx.RNN(3, 5, 2, activation="sigmoid", dtype="float64", seed=4)
    x = rng.standard_normal((2, 6, 3))
    expected = model(x)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.config == model.config
        got = clone(x)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        assert not np.shares_memory(clone.W_x, model.W_x)
        assert not clone.W_x.flags.writeable


def test_state_dict_pickle_and_deepcopy(rng, kind):
    model = make(kind, 3, 5, 2, num_layers=2, bidirectional=True, dtype="float64", seed=4)
    x = rng.standard_normal((2, 6, 3))
    expected = model(x, lengths=[6, 3])
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert type(clone) is type(model) and clone.config == model.config
        got = clone(x, lengths=[6, 3])
        np.testing.assert_array_equal(got[0], expected[0])
        for a, b in zip(states_of(got[1]), states_of(expected[1])):
            np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(clone.params["W_x_l1_reverse"], model.params["W_x_l1_reverse"])
    other = make(kind, 3, 5, 2, num_layers=2, bidirectional=True, dtype="float64", seed=5)
    state = model.state_dict()
    assert list(state) == list(model.params)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other(x)[0], model(x)[0])
    with pytest.raises(ValueError, match=r"missing keys \['b_h_l1_reverse'\]"):
        other.load_state_dict({k: v for k, v in state.items() if k != "b_h_l1_reverse"})
    with pytest.raises(ValueError, match=r"W_x_l1: expected shape \(\d+, 10\), got \(2, 2\)"):
        other.params["W_x_l1"] = np.zeros((2, 2))


def test_load_state_dict_accepts_0_3_names_on_one_layer_models(rng):
    model = rx.RNN(3, 4, 2, seed=0)
    old = {"W_x": np.ones((4, 3)), "W_h": np.eye(4), "b_x": np.zeros(4), "b_h": np.zeros(4),
           "W_o": np.ones((2, 4)), "b_o": np.zeros(2)}
    model.load_state_dict(old)
    np.testing.assert_array_equal(model.params["W_x_l0"], np.ones((4, 3)))
    np.testing.assert_array_equal(model.W_h, np.eye(4))
    deep = rx.RNN(3, 4, 2, num_layers=2)
    with pytest.raises(ValueError, match="unexpected keys"):
        deep.load_state_dict(old)
    # A pickle made by 0.3 holds that config and those names.
    unpickled = rx.RNN.__new__(rx.RNN)
    unpickled.__setstate__({"config": dict(input_size=3, hidden_size=4, output_size=2, activation="tanh",
                                           bias=True, batch_first=True, dtype="float32"), "params": old})
    assert unpickled.config == model.config
    x = rng.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(unpickled(x)[0], model(x)[0])


# ---------------------------------------------------------------- forward against the reference


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("output_size", [None, 3], ids=["no_head", "head"])
def test_forward_matches_reference(rng, cell, num_layers, bidirectional, dtype, batch_first, output_size):
    B, T, I, H = 4, 9, 5, 7
    D = 2 if bidirectional else 1
    lengths = np.array([9, 1, 4, 6])
    model = model_of(cell, I, H, output_size, num_layers=num_layers, bidirectional=bidirectional,
                     batch_first=batch_first, dtype=dtype, seed=1)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    for given in (True, False):
        h0 = model_state(rng, cell, num_layers * D, B, H) if given else None
        for ret in (True, False):
            what = f"{model!r} h0={given} return_sequences={ret}"
            out, state = model(x, h0, lengths=lengths, return_sequences=ret)
            ref_out, ref_h, ref_c = stacked_reference(model, x, h0, lengths, ret)
            assert_close(out, ref_out, dtype, f"out {what}")
            h_n, c_n = states_of(state)
            assert_close(h_n, ref_h, dtype, f"h_n {what}")
            assert h_n.shape == (num_layers * D, B, H)
            if is_lstm(cell):
                assert_close(c_n, ref_c, dtype, f"c_n {what}")
        out, _ = model(x, h0, lengths=lengths)
        seq = out if batch_first else out.transpose(1, 0, 2)
        for b in range(B):
            assert not seq[b, lengths[b]:].any(), what  # exactly zero past each length, head included


@pytest.mark.parametrize("output_size", [None, 3])
def test_many_to_one(rng, kind, output_size):
    model = make(kind, 4, 6, output_size, seed=2)
    x = rng.standard_normal((5, 9, 4))
    lengths = np.array([9, 1, 4, 7, 2])
    last, h_n = model(x, lengths=lengths, return_sequences=False)
    full, _ = model(x, lengths=lengths)
    expected = full[np.arange(5), lengths - 1]
    assert last.shape == (5, output_size or 6)
    np.testing.assert_allclose(last, expected, rtol=1e-6, atol=1e-7)
    for state in states_of(h_n):
        if state is not None:
            assert not np.shares_memory(last, state)


def test_many_to_one_reads_forward_last_and_backward_first(rng, kind):
    model = make(kind, 3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((3, 7, 3))
    lengths = np.array([7, 2, 5])
    seq, _ = model(x, lengths=lengths)
    last, state = model(x, lengths=lengths, return_sequences=False)
    np.testing.assert_array_equal(last[:, :4], seq[np.arange(3), lengths - 1, :4])
    np.testing.assert_array_equal(last[:, 4:], seq[:, 0, 4:])
    h_n, _ = states_of(state)
    np.testing.assert_array_equal(last, np.concatenate([h_n[2], h_n[3]], axis=-1))
    assert not np.shares_memory(last, h_n)


def test_unbatched_and_batch_of_one_agree(rng, kind):
    model = make(kind, 3, 4, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((6, 3))
    h0 = model_state(rng, kind, 4, 1, 4)
    h0_unbatched = tuple(s[:, 0] for s in h0) if kind == "LSTM" else h0[:, 0]
    out, state = model(x, h0_unbatched, lengths=4)
    batched_out, batched_state = model(x[None], h0, lengths=[4])
    np.testing.assert_array_equal(out, batched_out[0])
    for a, b in zip(states_of(state), states_of(batched_state)):
        if a is not None:
            assert a.shape == (4, 4)
            np.testing.assert_array_equal(a, b[:, 0])
    last, _ = model(x, return_sequences=False)
    assert last.shape == (2,)
    assert model.initial_state().__class__ is (tuple if kind == "LSTM" else np.ndarray)


def test_gru_without_linear_before_reset_matches_reference(rng):
    model = rx.GRU(4, 6, 2, num_layers=2, bidirectional=True, linear_before_reset=False, dtype="float64", seed=3)
    x = rng.standard_normal((3, 8, 4))
    lengths = np.array([8, 3, 5])
    out, h_n = model(x, lengths=lengths)
    ref_out, ref_h, _ = stacked_reference(model, x, None, lengths)
    assert_close(out, ref_out, np.float64)
    assert_close(h_n, ref_h, np.float64)
    torch_form = rx.GRU(4, 6, 2, num_layers=2, bidirectional=True, dtype="float64", seed=3)
    assert not np.allclose(out, torch_form(x, lengths=lengths)[0])


def test_unbatched(rng, kind):
    model = make(kind, 4, 6, 2, seed=2)
    x = rng.standard_normal((9, 4))
    zeros = np.zeros((1, 6))
    out, state = model(x, (zeros, zeros) if kind == "LSTM" else zeros)
    assert out.shape == (9, 2) and states_of(state)[0].shape == (1, 6)
    batched = model(x[None])
    np.testing.assert_array_equal(out, batched[0][0])
    last, _ = model(x, return_sequences=False)
    assert last.shape == (2,)


def test_input_cast_to_model_dtype(rng, kind):
    model = make(kind, 3, 4, seed=0, dtype="float64")
    ints = rng.integers(-3, 3, (2, 5, 3))
    out, state = model(ints.astype(np.int32))
    assert out.dtype == np.float64 and states_of(state)[0].dtype == np.float64
    np.testing.assert_array_equal(out, model(ints.astype(np.float64))[0])
    h0 = np.zeros((1, 2, 4), np.float32)
    assert model(ints.astype(np.float32), (h0, h0) if kind == "LSTM" else h0)[0].dtype == np.float64


def test_predict_in_batches(rng, kind):
    model = make(kind, 3, 5, 2, seed=0)
    x = rng.standard_normal((10, 4, 3))
    lengths = rng.integers(1, 5, 10)
    full = model.predict(x, lengths=lengths)
    np.testing.assert_array_equal(model.predict(x, lengths=lengths, batch_size=3), full)
    tm = type(model).from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    xt = x.transpose(1, 0, 2)
    np.testing.assert_array_equal(tm.predict(xt, lengths=lengths, batch_size=4), full.transpose(1, 0, 2))
