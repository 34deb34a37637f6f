"""Streaming (model.step, initial_state) and model.generate (one-to-many,
built on step()), for one and several layers of every model class."""

import numpy as np
import pytest
from helpers import DTYPES, assert_close, dtype_id, make, states_of

import rnnext as rx
from rnnext.generate import one_hot


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_step_equals_forward(rng, kind, output_size, dtype):
    model = make(kind, 4, 9, output_size, dtype=dtype, seed=5)
    x = rng.standard_normal((3, 15, 4))
    out, h_n = model(x)
    state = None
    for t in range(15):
        y, state = model.step(x[:, t], state)
        assert y.dtype == dtype and states_of(state)[0].shape == (1, 3, 9)
        assert_close(y, out[:, t], dtype, f"{kind} step {t}")
    for got, expected in zip(states_of(state), states_of(h_n)):
        if expected is not None:
            assert_close(got, expected, dtype, f"{kind} state")


def test_streaming_continues_a_prompt(rng, kind):
    model = make(kind, 4, 9, 2, seed=5)
    x = rng.standard_normal((3, 10, 4))
    out, _ = model(x)
    _, state = model(x[:, :6])
    for t in range(6, 10):
        y, state = model.step(x[:, t], state)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-6, atol=1e-7)
    # Zeroing row b of the state restarts stream b.
    state = tuple(np.array(s) for s in state) if kind == "LSTM" else np.array(state)
    for s in states_of(state):
        if s is not None:
            s[:, 1] = 0
    y, _ = model.step(x[:, 0], state)
    np.testing.assert_allclose(y[1], out[1, 0], rtol=1e-6, atol=1e-7)


def test_step_unbatched_and_initial_state(rng, kind):
    model = make(kind, 4, 9, seed=5)
    assert states_of(model.initial_state())[0].shape == (1, 9)
    assert states_of(model.initial_state(3))[0].shape == (1, 3, 9)
    x = rng.standard_normal((7, 4))
    out, _ = model(x)
    state = model.initial_state()
    for t in range(7):
        y, state = model.step(x[t], state)
        assert y.shape == (9,) and all(s.shape == (1, 9) for s in states_of(state) if s is not None)
        np.testing.assert_allclose(y, out[t], rtol=1e-6, atol=1e-7)
    assert all(s.flags.writeable for s in states_of(state) if s is not None)
    wrong = np.zeros((1, 3, 9))
    with pytest.raises(ValueError, match="state"):
        model.step(x[0], (wrong, wrong) if kind == "LSTM" else wrong)
    with pytest.raises(ValueError, match="x_t"):
        model.step(np.zeros(5))


@pytest.mark.parametrize("output_size", [None, 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
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


# ---------------------------------------------------------------- generation


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


def test_continuous_equals_manual_step_loop(rng):
    model = rx.RNN(3, 10, 3, seed=0, dtype="float64")
    prompt = rng.standard_normal((2, 4, 3))
    got = model.generate(prompt, 6)
    out, state = model(prompt)
    y = out[:, -1]
    expected = []
    for _ in range(6):
        expected.append(y)
        y, state = model.step(y, state)
    np.testing.assert_array_equal(got, np.stack(expected, axis=1))
    assert got.shape == (2, 6, 3) and got.dtype == np.float64


def test_greedy_equals_manual_loop_and_accepts_ids(rng):
    model = rx.RNN(5, 12, 5, seed=1)
    ids = rng.integers(0, 5, (3, 4))
    got = model.generate(ids, 7, mode="greedy")
    assert got.dtype == np.int64 and got.shape == (3, 7)
    np.testing.assert_array_equal(got, model.generate(one_hot(ids, 5, np.float32), 7, mode="greedy"))
    out, state = model(one_hot(ids, 5, np.float32))
    y = out[:, -1]
    expected = []
    for _ in range(7):
        c = y.argmax(-1)
        expected.append(c)
        y, state = model.step(one_hot(c, 5, np.float32), state)
    np.testing.assert_array_equal(got, np.stack(expected, axis=1))


def test_sample_is_seeded_and_follows_temperature(rng):
    model = rx.RNN(4, 8, 4, seed=2)
    ids = rng.integers(0, 4, (64, 3))
    a = model.generate(ids, 20, mode="sample", seed=5)
    b = model.generate(ids, 20, mode="sample", seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() < 4
    # A tiny temperature samples the argmax.
    np.testing.assert_array_equal(model.generate(ids, 5, mode="sample", temperature=1e-6, seed=0),
                                  model.generate(ids, 5, mode="greedy"))
    # A huge one samples nearly uniformly: every class shows up.
    wide = model.generate(ids, 20, mode="sample", temperature=1e6, seed=1)
    assert set(np.unique(wide)) == {0, 1, 2, 3}


def test_layouts_and_unbatched(rng):
    model = rx.RNN(3, 6, 3, seed=0)
    prompt = rng.standard_normal((2, 4, 3))
    batched = model.generate(prompt, 5)
    single = model.generate(prompt[1], 5)
    assert single.shape == (5, 3)
    np.testing.assert_allclose(single, batched[1], rtol=1e-6, atol=1e-7)
    tm = rx.RNN.from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    np.testing.assert_allclose(tm.generate(prompt.transpose(1, 0, 2), 5), batched.transpose(1, 0, 2),
                               rtol=1e-6, atol=1e-7)
    assert model.generate(prompt, 0).shape == (2, 0, 3)
    assert model.generate(np.array([0, 1]), 3, mode="greedy").shape == (3,)


def test_h0_is_used(rng):
    model = rx.RNN(3, 6, 3, seed=0)
    prompt = rng.standard_normal((2, 4, 3))
    h0 = rng.standard_normal((1, 2, 6))
    assert not np.allclose(model.generate(prompt, 3, h0=h0), model.generate(prompt, 3))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(mode="beam"), ValueError, "mode"),
    (dict(temperature=0), ValueError, "temperature"),
    (dict(steps=-1), ValueError, "steps"),
    (dict(steps=2.0), TypeError, "steps"),
])
def test_errors(rng, kwargs, error, match):
    model = rx.RNN(3, 6, 3)
    args = {"steps": 3, **kwargs}
    steps = args.pop("steps")
    with pytest.raises(error, match=match):
        model.generate(rng.standard_normal((2, 4, 3)), steps, **args)


