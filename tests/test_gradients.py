"""Gradients: the functional backwards (rnn_backward, lstm_backward,
gru_backward) of every cell and the models' loss_and_grads against central
finite differences in float64, and the properties the API promises (the
gradient dict, unbatched input, padding, the cache, threads, float32).
Torch autograd is in test_torch.py, the errors in test_errors.py."""

import numpy as np
import pytest
from helpers import (CELLS_ALL_ACTIVATIONS, DTYPES, assert_child_ok, assert_gradient_matches, backward,
                     base, dtype_id, forward, gates, grad_names, is_lstm, make, model_numeric_gradient, model_state,
                     n_states, numeric_gradient, states_of, weights)

import rnnext as rx


def summed_biases(cell, H):
    """The entries where b_x and b_h add (so have equal gradients): every gate
    but GRU's n gate."""
    return slice(0, 2 * H) if base(cell) == "gru" else slice(0, gates(cell) * H)


# ---------------------------------------------------------------- finite differences


def finite_difference_check(rng, cell, B, T, I, H, reverse, batch_first, lengths, bias=True, eps=1e-6, names=None):
    """Every gradient of sum(h_seq d_seq) + sum(h_n d_n) (+ sum(c_n dc_n))
    against central differences in float64; returns the gradients."""
    w = weights(rng, cell, I, H, np.float64, bias=bias)
    args = {"x": rng.standard_normal((B, T, I) if batch_first else (T, B, I)), **w,
            "h0": rng.standard_normal((B, H))}
    if is_lstm(cell):
        args["c0"] = rng.standard_normal((B, H))
    d_seq = rng.standard_normal((B, T, H) if batch_first else (T, B, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(n_states(cell))]
    options = dict(reverse=reverse, batch_first=batch_first, lengths=lengths)

    def run(**extra):
        return forward(cell, args["x"], args, args["h0"], args.get("c0"), **options, **extra)

    def loss():
        h_seq, states = run()
        return np.sum(h_seq * d_seq) + sum(np.sum(s * d) for s, d in zip(states, d_n))

    cache = run(return_cache=True)[2]
    grads = backward(cell, cache, d_seq, *d_n)
    assert set(grads) == set(grad_names(cell))
    for name in names or grad_names(cell):
        if name not in args:  # a bias left out: its gradient is still there
            assert grads[name].shape == (gates(cell) * H,)
            continue
        numeric = numeric_gradient(loss, args[name], eps)
        assert grads[name].shape == args[name].shape and grads[name].dtype == np.float64
        assert_gradient_matches(grads[name], numeric, f"d{name} {cell} reverse={reverse} batch_first={batch_first}")
    return grads


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_finite_differences(rng, cell, reverse, batch_first):
    finite_difference_check(rng, cell, 3, 6, 4, 5, reverse, batch_first, np.array([6, 2, 1]))


def test_finite_differences_without_bias(rng, cell):
    grads = finite_difference_check(rng, cell, 2, 4, 3, 4, False, True, None, bias=False)
    # The biases' gradients exist although the forward had none; b_x's equals
    # b_h's for every gate whose two biases add (all but GRU's n gate).
    same = summed_biases(cell, 4)
    np.testing.assert_allclose(grads["b_x"][same], grads["b_h"][same], rtol=1e-12, atol=1e-14, err_msg=cell)


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_finite_differences_larger_hidden(rng, cell, with_lengths):
    # Past one SIMD panel (H > 32 floats / 16 doubles), odd input size. The
    # gated cells' input weights only with the other gradients (they are
    # covered above); the Elman cell's every gradient.
    names = None if base(cell) == "rnn" else [n for n in grad_names(cell) if n not in ("W_x", "b_x")]
    finite_difference_check(rng, cell, 2, 3, 3, 37, False, True, np.array([3, 2]) if with_lengths else None,
                            names=names)


# ---------------------------------------------------------------- the gradient dict


def test_gradient_dict_shapes_and_defaults(rng, cell):
    B, T, I, H = 2, 5, 3, 4
    w = weights(rng, cell, I, H, np.float32, bias=False)
    x = rng.standard_normal((B, T, I))
    cache = forward(cell, x, w, return_cache=True)[2]
    grads = backward(cell, cache)  # no gradients: all zero
    G = gates(cell)
    shapes = {"x": (B, T, I), "W_x": (G * H, I), "W_h": (G * H, H), "b_x": (G * H,), "b_h": (G * H,),
              "h0": (B, H), "c0": (B, H)}
    assert set(grads) == set(grad_names(cell))
    for name, g in grads.items():
        assert g.shape == shapes[name] and g.dtype == np.float32, name
        assert not g.any(), name
    grads = backward(cell, cache, None, np.ones((B, H)))
    same = summed_biases(cell, H)
    np.testing.assert_array_equal(grads["b_x"][same], grads["b_h"][same], err_msg=cell)
    for a in grads.values():
        for b in grads.values():
            assert a is b or not np.shares_memory(a, b)
    if is_lstm(cell):
        # Only dc_n given: flows back through c alone.
        grads = backward(cell, cache, dc_n=np.ones((B, H)))
        assert grads["c0"].any() and grads["W_h"].any()


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unbatched(rng, cell, reverse):
    T, I, H = 5, 3, 4
    w = weights(rng, cell, I, H)
    x = rng.standard_normal((T, I))
    d_seq = rng.standard_normal((T, H))
    d_n = [np.ones(H)] * n_states(cell)
    cache = forward(cell, x, w, reverse=reverse, return_cache=True)[2]
    grads = backward(cell, cache, d_seq, *d_n)
    cache_b = forward(cell, x[None], w, reverse=reverse, return_cache=True)[2]
    batched = backward(cell, cache_b, d_seq[None], *[d[None] for d in d_n])
    assert grads["x"].shape == (T, I) and grads["h0"].shape == (H,)
    for name in grad_names(cell):
        expected = batched[name][0] if name in ("x", "h0", "c0") else batched[name]
        np.testing.assert_array_equal(grads[name], expected, err_msg=f"{cell} {name}")


def test_zero_sizes(rng, cell):
    """No sequences, or no steps: the state's gradients pass straight through."""
    H = 4
    w = weights(rng, cell, 3, H)
    for B, T in ((0, 5), (2, 0), (0, 0)):
        h0 = rng.standard_normal((B, H))
        c0 = rng.standard_normal((B, H)) if is_lstm(cell) else None
        cache = forward(cell, np.zeros((B, T, 3)), w, h0, c0, return_cache=True)[2]
        d_n = [rng.standard_normal((B, H)) for _ in range(n_states(cell))]
        grads = backward(cell, cache, np.zeros((B, T, H)), *d_n)
        assert grads["x"].shape == (B, T, 3)
        np.testing.assert_array_equal(grads["h0"], d_n[0])
        if is_lstm(cell):
            np.testing.assert_array_equal(grads["c0"], d_n[1])
        for name in ("W_x", "W_h", "b_x", "b_h"):
            assert grads[name].shape == w[name].shape and not grads[name].any(), f"{cell} B={B} T={T} {name}"


ZERO_INPUT_BACKWARD = """
import numpy as np
from rnnext import functional as F
rng = np.random.default_rng(0)
for cell, G in (("rnn", 1), ("lstm", 4), ("gru", 3)):
    for B, H in ((1, 4), (3, 33)):
        W_h = rng.uniform(-0.3, 0.3, (G * H, H))
        b = rng.uniform(-0.3, 0.3, G * H)
        h0 = rng.standard_normal((B, H))
        d_seq = rng.standard_normal((B, 5, H))
        grads = []
        # I = 0 against I = 1 with a zero input: the same gradients but x's and W_x's.
        for I in (0, 1):
            out = getattr(F, cell)(np.zeros((B, 5, I)), np.full((G * H, I), 0.5), W_h, b, b, h0,
                                   return_cache=True)
            grads.append(getattr(F, cell + "_backward")(out[-1], d_seq))
        assert grads[0]["x"].shape == (B, 5, 0) and grads[0]["W_x"].shape == (G * H, 0)
        for name in ("W_h", "b_x", "b_h", "h0") + (("c0",) if cell == "lstm" else ()):
            np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-12, atol=1e-14,
                                       err_msg=f"{cell} {name}")
print("ok")
"""


def test_zero_input_size_backward():
    """I = 0 (the biases alone drive the state) through the backward; in a
    subprocess, since a crash there must fail this test, not the run."""
    assert_child_ok(ZERO_INPUT_BACKWARD, timeout=300)


# ---------------------------------------------------------------- lengths and the cache


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padding_never_matters(rng, cell, reverse):
    """Gradients past a length are ignored, inputs there never read, dx is zero there."""
    B, T, I, H = 3, 6, 3, 7
    w = weights(rng, cell, I, H)
    lengths = np.array([4, 6, 2])
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(n_states(cell))]
    cache = forward(cell, x, w, lengths=lengths, reverse=reverse, return_cache=True)[2]
    clean = backward(cell, cache, d_seq, *d_n)
    x_bad, d_bad = x.copy(), d_seq.copy()
    for b, n in enumerate(lengths):
        x_bad[b, n:] = np.nan
        d_bad[b, n:] = np.inf
    h_seq, _, cache = forward(cell, x_bad, w, lengths=lengths, reverse=reverse, return_cache=True)
    assert np.isfinite(h_seq).all()
    dirty = backward(cell, cache, d_bad, *d_n)
    for name in grad_names(cell):
        np.testing.assert_array_equal(clean[name], dirty[name], err_msg=f"{cell} {name}")
    for b, n in enumerate(lengths):
        assert not dirty["x"][b, n:].any()
        assert dirty["x"][b, :n].any()


