"""rnnext.RNN: parameters, forward, streaming, persistence."""

import copy
import pickle

import numpy as np
import pytest
from conftest import ACTIVATIONS, DTYPES, assert_close

import rnnext as rx
from rnnext import reference


def model_reference(model, x, h0=None, lengths=None):
    """The model's forward from the reference equations, in float64."""
    p = {k: np.asarray(v, np.float64) for k, v in model.params.items()}
    h_seq, h_n = reference.rnn(
        np.asarray(x, np.float64), p["W_x_l0"], p["W_h_l0"], p.get("b_x_l0"), p.get("b_h_l0"),
        None if h0 is None else np.asarray(h0, np.float64)[0], activation=model.activation,
        lengths=lengths, batch_first=model.batch_first,
    )
    out = h_seq
    if model.output_size is not None:
        out = reference.dense(h_seq, p["W_o"], p["b_o"])
        if lengths is not None:
            seq = out if model.batch_first or out.ndim == 2 else out.transpose(1, 0, 2)
            for b, n in enumerate(lengths):
                seq[b, n:] = 0
    return out, h_n[None]


# ---------------------------------------------------------------- construction

def test_parameters_and_initialisation():
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


def test_no_bias_no_head():
    model = rx.RNN(3, 4, bias=False)
    assert set(model.params) == {"W_x_l0", "W_h_l0"}
    assert model.b_x is None and model.W_o is None
    with pytest.raises(AttributeError, match="b_x"):
        model.b_x = np.zeros(4)
    with pytest.raises(KeyError, match="b_h_l0"):
        model.params["b_h_l0"] = np.zeros(4)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=0, hidden_size=3), ValueError, "input_size"),
    (dict(input_size=2.5, hidden_size=3), TypeError, "input_size"),
    (dict(input_size=True, hidden_size=3), TypeError, "input_size"),
    (dict(input_size=2, hidden_size=-1), ValueError, "hidden_size"),
    (dict(input_size=2, hidden_size=3, output_size=0), ValueError, "output_size"),
    (dict(input_size=2, hidden_size=3, activation="gelu"), ValueError, "activation"),
    (dict(input_size=2, hidden_size=3, activation=None), TypeError, "activation"),
    (dict(input_size=2, hidden_size=3, dtype="float16"), ValueError, "dtype"),
    (dict(input_size=2, hidden_size=3, dtype="nonsense"), ValueError, "dtype"),
    (dict(input_size=2, hidden_size=3, bias="yes"), TypeError, "bias"),
    (dict(input_size=2, hidden_size=3, batch_first=1), TypeError, "batch_first"),
    (dict(input_size=2, hidden_size=3, seed=-1), ValueError, "seed"),
])
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        rx.RNN(**kwargs)


def test_config_repr():
    model = rx.RNN(3, 4, 2, activation="relu", bias=False, batch_first=False, dtype=np.float64, seed=3)
    assert model.config == dict(input_size=3, hidden_size=4, output_size=2, num_layers=1, bidirectional=False,
                                activation="relu", bias=False, dropout=0.0, batch_first=False, dtype="float64")
    clone = rx.RNN.from_config(model.config)
    assert clone.config == model.config
    assert repr(model) == "RNN(3, 4, output_size=2, activation='relu', bias=False, batch_first=False, dtype=float64)"
    assert repr(rx.RNN(3, 4)) == "RNN(3, 4)"
    with pytest.raises(ValueError, match="unknown keys.*'layers'"):
        rx.RNN.from_config({**model.config, "layers": 2})


# ---------------------------------------------------------------- parameters

def test_parameters_are_read_only_and_assignable(rng):
    model = rx.RNN(3, 4, 2, seed=0)
    with pytest.raises(ValueError):
        model.W_h[0, 0] = 1.0
    x = rng.standard_normal((2, 5, 3))
    before = model(x)[0]
    new = rng.standard_normal((4, 4))
    model.W_h = new  # float64 in, cast to the model's float32
    assert model.W_h.dtype == np.float32 and not model.W_h.flags.writeable
    new[:] = 0  # the model keeps its own copy
    assert model.W_h.any()
    after = model(x)[0]
    assert not np.allclose(before, after)  # packed weights were refreshed
    assert_close(after, model_reference(model, x)[0], np.float32)
    model.params["b_o"] = [1.0, 2.0]
    assert_close(model(x)[0], model_reference(model, x)[0], np.float32)
    with pytest.raises(ValueError, match="W_h_l0: expected shape \\(4, 4\\), got \\(4, 3\\)"):
        model.W_h = np.zeros((4, 3))
    with pytest.raises(TypeError, match="W_x"):
        model.W_x = np.zeros((4, 3), complex)
    with pytest.raises(KeyError, match="W_q"):
        model.params["W_q"] = np.zeros(3)


def test_state_dict_round_trip(rng):
    a, b = rx.RNN(3, 4, 2, seed=0), rx.RNN(3, 4, 2, seed=1)
    state = a.state_dict()
    assert state.keys() == a.params.keys()
    state["W_x_l0"][0, 0] = 100.0  # copies: the model is unchanged
    assert a.W_x[0, 0] != 100.0
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_load_state_dict_errors():
    model = rx.RNN(3, 4, seed=0)
    state = model.state_dict()
    with pytest.raises(ValueError, match="missing keys \\['b_h_l0'\\]"):
        model.load_state_dict({k: v for k, v in state.items() if k != "b_h_l0"})
    with pytest.raises(ValueError, match="unexpected keys \\['extra'\\]"):
        model.load_state_dict({**state, "extra": np.zeros(1)})
    before = model.W_x.copy()
    bad = {**state, "W_x_l0": np.ones((4, 3)), "W_h_l0": np.zeros((5, 5))}
    with pytest.raises(ValueError, match="W_h_l0"):
        model.load_state_dict(bad)
    np.testing.assert_array_equal(model.W_x, before)  # all or nothing
    model.load_state_dict({"W_x_l0": np.ones((4, 3)), "unknown": 1}, strict=False)
    np.testing.assert_array_equal(model.W_x, np.ones((4, 3)))


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


