"""model.generate: one-to-many, built on step()."""

import numpy as np
import pytest

import rnnext as rx
from rnnext.generate import one_hot


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