def test_lengths_equal_truncated_sequences(rng, cell):
    """A sequence of length n in a padded batch has the gradients of that
    sequence cut to n steps."""
    B, T, I, H = 3, 7, 4, 6
    w = weights(rng, cell, I, H)
    lengths = np.array([7, 3, 5])
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    d_seq = rng.standard_normal((B, T, H))
    cache = forward(cell, x, w, h0, lengths=lengths, reverse=True, return_cache=True)[2]
    grads = backward(cell, cache, d_seq, np.ones((B, H)))
    for b, n in enumerate(lengths):
        one = forward(cell, x[b:b + 1, :n], w, h0[b:b + 1], reverse=True, return_cache=True)[2]
        g1 = backward(cell, one, d_seq[b:b + 1, :n], np.ones((1, H)))
        np.testing.assert_allclose(grads["x"][b, :n], g1["x"][0], rtol=1e-12, atol=1e-14, err_msg=f"{cell} dx {b}")
        np.testing.assert_allclose(grads["h0"][b], g1["h0"][0], rtol=1e-12, atol=1e-14, err_msg=f"{cell} dh0 {b}")


def test_cache_is_a_snapshot(rng, cell):
    w = weights(rng, cell, 3, 4)
    x = rng.standard_normal((2, 5, 3))
    cache = forward(cell, x, w, return_cache=True)[2]
    first = backward(cell, cache, None, np.ones((2, 4)))
    x[:] = 0  # changing the inputs after the forward changes nothing
    w["W_h"][:] = 0
    w["b_h"][:] = 0
    again = backward(cell, cache, None, np.ones((2, 4)))
    for name in grad_names(cell):
        np.testing.assert_array_equal(first[name], again[name], err_msg=f"{cell} {name}")
    # A cache can be used more than once with other gradients.
    backward(cell, cache, np.ones((2, 5, 4)))


