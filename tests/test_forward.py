"""The functional forwards (rnnext.functional.rnn, lstm, gru) of every cell
against rnnext.reference, and the properties API.md promises: layouts,
lengths, directions, unbatched input, conversions, fresh outputs, zero sizes,
threads. Torch agreement is in test_torch.py, gradients in test_gradients.py."""

import warnings

import numpy as np
import pytest
from helpers import (CELLS_ALL_ACTIVATIONS, DTYPES, assert_equal_results, check_forward, dtype_id, forward, gates,
                     is_lstm, reference_forward, shape_id, states_for, weights)

import rnnext as rx

# (B, T, I, H): ones, primes, sizes that are not multiples of 8/16 (the SIMD
# widths) or of the 32-float panel, H > 64, I != H, a few hundred, B > 64
# (chunked batches).
SHAPES = [
    (1, 1, 1, 1),
    (1, 100, 64, 64),
    (2, 3, 1, 17),
    (3, 13, 7, 31),
    (5, 17, 16, 33),
    (4, 29, 37, 127),
    (2, 11, 129, 257),
    (3, 4, 300, 301),
    (9, 7, 5, 3),
    (2, 7, 3, 5),
    (3, 13, 7, 17),
    (4, 11, 16, 33),
    (5, 9, 37, 70),
    (2, 6, 129, 130),
    (67, 5, 9, 11),
    (130, 4, 6, 33),
    (1, 20, 300, 96),
]


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_reference(rng, shape, cell, dtype):
    B, T, I, H = shape
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype)
    check_forward(cell, dtype, x, w, h0, c0, f"{shape} with states")
    check_forward(cell, dtype, x, w, what=f"{shape} zero states")


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_float32_after_100_steps(rng, cell, dtype):
    """The accuracy promise: float32 within rtol 1e-5, atol 1e-6 of the float64
    reference after 100 steps, with lengths and both directions."""
    B, T, I, H = 6, 100, 24, 70
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = np.array([100, 37, 1, 99, 64, 100])
    for reverse in (False, True):
        check_forward(cell, dtype, x, w, what=f"T=100 reverse={reverse}", lengths=lengths, reverse=reverse)


def test_long_sequence(rng, cell):
    w = weights(rng, cell, 8, 16, np.float32)
    x = rng.standard_normal((2, 1000, 8)).astype(np.float32)
    check_forward(cell, np.float32, x, w, what="T=1000")