def test_needs_outputs_that_fit_the_inputs(rng):
    with pytest.raises(ValueError, match="output size 2 == input_size 3"):
        rx.RNN(3, 6, 2).generate(rng.standard_normal((1, 2, 3)), 2)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 3\)"):
        rx.RNN(3, 6, 3).generate(np.array([[0, 3]]), 2, mode="greedy")
    with pytest.raises(ValueError, match="at least one step"):
        rx.RNN(3, 6, 3).generate(np.zeros((1, 0, 3)), 2)


# ---------------------------------------------------------------- top_k, top_p, eos

LOGITS = np.log(np.array([0.05, 0.4, 0.1, 0.3, 0.15]))  # probabilities in the order 1, 3, 4, 2, 0


def constant_model(logits=LOGITS, vocab=False):
    """A model whose every output is ``logits`` (W_o = 0): generate then draws
    each item independently from softmax(logits / temperature)."""
    O = len(logits)
    model = rx.RNN(O, 3, O, vocab_size=O if vocab else None, dtype="float64", seed=0)
    model.params["W_o"] = np.zeros((O, 3))
    model.params["b_o"] = logits
    return model


def frequencies(items, O=5):
    return np.bincount(items.reshape(-1), minlength=O) / items.size


@pytest.mark.parametrize("vocab", [False, True])
def test_top_k_and_top_p_restrict_the_draws(vocab):
    model = constant_model(vocab=vocab)
    prompt = np.zeros((4000, 1), np.int64)
    # top_k = 2 keeps classes 1 and 3, renormalised: 0.4 / 0.7 and 0.3 / 0.7.
    f = frequencies(model.generate(prompt, 5, mode="sample", top_k=2, seed=0))
    assert f[[0, 2, 4]].sum() == 0
    np.testing.assert_allclose(f[[1, 3]], [4 / 7, 3 / 7], atol=0.01)
    # top_p = 0.75: 0.4 + 0.3 < 0.75, so 4 (0.15) joins; 0.85 covers it.
    f = frequencies(model.generate(prompt, 5, mode="sample", top_p=0.75, seed=1))
    assert f[[0, 2]].sum() == 0
    np.testing.assert_allclose(f[[1, 3, 4]], np.array([0.4, 0.3, 0.15]) / 0.85, atol=0.01)
    # top_p = 0.7 exactly covered by the two most likely (Hugging Face's rule: the smallest set >= p).
    assert set(np.unique(model.generate(prompt, 2, mode="sample", top_p=0.7 - 1e-12, seed=2))) == {1, 3}
    # Without restrictions every class appears at its probability.
    np.testing.assert_allclose(frequencies(model.generate(prompt, 5, mode="sample", seed=3)),
                               np.exp(LOGITS), atol=0.01)
    # Combined with temperature: T = 2 flattens, top_k = 3 then keeps 1, 3, 4.
    f = frequencies(model.generate(prompt, 5, mode="sample", temperature=2.0, top_k=3, seed=4))
    p = np.exp(LOGITS / 2)[[1, 3, 4]]
    np.testing.assert_allclose(f[[1, 3, 4]], p / p.sum(), atol=0.01)
    assert f[[0, 2]].sum() == 0