# ---------------------------------------------------------------- threads and float32


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(12, 30, 40, 70), (2, 12, 5, 300)], ids=["batch_parallel", "hidden_sliced"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gradients_deterministic(rng, threads, cell, dtype, shape, reverse):
    """Bitwise identical gradients for a fixed thread count, whether the
    threads split the batch or (few sequences, many hidden units) the hidden
    units; across thread counts bitwise identical for the Elman cell and close
    (float64: 1e-12) for the gated ones."""
    B, T, I, H = shape
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    d_seq = rng.standard_normal((B, T, H)).astype(dtype)
    d_n = rng.standard_normal((B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    results = {}
    for n in (1, 2, 2, 3):
        rx.set_num_threads(n)
        cache = forward(cell, x, w, lengths=lengths, reverse=reverse, return_cache=True)[2]
        g = backward(cell, cache, d_seq, d_n)
        if n in results:
            for name in grad_names(cell):
                np.testing.assert_array_equal(results[n][name], g[name], err_msg=f"{cell} {name}, {n} threads twice")
        results[n] = g
    for n in (2, 3):
        for name in grad_names(cell):
            what = f"{cell} {name}, 1 vs {n} threads"
            if base(cell) == "rnn":
                np.testing.assert_array_equal(results[n][name], results[1][name], err_msg=what)
            else:
                scale = np.abs(results[1][name]).max()
                np.testing.assert_allclose(results[n][name], results[1][name], rtol=0,
                                           atol=(1e-5 if dtype == np.float32 else 1e-12) * scale, err_msg=what)


@pytest.mark.parametrize("H", [32, 40])
def test_float32_gradients_close_to_float64(rng, cell, H):
    B, T, I = 4, 100, 16
    w = weights(rng, cell, I, H)
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    grads = {}
    for dtype in (np.float32, np.float64):
        cache = forward(cell, x, {k: v.astype(dtype) for k, v in w.items()}, return_cache=True)[2]
        grads[dtype] = backward(cell, cache, d_seq)
    for name in grad_names(cell):
        # Gradients sum B*T terms: relative 1e-5 of their scale.
        scale = np.abs(grads[np.float64][name]).max()
        assert grads[np.float32][name].dtype == np.float32
        np.testing.assert_allclose(grads[np.float32][name], grads[np.float64][name], rtol=0,
                                   atol=1e-5 * scale, err_msg=f"{cell} {name}")


# ---------------------------------------------------------------- models


def test_model_gradients_match_finite_differences(rng, kind):
    """Including the many-to-one path of a bidirectional stack and h0."""
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((3, 4, 2))
    lengths = np.array([4, 1, 3])
    y = rng.standard_normal((3, 2))
    h0 = model_state(rng, kind, 4, 3, 3)

    def loss_of(params):
        model.load_state_dict(params)
        return model.loss_and_grads(x, y, h0=h0, lengths=lengths)[0]

    params = model.state_dict()
    _, grads = model.loss_and_grads(x, y, h0=h0, lengths=lengths)
    for key in ("W_x_l0", "W_h_l0_reverse", "b_h_l1", "W_x_l1_reverse", "W_o", "b_o"):
        np.testing.assert_allclose(grads[key], model_numeric_gradient(loss_of, params, key), rtol=1e-6, atol=1e-9,
                                   err_msg=f"{kind} {key}")


# The internal API Seq2Seq uses (model._forward_cache, model._backward_cache).


@pytest.mark.parametrize("return_sequences", [True, False])
def test_forward_cache_and_backward_give_state_and_input_gradients(rng, kind, return_sequences):
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dtype="float64", seed=1)
    x = rng.standard_normal((2, 4, 2))
    lengths = np.array([3, 4])
    h0 = model_state(rng, kind, 4, 2, 3)
    out, state, cache = model._forward_cache(x, h0, lengths=lengths, return_sequences=return_sequences)
    expected_out, expected_state = model(x, h0, lengths=lengths, return_sequences=return_sequences)
    np.testing.assert_array_equal(out, expected_out)
    for a, b in zip(states_of(state), states_of(expected_state)):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    d_out = rng.standard_normal(out.shape)
    d_state = model_state(rng, kind, 4, 2, 3)
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

    moved = [None if s is None else np.array(s) for s in states_of(h0)]
    state_of_moved = lambda: tuple(moved) if is_lstm(kind) else moved[0]  # noqa: E731
    for part, dh in enumerate(states_of(grads.h0)):
        if moved[part] is None:
            assert dh is None
            continue
        numeric = numeric_gradient(lambda: objective(x, state_of_moved()), moved[part])
        np.testing.assert_allclose(dh, numeric, rtol=1e-6, atol=1e-9, err_msg=f"{kind} dh0[{part}]")
    x_moved = x.copy()
    numeric = numeric_gradient(lambda: objective(x_moved, h0), x_moved)
    np.testing.assert_allclose(grads.x, numeric, rtol=1e-6, atol=1e-9, err_msg=f"{kind} dx")
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
