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