# ---------------------------------------------------------------- forward

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("batch_first", [True, False])
def test_forward_matches_reference(rng, activation, dtype, output_size, batch_first):
    model = rx.RNN(7, 20, output_size, activation=activation, dtype=dtype, batch_first=batch_first, seed=1)
    B, T = 5, 12
    x = rng.standard_normal((B, T, 7) if batch_first else (T, B, 7))
    h0 = rng.standard_normal((1, B, 20))
    lengths = rng.integers(1, T + 1, B)
    out, h_n = model(x, h0, lengths=lengths)
    ref_out, ref_n = model_reference(model, x, h0, lengths)
    assert_close(out, ref_out, dtype, "out")
    assert_close(h_n, ref_n, dtype, "h_n")
    assert h_n.shape == (1, B, 20)
    seq = out if batch_first else out.transpose(1, 0, 2)
    for b in range(B):
        assert not seq[b, lengths[b]:].any()  # exactly zero past each length, head included


@pytest.mark.parametrize("output_size", [None, 3])
def test_many_to_one(rng, output_size):
    model = rx.RNN(4, 6, output_size, seed=2)
    x = rng.standard_normal((5, 9, 4))
    lengths = np.array([9, 1, 4, 7, 2])
    last, h_n = model(x, lengths=lengths, return_sequences=False)
    full, _ = model(x, lengths=lengths)
    expected = full[np.arange(5), lengths - 1]
    assert last.shape == (5, output_size or 6)
    np.testing.assert_allclose(last, expected, rtol=1e-6, atol=1e-7)
    assert not np.shares_memory(last, h_n)


def test_unbatched(rng):
    model = rx.RNN(4, 6, 2, seed=2)
    x = rng.standard_normal((9, 4))
    out, h_n = model(x, np.zeros((1, 6)))
    assert out.shape == (9, 2) and h_n.shape == (1, 6)
    batched = model(x[None])
    np.testing.assert_array_equal(out, batched[0][0])
    last, _ = model(x, return_sequences=False)
    assert last.shape == (2,)


def test_input_cast_to_model_dtype(rng):
    model = rx.RNN(3, 4, seed=0, dtype="float64")
    ints = rng.integers(-3, 3, (2, 5, 3))
    out, h_n = model(ints.astype(np.int32))
    assert out.dtype == np.float64 and h_n.dtype == np.float64
    np.testing.assert_array_equal(out, model(ints.astype(np.float64))[0])
    assert model(ints.astype(np.float32), np.zeros((1, 2, 4), np.float32))[0].dtype == np.float64


def test_predict_in_batches(rng):
    model = rx.RNN(3, 5, 2, seed=0)
    x = rng.standard_normal((10, 4, 3))
    lengths = rng.integers(1, 5, 10)
    full = model.predict(x, lengths=lengths)
    np.testing.assert_array_equal(model.predict(x, lengths=lengths, batch_size=3), full)
    tm = rx.RNN.from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    xt = x.transpose(1, 0, 2)
    np.testing.assert_array_equal(tm.predict(xt, lengths=lengths, batch_size=4), full.transpose(1, 0, 2))


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 6)), r"h0: expected shape \(num_layers, B, H\) = \(1, 3, 6\), got \(2, 3, 6\)"),
    (np.zeros((3, 6)), r"h0: expected shape"),
])
def test_state_shape_errors(bad, match):
    model = rx.RNN(2, 6)
    with pytest.raises(ValueError, match=match):
        model(np.zeros((3, 4, 2)), bad)


# ---------------------------------------------------------------- streaming

@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_step_equals_forward(rng, output_size, dtype):
    model = rx.RNN(4, 9, output_size, dtype=dtype, seed=5)
    x = rng.standard_normal((3, 15, 4))
    out, h_n = model(x)
    state = None
    for t in range(15):
        y, state = model.step(x[:, t], state)
        assert y.dtype == dtype and state.shape == (1, 3, 9)
        assert_close(y, out[:, t], dtype, f"step {t}")
    assert_close(state, h_n, dtype, "state")


def test_streaming_continues_a_prompt(rng):
    model = rx.RNN(4, 9, 2, seed=5)
    x = rng.standard_normal((3, 10, 4))
    out, _ = model(x)
    _, state = model(x[:, :6])
    for t in range(6, 10):
        y, state = model.step(x[:, t], state)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-6, atol=1e-7)
    # Zeroing row b of the state restarts stream b.
    state = np.array(state)
    state[:, 1] = 0
    y, _ = model.step(x[:, 0], state)
    np.testing.assert_allclose(y[1], out[1, 0], rtol=1e-6, atol=1e-7)


def test_step_unbatched_and_initial_state(rng):
    model = rx.RNN(4, 9, seed=5)
    assert model.initial_state().shape == (1, 9)
    assert model.initial_state(3).shape == (1, 3, 9)
    x = rng.standard_normal((7, 4))
    out, _ = model(x)
    state = model.initial_state()
    for t in range(7):
        y, state = model.step(x[t], state)
        assert y.shape == (9,) and state.shape == (1, 9)
        np.testing.assert_allclose(y, out[t], rtol=1e-6, atol=1e-7)
    assert state.flags.writeable
    with pytest.raises(ValueError, match="state"):
        model.step(x[0], np.zeros((1, 3, 9)))
    with pytest.raises(ValueError, match="x_t"):
        model.step(np.zeros(5))