def test_top_k_one_and_tiny_top_p_are_greedy(rng):
    model = rx.GRU(6, 10, 6, vocab_size=6, seed=4)
    prompt = rng.integers(0, 6, (16, 3))
    greedy = model.generate(prompt, 12, mode="greedy")
    np.testing.assert_array_equal(model.generate(prompt, 12, mode="sample", top_k=1, seed=0), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 12, mode="sample", top_p=1e-9, seed=0), greedy)
    np.testing.assert_array_equal(model.generate(prompt, 12, mode="sample", top_k=100, seed=7),
                                  model.generate(prompt, 12, mode="sample", seed=7))  # top_k >= O: no restriction
    np.testing.assert_array_equal(model.generate(prompt, 12, mode="sample", top_p=1.0, seed=7),
                                  model.generate(prompt, 12, mode="sample", seed=7))
    onehot = rx.GRU(6, 10, 6, seed=4)  # the one-hot path takes them too
    np.testing.assert_array_equal(onehot.generate(prompt, 5, mode="sample", top_k=1, seed=0),
                                  onehot.generate(prompt, 5, mode="greedy"))


@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_eos_stops_each_sequence_and_pads(rng, mode):
    model = rx.LSTM(5, 8, 5, vocab_size=5, seed=0)
    prompt = rng.integers(0, 5, (32, 2))
    free = model.generate(prompt, 15, mode=mode, seed=3)
    eos = int(np.bincount(free.reshape(-1)).argmax())
    got = model.generate(prompt, 15, mode=mode, seed=3, eos=eos)
    assert got.shape == free.shape
    for row, ref in zip(got, free):
        hits = np.flatnonzero(ref == eos)
        stop = hits[0] if hits.size else len(ref)
        np.testing.assert_array_equal(row[:stop + 1] if hits.size else row, ref[:stop + 1] if hits.size else ref)
        assert np.all(row[stop:] == eos)
    # Once every sequence has stopped, nothing more is computed.
    calls = []
    step = model.step
    model.step = lambda *a: calls.append(1) or step(*a)
    first = int(model.generate(prompt[:1], 1, mode="greedy")[0, 0])
    out = model.generate(prompt[:1], 50, mode="greedy", eos=first)
    assert out.tolist() == [[first] * 50] and len(calls) == 0
    unbatched = model.generate(prompt[0], 50, mode="greedy", eos=first)
    assert unbatched.shape == (50,) and np.all(unbatched == first)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(mode="sample", top_k=0), ValueError, r"top_k: expected an int >= 1"),
    (dict(mode="sample", top_k=2.0), TypeError, r"top_k: expected an int or None, got float"),
    (dict(mode="sample", top_k=True), TypeError, r"top_k: expected an int or None, got bool"),
    (dict(mode="sample", top_p=0), ValueError, r"top_p: expected a probability in \(0, 1\], got 0"),
    (dict(mode="sample", top_p=1.5), ValueError, r"top_p: expected a probability in \(0, 1\]"),
    (dict(mode="sample", top_p=float("nan")), ValueError, r"top_p: expected a probability"),
    (dict(mode="sample", top_p="0.9"), TypeError, r"top_p: expected a number, got str"),
    (dict(mode="greedy", top_k=3), ValueError, r"top_k: restricts what mode='sample' draws from; mode='greedy'"),
    (dict(mode="greedy", top_p=0.5), ValueError, r"top_p: restricts what mode='sample'"),
    (dict(top_k=3), ValueError, r"top_k: restricts .* mode='continuous' feeds outputs back"),
    (dict(eos=1), ValueError, r"eos: a stop class exists in the token modes"),
    (dict(mode="greedy", eos=3), ValueError, r"eos: expected a class id in \[0, 3\), got 3"),
    (dict(mode="greedy", eos=-1), ValueError, r"eos: expected a class id in \[0, 3\), got -1"),
    (dict(mode="greedy", eos=1.0), TypeError, r"eos: expected a class id \(int\) or None, got float"),
])
def test_sampling_control_errors(rng, kwargs, error, match):
    model = rx.RNN(3, 6, 3)
    with pytest.raises(error, match=match):
        model.generate(rng.standard_normal((2, 4, 3)), 3, **kwargs)
