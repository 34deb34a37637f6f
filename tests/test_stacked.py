"""rnnext.RNN, LSTM and GRU with several layers, two directions and dropout:
against the NumPy reference and torch (outputs, states, every gradient),
torch and file round trips, streaming, training, errors."""

import copy
import io
import itertools
import pickle

import numpy as np
import pytest
from conftest import assert_close

import rnnext as rx
from rnnext import reference

KINDS = ["RNN", "LSTM", "GRU"]
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def make(kind, *args, **kwargs):
    return getattr(rx, kind)(*args, **kwargs)


def states_of(state):
    """(h, c) of a model state; c is None but for LSTM."""
    return tuple(state) if isinstance(state, tuple) else (state, None)


def random_state(rng, kind, rows, B, H):
    h = rng.standard_normal((rows, B, H)) * 0.5
    return (h, rng.standard_normal((rows, B, H)) * 0.5) if kind == "LSTM" else h


# ---------------------------------------------------------------- the reference


def stacked_reference(model, x, h0=None, lengths=None, return_sequences=True):
    """The model's forward composed from rnnext.reference's single layers, in
    float64: (out, h_n, c_n)."""
    kind = type(model).__name__
    p = {k: np.asarray(v, np.float64) for k, v in model.params.items()}
    L, D = model.num_layers, 2 if model.bidirectional else 1
    h0, c0 = states_of(h0) if h0 is not None else (None, None)
    inputs = np.asarray(x, np.float64)
    h_n, c_n = [], []
    for layer in range(L):
        outputs = []
        for d in range(D):
            k = layer * D + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            args = (inputs, p["W_x" + sfx], p["W_h" + sfx], p.get("b_x" + sfx), p.get("b_h" + sfx),
                    None if h0 is None else np.asarray(h0, np.float64)[k])
            options = dict(lengths=lengths, batch_first=model.batch_first, reverse=d == 1)
            if kind == "RNN":
                h_seq, h = reference.rnn(*args, activation=model.activation, **options)
                c = None
            elif kind == "LSTM":
                h_seq, (h, c) = reference.lstm(*args, None if c0 is None else np.asarray(c0, np.float64)[k],
                                               **options)
            else:
                h_seq, h = reference.gru(*args, linear_before_reset=model.linear_before_reset, **options)
                c = None
            outputs.append(h_seq)
            h_n.append(h)
            c_n.append(c)
        inputs = np.concatenate(outputs, axis=-1)
    if return_sequences:
        out = inputs
        if model.output_size is not None:
            out = reference.dense(inputs, p["W_o"], p["b_o"])
            if lengths is not None:
                seq = out if model.batch_first or out.ndim == 2 else out.transpose(1, 0, 2)
                for b, n in enumerate(np.reshape(lengths, -1)):
                    seq[b, n:] = 0
    else:
        out = np.concatenate(h_n[(L - 1) * D:], axis=-1)
        if model.output_size is not None:
            out = reference.dense(out, p["W_o"], p["b_o"])
    return out, np.stack(h_n), (np.stack(c_n) if kind == "LSTM" else None)


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("kind", KINDS)
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