@pytest.mark.parametrize("cell", CELLS_ALL_ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("given", [True, False], ids=["states", "no_states"])
def test_options(rng, cell, dtype, reverse, batch_first, given):
    B, T, I, H = 7, 19, 13, 41
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype, given)
    lengths = np.array([5, 19, 1, 12, 19, 2, 7])  # any order, 1 and T included
    what = f"reverse={reverse} batch_first={batch_first} states={given}"
    h_seq, states = check_forward(cell, dtype, x, w, h0, c0, what, lengths=lengths, reverse=reverse,
                                  batch_first=batch_first)
    seq = h_seq if batch_first else h_seq.transpose(1, 0, 2)
    for b in range(B):
        assert not seq[b, lengths[b]:].any(), f"{cell} {what}: outputs past lengths[{b}] are not zero"
        # h_n is the state after the last step read: lengths[b]-1 forwards, 0 in reverse.
        last = 0 if reverse else lengths[b] - 1
        np.testing.assert_array_equal(states[0][b], seq[b, last], err_msg=f"{cell} {what} h_n[{b}]")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_without_biases_and_states(rng, cell, dtype):
    B, T, I, H = 3, 6, 5, 9
    G = gates(cell)
    w = weights(rng, cell, I, H, dtype, bias=False)
    x = rng.standard_normal((B, T, I))
    check_forward(cell, dtype, x, w, what="no bias")
    zero_states = (np.zeros((B, H)), np.zeros((B, H)) if is_lstm(cell) else None)
    explicit = forward(cell, x, dict(w, b_x=np.zeros(G * H, dtype), b_h=np.zeros(G * H, dtype)), *zero_states)
    assert_equal_results(explicit, forward(cell, x, w), f"{cell}: explicit zeros vs None")
    mixed = forward(cell, x, dict(w, b_x=np.zeros(G * H, dtype)), *zero_states)  # one zero bias, one None
    assert_equal_results(mixed, forward(cell, x, w), f"{cell}: zero b_x, b_h None vs None")
    # Only one of the biases.
    full = weights(rng, cell, I, H, dtype)
    for keep in ("b_x", "b_h"):
        one = {"W_x": full["W_x"], "W_h": full["W_h"], keep: full[keep]}
        check_forward(cell, dtype, x, one, what=f"only {keep}")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unbatched(rng, cell, dtype, reverse):
    T, I, H = 8, 5, 11
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((T, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (H,), dtype)
    h_seq, states = check_forward(cell, dtype, x, w, h0, c0, "unbatched", reverse=reverse)
    assert h_seq.shape == (T, H)
    assert all(s.shape == (H,) for s in states)
    batched = forward(cell, x[None], w, h0[None], None if c0 is None else c0[None], reverse=reverse)
    np.testing.assert_array_equal(h_seq, batched[0][0])
    for s, sb in zip(states, batched[1]):
        np.testing.assert_array_equal(s, sb[0])
    # A scalar length for an unbatched sequence.
    h_seq, states = forward(cell, x, w, lengths=np.int64(3), reverse=reverse)
    assert not h_seq[3:].any()
    np.testing.assert_array_equal(states[0], h_seq[0 if reverse else 2])


def test_saturation_and_nan(rng, cell):
    """Huge pre-activations saturate the gates without overflow or warnings;
    NaN propagates to its own sequence only."""
    B, T, I, H = 3, 6, 4, 7
    w = weights(rng, cell, I, H, np.float32)
    x = (rng.standard_normal((B, T, I)) * 1e4).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h_seq, states = forward(cell, x, w)
        # float32 rounding of pre-activations in the thousands: loose agreement only.
        np.testing.assert_allclose(h_seq, reference_forward(cell, x, w)[0], rtol=0, atol=1e-2, err_msg=cell)
        assert np.isfinite(h_seq).all() and np.abs(h_seq).max() <= 1
        x[1, 2, 0] = np.nan
        h_seq, states = forward(cell, x, w)
    assert np.isnan(h_seq[1, 2:]).all() and not np.isnan(h_seq[1, :2]).any()
    assert not np.isnan(h_seq[[0, 2]]).any()


# ---------------------------------------------------------------- conversions and outputs


def test_non_contiguous_and_converted_inputs(rng, cell):
    H, I = 10, 6
    w = weights(rng, cell, I, H, np.float32)
    base = rng.standard_normal((8, 12, 12))
    x = base[::2, ::-1, ::2]  # strided, negative strides
    assert not x.flags.c_contiguous
    expected = forward(cell, np.ascontiguousarray(x), w)
    for layout, variant_x in (("strided", x), ("fortran", np.asfortranarray(x)), ("list", x.tolist())):
        assert_equal_results(forward(cell, variant_x, w), expected, f"{cell} {layout} x")
    for name, value in (("W_h", np.asfortranarray(w["W_h"])), ("W_x", np.asfortranarray(w["W_x"])),
                        ("b_x", np.repeat(w["b_x"], 2)[::2])):
        assert_equal_results(forward(cell, np.ascontiguousarray(x), dict(w, **{name: value})), expected,
                             f"{cell} non-contiguous {name}")
    wt = dict(w, W_h=np.asfortranarray(w["W_h"]), W_x=np.asfortranarray(w["W_x"]), b_x=np.repeat(w["b_x"], 2)[::2])
    assert not wt["b_x"].flags.c_contiguous
    assert_equal_results(forward(cell, np.ascontiguousarray(x), wt), expected, f"{cell} all non-contiguous")
    # Integer and bool data are converted.
    ints = rng.integers(-2, 3, (2, 4, I))
    got = forward(cell, ints, w)
    assert got[0].dtype == np.float32
    assert_equal_results(got, forward(cell, ints.astype(np.float32), w), f"{cell} int x")
    forward(cell, ints.astype(bool), w)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("data_dtype", DTYPES, ids=lambda d: "data_" + dtype_id(d))
def test_inputs_untouched_outputs_fresh_dtype_follows_weights(rng, cell, dtype, data_dtype):
    """The weights' dtype decides; x and the states, in any float dtype, are
    cast to it; no input is modified, no output aliases one."""
    B, T, I, H = 2, 3, 4, 5
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(data_dtype)
    h0, c0 = states_for(rng, cell, (B, H), data_dtype)
    inputs = [a for a in (x, h0, c0, *w.values()) if a is not None]
    copies = [a.copy() for a in inputs]
    h_seq, states = forward(cell, x, w, h0, c0)
    for before, after in zip(copies, inputs):
        np.testing.assert_array_equal(before, after)
    for out in (h_seq, *states):
        assert out.dtype == dtype
        assert out.flags.writeable and out.flags.owndata
        for a in inputs:
            assert not np.shares_memory(out, a)


def test_zero_sizes(rng, cell):
    w = weights(rng, cell, 3, 4)
    h_seq, states = forward(cell, np.zeros((0, 5, 3)), w)
    assert h_seq.shape == (0, 5, 4) and all(s.shape == (0, 4) for s in states)
    h0, c0 = states_for(rng, cell, (2, 4), np.float64)
    h_seq, states = forward(cell, np.zeros((2, 0, 3)), w, h0, c0)
    assert h_seq.shape == (2, 0, 4)
    np.testing.assert_array_equal(states[0], h0)
    if is_lstm(cell):
        np.testing.assert_array_equal(states[1], c0)
    # No inputs (I = 0): the biases alone drive the state.
    check_forward(cell, np.float64, np.zeros((2, 3, 0)), weights(rng, cell, 0, 4), what="I=0")


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(13, 30, 48, 72), (2, 25, 20, 300), (70, 6, 9, 40)],
                         ids=["batch_parallel", "hidden_sliced", "chunked"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_thread_count_does_not_change_results(rng, threads, cell, dtype, shape, reverse, batch_first):
    """Bitwise the same results on 1, 2 and 3 threads, whether the threads split
    the batch or (few sequences, many hidden units) the hidden units, meeting
    after every step."""
    B, T, I, H = shape
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    options = dict(lengths=lengths, reverse=reverse, batch_first=batch_first)
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        results.append(forward(cell, x, w, h0, c0, **options))
    for n, other in zip((2, 3), results[1:]):
        assert_equal_results(results[0], other, f"{cell}: 1 vs {n} threads")
    rx.set_num_threads(2)
    check_forward(cell, dtype, x, w, h0, c0, f"{shape} on 2 threads", **options)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("H", [5, 33, 70])
def test_rows_independent_of_batch(rng, threads, cell, dtype, H):
    """Row b of a batch is bitwise what that sequence gives alone (and in a
    batch of another size), whatever the threads' split of the batch."""
    B, T, I = 75, 9, 12
    w = weights(rng, cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype)
    lengths = rng.integers(1, T + 1, B)
    for n in (1, 2):
        rx.set_num_threads(n)
        full = forward(cell, x, w, h0, c0, lengths=lengths)
        for b in (0, 1, 37, 64, 74):
            one = forward(cell, x[b:b + 1], w, h0[b:b + 1], None if c0 is None else c0[b:b + 1],
                          lengths=lengths[b:b + 1])
            np.testing.assert_array_equal(one[0][0], full[0][b], err_msg=f"{cell} h_seq row {b}, {n} threads")
            for i, (s1, sf) in enumerate(zip(one[1], full[1])):
                np.testing.assert_array_equal(s1[0], sf[b], err_msg=f"{cell} state {i} row {b}, {n} threads")
        part = forward(cell, x[3:11], w, h0[3:11], None if c0 is None else c0[3:11], lengths=lengths[3:11])
        np.testing.assert_array_equal(part[0], full[0][3:11], err_msg=f"{cell} rows 3:11, {n} threads")