@pytest.mark.parametrize("kind", KINDS)
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
    common = {"input_size", "hidden_size", "output_size", "num_layers", "bidirectional", "bias", "dropout",
              "batch_first", "dtype"}
    assert set(rx.RNN(2, 3).config) == common | {"activation"}
    assert set(rx.LSTM(2, 3).config) == common
    assert set(rx.GRU(2, 3).config) == common | {"linear_before_reset"}
    assert rx.LSTM(2, 3, dropout=1).config["dropout"] == 1.0
    with pytest.raises(ValueError, match=r"unknown keys \['activation'\] for LSTM"):
        rx.LSTM.from_config({**rx.LSTM(2, 3).config, "activation": "tanh"})
    with pytest.raises(ValueError, match=r"missing keys \['hidden_size'\]"):
        rx.GRU.from_config({"input_size": 2})
    with pytest.raises(TypeError, match="config"):
        rx.GRU.from_config([("input_size", 2)])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(num_layers=0), ValueError, "num_layers: expected an int >= 1, got 0"),
    (dict(num_layers=2.0), TypeError, "num_layers: expected an int"),
    (dict(bidirectional="yes"), TypeError, "bidirectional: expected a bool"),
    (dict(dropout=-0.1), ValueError, r"dropout: expected a probability in \[0, 1\], got -0.1"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(dropout="0.5"), TypeError, "dropout: expected a number"),
    (dict(dropout=True), TypeError, "dropout"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(dtype="int8"), ValueError, "dtype"),
])
def test_constructor_errors(kind, kwargs, error, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        make(kind, **args)


def test_cell_specific_options():
    with pytest.raises(TypeError, match="activation"):
        rx.LSTM(3, 4, activation="tanh")
    with pytest.raises(TypeError, match="linear_before_reset"):
        rx.RNN(3, 4, linear_before_reset=True)
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        rx.GRU(3, 4, linear_before_reset="no")
    assert rx.GRU(3, 4).linear_before_reset is True
    assert rx.RNN(3, 4, activation="relu").activation == "relu"
    assert not hasattr(rx.LSTM(3, 4), "activation")


@pytest.mark.parametrize("kind", KINDS)
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


def case_params():
    for kind in KINDS:
        for layers, bidirectional in itertools.product([1, 2], [False, True]):
            yield kind, layers, bidirectional


@pytest.mark.parametrize("kind,num_layers,bidirectional", list(case_params()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_forward_matches_reference(rng, kind, num_layers, bidirectional, dtype):
    B, T, I, H, O = 4, 9, 5, 7, 3
    D = 2 if bidirectional else 1
    lengths = np.array([9, 1, 4, 6])
    for batch_first, output_size in [(True, O), (False, None)]:
        model = make(kind, I, H, output_size, num_layers=num_layers, bidirectional=bidirectional,
                     batch_first=batch_first, dtype=dtype, seed=1)
        x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
        h0 = random_state(rng, kind, num_layers * D, B, H)
        for ret in (True, False):
            out, state = model(x, h0, lengths=lengths, return_sequences=ret)
            ref_out, ref_h, ref_c = stacked_reference(model, x, h0, lengths, ret)
            assert_close(out, ref_out, dtype, "out")
            h_n, c_n = states_of(state)
            assert_close(h_n, ref_h, dtype, "h_n")
            assert h_n.shape == (num_layers * D, B, H)
            if kind == "LSTM":
                assert_close(c_n, ref_c, dtype, "c_n")
        out, _ = model(x, h0, lengths=lengths)
        seq = out if batch_first else out.transpose(1, 0, 2)
        for b in range(B):
            assert not seq[b, lengths[b]:].any()  # exactly zero past each length, head included


@pytest.mark.parametrize("kind", KINDS)
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


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_and_batch_of_one_agree(rng, kind):
    model = make(kind, 3, 4, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((6, 3))
    h0 = random_state(rng, kind, 4, 1, 4)
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


# ---------------------------------------------------------------- states and errors


@pytest.mark.parametrize("kind", KINDS)
def test_state_errors(rng, kind):
    model = make(kind, 2, 6, num_layers=2, bidirectional=True)
    x = np.zeros((3, 4, 2))
    good = model.initial_state(3)
    if kind == "LSTM":
        with pytest.raises(TypeError, match=r"h0: expected an \(h, c\) pair for LSTM, got ndarray"):
            model(x, good[0])
        with pytest.raises(ValueError, match=r"h0\[1\]: expected shape \(num_layers\*2, B, H\) = \(4, 3, 6\), "
                                             r"got \(2, 3, 6\)"):
            model(x, (good[0], np.zeros((2, 3, 6))))
        out, _ = model(x, (good[0], None))  # a None half is zeros
        np.testing.assert_array_equal(out, model(x)[0])
    else:
        with pytest.raises(ValueError, match=r"h0: expected shape \(num_layers\*2, B, H\) = \(4, 3, 6\), "
                                             r"got \(2, 3, 6\)"):
            model(x, np.zeros((2, 3, 6)))
        with pytest.raises(TypeError, match="h0: expected an array of real numbers"):
            model(x, np.zeros((4, 3, 6), complex))
    with pytest.raises(ValueError, match=r"x: expected shape .* \(input_size 2\)"):
        model(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 9 is outside \[1, T\]"):
        model(x, lengths=[9, 1, 1])
    with pytest.raises(TypeError, match="return_sequences"):
        model(x, return_sequences=None)


# ---------------------------------------------------------------- streaming and generation


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_step_of_a_two_layer_model_equals_forward(rng, kind, output_size, dtype):
    model = make(kind, 3, 5, output_size, num_layers=2, dtype=dtype, seed=2)
    x = rng.standard_normal((2, 8, 3))
    out, final = model(x)
    state = None
    for t in range(8):
        y, state = model.step(x[:, t], state)
        assert y.dtype == dtype
        assert_close(y, out[:, t], dtype, f"step {t}")
    for got, expected in zip(states_of(state), states_of(final)):
        if expected is not None:
            assert got.shape == (2, 2, 5) and got.flags.writeable
            assert_close(got, expected, dtype, "state")
    # Continue a prompt from h_n; zeroing a row restarts that stream.
    _, state = model(x[:, :5])
    for t in range(5, 8):
        y, state = model.step(x[:, t], state)
        assert_close(y, out[:, t], dtype, f"continued {t}")
    for s in states_of(state):
        if s is not None:
            s[:, 1] = 0
    y, _ = model.step(x[:, 0], state)
    assert_close(y[1], out[1, 0], dtype, "reset")
    # Unbatched.
    y, state = model.step(x[0, 0], model.initial_state())
    assert_close(y, out[0, 0], dtype, "unbatched")
    assert states_of(state)[0].shape == (2, 5)


@pytest.mark.parametrize("kind", KINDS)
def test_step_errors(kind):
    model = make(kind, 3, 5, num_layers=2)
    with pytest.raises(ValueError, match=r"x_t: expected shape \(B, 3\) or \(3,\)"):
        model.step(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="x_t"):
        model.step(np.zeros(3, complex))
    bad = (np.zeros((1, 2, 5)), np.zeros((2, 2, 5))) if kind == "LSTM" else np.zeros((1, 2, 5))
    with pytest.raises(ValueError, match=r"state.*expected shape \(num_layers, B, H\) = \(2, 2, 5\)"):
        model.step(np.zeros((2, 3)), bad)
    bi = make(kind, 3, 5, 3, bidirectional=True)
    with pytest.raises(ValueError, match="step: .*bidirectional"):
        bi.step(np.zeros(3))
    with pytest.raises(ValueError, match="generate: .*bidirectional"):
        bi.generate(np.zeros((1, 2, 3)), 3)


@pytest.mark.parametrize("kind", KINDS)
def test_generate_with_a_stacked_model(rng, kind):
    model = make(kind, 4, 6, 4, num_layers=2, dtype="float64", seed=0)
    prompt = rng.standard_normal((2, 3, 4))
    got = model.generate(prompt, 5)
    out, state = model(prompt)
    y, expected = out[:, -1], []
    for _ in range(5):
        expected.append(y)
        y, state = model.step(y, state)
    np.testing.assert_array_equal(got, np.stack(expected, axis=1))
    ids = model.generate(np.array([[0, 1, 2]]), 4, mode="greedy", h0=model.initial_state(1))
    assert ids.shape == (1, 4) and ids.dtype == np.int64


# ---------------------------------------------------------------- gradients


def numeric_gradient(f, params, key, eps=1e-6):
    base = {k: np.array(v) for k, v in params.items()}
    grad = np.zeros_like(base[key])
    for i in np.ndindex(grad.shape):
        for sign in (1, -1):
            p = {k: v.copy() for k, v in base.items()}
            p[key][i] += sign * eps
            grad[i] += sign * f(p)
    return grad / (2 * eps)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(rng, kind):
    """Including the many-to-one path of a bidirectional stack and h0."""
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((3, 4, 2))
    lengths = np.array([4, 1, 3])
    y = rng.standard_normal((3, 2))
    h0 = random_state(rng, kind, 4, 3, 3)

    def loss_of(params):
        model.load_state_dict(params)
        return model.loss_and_grads(x, y, h0=h0, lengths=lengths)[0]

    params = model.state_dict()
    _, grads = model.loss_and_grads(x, y, h0=h0, lengths=lengths)
    for key in ("W_x_l0", "W_h_l0_reverse", "b_h_l1", "W_x_l1_reverse", "W_o", "b_o"):
        np.testing.assert_allclose(grads[key], numeric_gradient(loss_of, params, key), rtol=1e-6, atol=1e-9,
                                   err_msg=key)


# ---------------------------------------------------------------- the internal API for Seq2Seq


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_forward_cache_and_backward_give_state_and_input_gradients(rng, kind, return_sequences):
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    x = rng.standard_normal((2, 4, 2))
    lengths = np.array([3, 4])
    h0 = random_state(rng, kind, 4, 2, 3)
    out, state, cache = model._forward_cache(x, h0, lengths=lengths, return_sequences=return_sequences)
    expected_out, expected_state = model(x, h0, lengths=lengths, return_sequences=return_sequences)
    np.testing.assert_array_equal(out, expected_out)
    for a, b in zip(states_of(state), states_of(expected_state)):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    d_out = rng.standard_normal(out.shape)
    d_state = random_state(rng, kind, 4, 2, 3)
    grads = model._backward_cache(cache, d_out, d_state)
    assert list(grads.params) == list(model.params)

    def objective(x_, h0_):
        o, s = model(x_, h0_, lengths=lengths, return_sequences=return_sequences)
        if return_sequences:
            o = np.where((np.arange(4)[None] < lengths[:, None])[..., None], o, 0)
            mask = (np.arange(4)[None] < lengths[:, None])[..., None]
            total = np.sum(np.where(mask, d_out, 0) * o)
        else:
            total = np.sum(d_out * o)
        return total + sum(np.sum(a * b) for a, b in zip(states_of(s), states_of(d_state)) if a is not None)

    eps = 1e-6
    hs = states_of(h0)
    for part, (h, dh) in enumerate(zip(hs, states_of(grads.h0))):
        if h is None:
            assert dh is None
            continue
        numeric = np.zeros_like(h)
        for i in np.ndindex(h.shape):
            for sign in (1, -1):
                moved = [np.array(s) if s is not None else None for s in hs]
                moved[part][i] += sign * eps
                numeric[i] += sign * objective(x, tuple(moved) if kind == "LSTM" else moved[0])
        np.testing.assert_allclose(dh, numeric / (2 * eps), rtol=1e-6, atol=1e-9)
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        for sign in (1, -1):
            moved = x.copy()
            moved[i] += sign * eps
            numeric[i] += sign * objective(moved, h0)
    np.testing.assert_allclose(grads.x, numeric / (2 * eps), rtol=1e-6, atol=1e-9)
    # No gradient in: every gradient is zero, head included.
    zero = model._backward_cache(cache)
    assert all(not g.any() for g in zero.params.values())


def test_backward_uses_the_weights_of_its_forward(rng):
    model = rx.LSTM(2, 3, 2, num_layers=2, dtype="float64", seed=0)
    x = rng.standard_normal((2, 4, 2))
    _, _, cache = model._forward_cache(x)
    d_out = rng.standard_normal((2, 4, 2))
    before = model._backward_cache(cache, d_out).params
    model.params["W_o"] = np.zeros((2, 3))
    model.params["W_h_l1"] = np.zeros((12, 3))
    after = model._backward_cache(cache, d_out).params
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    with pytest.raises(ValueError, match=r"d_out: expected shape \(2, 4, 2\)"):
        model._backward_cache(cache, d_out[:, :3])


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_only_in_fit(rng, kind):
    x = rng.standard_normal((6, 5, 3))
    y = rng.standard_normal((6, 5, 2))
    model = make(kind, 3, 8, 2, num_layers=3, dropout=0.5, dtype="float64", seed=0)
    plain = make(kind, 3, 8, 2, num_layers=3, dtype="float64", seed=0)
    np.testing.assert_array_equal(model(x)[0], plain(x)[0])
    np.testing.assert_array_equal(model(x)[0], model(x)[0])
    np.testing.assert_array_equal(model.predict(x), plain.predict(x))
    loss, grads = model.loss_and_grads(x, y)
    loss_plain, grads_plain = plain.loss_and_grads(x, y)
    assert loss == loss_plain
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_plain[k])
    y_step, _ = model.step(x[:, 0])
    np.testing.assert_array_equal(y_step, plain.step(x[:, 0])[0])
    # In fit it drops: the same seeded fit differs from the model without dropout, and repeats exactly.
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ha = a.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    hb = b.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    hp = plain.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    assert ha == hb and ha != hp
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W_x_l1"], plain.params["W_x_l1"])
    # The first layer's input is never dropped: a one-layer model fits the same with any dropout.
    one, one_dropout = make(kind, 3, 8, 2, seed=0), make(kind, 3, 8, 2, dropout=0.5, seed=0)
    h1 = one.fit(x, y, loss="mse", epochs=1, batch_size=3, seed=1, progress=False)
    h2 = one_dropout.fit(x, y, loss="mse", epochs=1, batch_size=3, seed=1, progress=False)
    assert h1 == h2


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_masks_inputs_and_gradients_alike(rng, kind):
    """With fixed masks (a fixed generator), the training forward is a
    deterministic function of the parameters whose gradient is what
    _backward_cache returns: the masks scale the backward exactly as the forward."""
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dropout=0.4, dtype="float64", seed=0)
    x = rng.standard_normal((3, 4, 2))
    lengths = np.array([4, 2, 3])
    d_out = rng.standard_normal((3, 4, 2))

    def run(params):
        model.load_state_dict(params)
        return model._forward_cache(x, lengths=lengths, dropout_rng=np.random.default_rng(7))

    params = model.state_dict()
    out, _, cache = run(params)
    assert not np.allclose(out, model(x, lengths=lengths)[0])  # something was dropped
    grads = model._backward_cache(cache, d_out).params
    objective = lambda p: float(np.sum(run(p)[0] * d_out))  # noqa: E731
    for key in ("W_x_l1", "W_x_l1_reverse", "W_h_l0", "b_x_l0_reverse"):
        np.testing.assert_allclose(grads[key], numeric_gradient(objective, params, key), rtol=1e-6, atol=1e-9,
                                   err_msg=key)


def test_dropout_mask_is_inverted_dropout():
    from rnnext.layers import dropout_mask

    mask = dropout_mask((200, 50, 8), 0.3, np.dtype(np.float32), np.random.default_rng(0))
    kept = mask != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(mask[kept], 1 / 0.7, rtol=1e-6)
    assert not dropout_mask((3, 4), 1.0, np.dtype(np.float64), np.random.default_rng(0)).any()


# ---------------------------------------------------------------- training


def test_fit_learns_a_toy_task_with_an_lstm(rng):
    """Many-to-one: does the sequence hold more +1s than -1s? A stacked LSTM with dropout learns it."""
    x = rng.choice([-1.0, 1.0], size=(700, 9, 1))
    lengths = rng.integers(5, 10, 700) // 2 * 2 + 1  # odd lengths: no ties
    y = np.array([(x[b, :n, 0].sum() > 0) for b, n in enumerate(lengths)], np.int64)
    model = rx.LSTM(1, 12, 2, num_layers=2, dropout=0.1, seed=0)
    history = model.fit(x[:600], y[:600], loss="cross_entropy", lengths=lengths[:600], epochs=15, lr=0.02,
                        seed=0, progress=False, validation_data=(x[600:], y[600:], lengths[600:]))
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    logits, _ = model(x[600:], lengths=lengths[600:], return_sequences=False)
    assert np.mean(logits.argmax(-1) == y[600:]) > 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_tbptt_with_a_stacked_model_carries_the_state(rng, kind):
    x = rng.standard_normal((3, 8, 2))
    y = rng.standard_normal((3, 8, 2))
    lengths = np.array([8, 3, 6])
    model = make(kind, 2, 4, 2, num_layers=2, dtype="float64", seed=0)
    manual = copy.deepcopy(model)
    model.fit(x, y, loss="mse", epochs=1, batch_size=3, optimizer="sgd", lr=0.1, tbptt=4, lengths=lengths,
              shuffle=False, progress=False)
    state = manual.initial_state(3)
    velocity = None
    for start in (0, 4):
        chunk = np.clip(lengths - start, 0, 4)
        live = np.flatnonzero(chunk > 0)
        h0 = tuple(s[:, live] for s in state) if kind == "LSTM" else state[:, live]
        xs, ys = x[live, start:start + 4], y[live, start:start + 4]
        _, grads = manual.loss_and_grads(xs, ys, h0=h0, lengths=chunk[live])
        _, h_n = manual(xs, h0, lengths=chunk[live])
        for s, h in zip(states_of(state), states_of(h_n)):
            if s is not None:
                s[:, live] = h
        velocity = grads if velocity is None else {k: 0.9 * velocity[k] + grads[k] for k in grads}
        manual.load_state_dict({k: manual.params[k] - 0.1 * velocity[k] for k in grads})
    for k in model.params:
        np.testing.assert_allclose(model.params[k], manual.params[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_grads_layouts_and_unbatched_agree(rng, kind):
    model = make(kind, 3, 4, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((3, 5, 3))
    y = rng.integers(0, 2, (3, 5))
    lengths = [5, 2, 4]
    loss, grads = model.loss_and_grads(x, y, loss="cross_entropy", lengths=lengths)
    tm = type(model).from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    loss_t, grads_t = tm.loss_and_grads(x.transpose(1, 0, 2), y.T, loss="cross_entropy", lengths=lengths)
    assert loss_t == pytest.approx(loss, rel=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads_t[k], grads[k], rtol=1e-12, atol=1e-15, err_msg=k)
    h0 = random_state(rng, kind, 4, 1, 4)
    h0_unbatched = tuple(s[:, 0] for s in h0) if kind == "LSTM" else h0[:, 0]
    l1, g1 = model.loss_and_grads(x[0], y[0], loss="cross_entropy", h0=h0_unbatched)
    l2, g2 = model.loss_and_grads(x[:1], y[:1], loss="cross_entropy", h0=h0)
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    # Without a head, the targets have D*H features.
    plain = make(kind, 3, 4, bidirectional=True, dtype="float64")
    value, _ = plain.loss_and_grads(x, rng.standard_normal((3, 8)))
    assert np.isfinite(value)
    assert plain.evaluate(x, rng.integers(0, 8, (3, 5)), loss="cross_entropy") > 0


# ---------------------------------------------------------------- files


def file_models():
    return [
        rx.LSTM(3, 5, 2, num_layers=2, bidirectional=True, dropout=0.25, seed=0),
        rx.LSTM(3, 5, dtype="float64", batch_first=False, bias=False, seed=1),
        rx.GRU(3, 5, 3, num_layers=3, seed=2),
        rx.GRU(4, 2, linear_before_reset=False, bidirectional=True, dtype="float64", seed=3),
        rx.RNN(3, 5, 4, num_layers=2, bidirectional=True, activation="relu", seed=4),
    ]


@pytest.mark.parametrize("model", file_models(), ids=repr)
def test_files_round_trip_bit_exactly(tmp_path, model):
    path = tmp_path / "model.safetensors"
    model.save(path)
    for loaded in (rx.load(path), rx.load(io.BytesIO(path.read_bytes())), rx.from_bytes(model.to_bytes())):
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        assert list(loaded.params) == list(model.params)
        for k in model.params:
            assert loaded.params[k].dtype == model.params[k].dtype
            assert loaded.params[k].tobytes() == model.params[k].tobytes()


def test_files_refuse_a_class_that_does_not_match_the_tensors():
    import json
    import struct

    data = rx.LSTM(3, 5, 2, seed=0).to_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["class"] = "GRU"  # LSTM tensors are 4H tall, a GRU's 3H
    config = json.loads(header["__metadata__"]["config"])
    config["linear_before_reset"] = True
    header["__metadata__"]["config"] = json.dumps(config)
    raw = json.dumps(header).encode()
    with pytest.raises(ValueError, match="not a valid rnnext model file.*shape"):
        rx.from_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_version_1_files_still_load():
    """A file written by rnnext 0.3 (one-layer RNN, tensors W_x ... b_o)."""
    import json

    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {"W_x": rng.standard_normal((5, 3)).astype(np.float32),
               "W_h": rng.standard_normal((5, 5)).astype(np.float32),
               "b_x": rng.standard_normal(5).astype(np.float32), "b_h": rng.standard_normal(5).astype(np.float32),
               "W_o": rng.standard_normal((2, 5)).astype(np.float32), "b_o": rng.standard_normal(2).astype(np.float32)}
    config = dict(input_size=3, hidden_size=5, output_size=2, activation="tanh", bias=True, batch_first=True,
                  dtype="float32")
    data = save(tensors, metadata={"format": "rnnext", "format_version": "1", "class": "RNN",
                                   "config": json.dumps(config), "rnnext_version": "0.3.0"})
    model = rx.from_bytes(data)
    assert type(model) is rx.RNN and model.num_layers == 1 and not model.bidirectional
    for old, new in [("W_x", "W_x_l0"), ("W_h", "W_h_l0"), ("b_x", "b_x_l0"), ("b_h", "b_h_l0"),
                     ("W_o", "W_o"), ("b_o", "b_o")]:
        np.testing.assert_array_equal(model.params[new], tensors[old])
    with pytest.raises(ValueError, match="not a valid rnnext model file"):  # version 1 names only
        rx.from_bytes(save({"W_x_l0": tensors["W_x"]}, metadata={
            "format": "rnnext", "format_version": "1", "class": "RNN", "config": json.dumps(config)}))
