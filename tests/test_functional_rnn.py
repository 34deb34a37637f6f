"""rnnext.functional.rnn against rnnext.reference.rnn (and torch in test_torch.py)."""

import numpy as np
import pytest
from conftest import ACTIVATIONS, DTYPES, as64, assert_close, rnn_weights

import rnnext as rx
from rnnext import functional as F
from rnnext import reference

# (B, T, I, H): ones, primes, sizes that are not multiples of 8/16 (the SIMD
# widths) or of the 32-float panel, and a few hundred.
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
]


def check(dtype, x, w, what, **kwargs):
    """Runs functional and reference rnn on the same arguments and compares."""
    h0 = kwargs.pop("h0", None)
    h_seq, h_n = F.rnn(x, w["W_x"], w["W_h"], w.get("b_x"), w.get("b_h"), h0, **kwargs)
    w64 = as64(w)
    ref_seq, ref_n = reference.rnn(
        np.asarray(x, np.float64), w64["W_x"], w64["W_h"], w64.get("b_x"), w64.get("b_h"),
        None if h0 is None else np.asarray(h0, np.float64), **kwargs,
    )
    assert_close(h_seq, ref_seq, dtype, f"h_seq {what}")
    assert_close(h_n, ref_n, dtype, f"h_n {what}")
    return h_seq, h_n


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dT%dI%dH%d" % s)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_matches_reference(rng, shape, activation, dtype):
    B, T, I, H = shape
    w = rnn_weights(rng, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    check(dtype, x, w, f"{shape} {activation}", activation=activation)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_options(rng, activation, dtype, reverse, batch_first):
    B, T, I, H = 6, 23, 19, 45
    w = rnn_weights(rng, I, H, dtype)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    lengths[1] = 1
    what = f"{activation} reverse={reverse} batch_first={batch_first}"
    h_seq, _ = check(dtype, x, w, what, h0=h0, lengths=lengths, reverse=reverse,
                     batch_first=batch_first, activation=activation)
    # Steps past a length are exactly zero.
    seq = h_seq if batch_first else h_seq.transpose(1, 0, 2)
    for b in range(B):
        assert not seq[b, lengths[b]:].any()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_without_bias_and_h0(rng, dtype):
    w = rnn_weights(rng, 7, 9, dtype, bias=False)
    x = rng.standard_normal((3, 5, 7))
    check(dtype, x, w, "no bias")
    h_seq, h_n = F.rnn(x, w["W_x"], w["W_h"], np.zeros(9, dtype), None, np.zeros((3, 9)))
    np.testing.assert_array_equal(h_seq, F.rnn(x, w["W_x"], w["W_h"])[0])


def test_only_one_bias(rng):
    w = rnn_weights(rng, 4, 6)
    x = rng.standard_normal((2, 3, 4))
    a = F.rnn(x, w["W_x"], w["W_h"], None, w["b_h"])
    b = reference.rnn(x, w["W_x"], w["W_h"], None, w["b_h"])
    assert_close(a[0], b[0], np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unbatched(rng, dtype, reverse):
    w = rnn_weights(rng, 5, 11, dtype)
    x = rng.standard_normal((8, 5))
    h0 = rng.standard_normal(11)
    h_seq, h_n = check(dtype, x, w, "unbatched", h0=h0, reverse=reverse)
    assert h_seq.shape == (8, 11) and h_n.shape == (11,)
    batched = F.rnn(x[None], w["W_x"], w["W_h"], w["b_x"], w["b_h"], h0[None], reverse=reverse)
    np.testing.assert_array_equal(h_seq, batched[0][0])
    np.testing.assert_array_equal(h_n, batched[1][0])
    h_seq, h_n = F.rnn(x, w["W_x"], w["W_h"], lengths=np.int64(3))
    assert not h_seq[3:].any()
    np.testing.assert_array_equal(h_n, h_seq[2])


def test_non_contiguous_and_converted_inputs(rng):
    w = rnn_weights(rng, 6, 10, np.float32)
    base = rng.standard_normal((8, 12, 12))
    x = base[::2, ::-1, ::2]  # strided, negative strides
    assert not x.flags.c_contiguous
    expected = F.rnn(np.ascontiguousarray(x), **w)
    for variant in (x, np.asfortranarray(x), x.tolist()):
        got = F.rnn(variant, **w)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # Integer and bool data are converted; W_x transposed view is accepted.
    ints = rng.integers(-2, 3, (2, 4, 6))
    assert_close(F.rnn(ints, **w)[0], F.rnn(ints.astype(np.float32), **w)[0], np.float32)
    F.rnn(ints.astype(bool), **w)
    wt = np.asfortranarray(w["W_h"])
    np.testing.assert_array_equal(F.rnn(ints, w["W_x"], wt)[0], F.rnn(ints, w["W_x"], w["W_h"])[0])


def test_inputs_untouched_and_outputs_fresh(rng):
    w = rnn_weights(rng, 4, 5)
    x = rng.standard_normal((2, 3, 4))
    h0 = rng.standard_normal((2, 5))
    copies = [a.copy() for a in (x, h0, *w.values())]
    h_seq, h_n = F.rnn(x, h0=h0, **w)
    for before, after in zip(copies, (x, h0, *w.values())):
        np.testing.assert_array_equal(before, after)
    for out in (h_seq, h_n):
        assert out.flags.writeable and out.flags.owndata
        for a in (x, h0, *w.values()):
            assert not np.shares_memory(out, a)


def test_dtype_follows_weights(rng):
    w = rnn_weights(rng, 3, 4, np.float32)
    x64 = rng.standard_normal((2, 5, 3))
    h_seq, h_n = F.rnn(x64, h0=np.zeros((2, 4)), **w)
    assert h_seq.dtype == np.float32 and h_n.dtype == np.float32
    w64 = as64(w)
    assert F.rnn(x64.astype(np.float32), **w64)[0].dtype == np.float64


def test_zero_sizes(rng):
    w = rnn_weights(rng, 3, 4)
    h_seq, h_n = F.rnn(np.zeros((0, 5, 3)), **w)
    assert h_seq.shape == (0, 5, 4) and h_n.shape == (0, 4)
    h0 = rng.standard_normal((2, 4))
    h_seq, h_n = F.rnn(np.zeros((2, 0, 3)), h0=h0, **w)
    assert h_seq.shape == (2, 0, 4)
    np.testing.assert_array_equal(h_n, h0)
    # No inputs (I = 0): the state is driven by the biases alone.
    w0 = rnn_weights(rng, 0, 4)
    check(np.float64, np.zeros((2, 3, 0)), w0, "I=0")


def test_long_sequence(rng):
    w = rnn_weights(rng, 8, 16, np.float32)
    x = rng.standard_normal((2, 1000, 8)).astype(np.float32)
    check(np.float32, x, w, "T=1000")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("batch_first", [True, False])
def test_thread_count_does_not_change_results(rng, dtype, threads, batch_first):
    B, T, I, H = 13, 40, 48, 72  # large enough to run on several threads
    w = rnn_weights(rng, I, H, dtype)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        results.append(F.rnn(x, lengths=lengths, batch_first=batch_first, activation="tanh", **w))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0][0], other[0])
        np.testing.assert_array_equal(results[0][1], other[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_hidden_sliced_threads_match_reference_and_one_thread(rng, dtype, threads, reverse):
    """Few sequences and many hidden units: threads split the hidden units and
    meet after every step. Same results, bitwise, as one thread."""
    B, T, I, H = 2, 30, 20, 300
    w = rnn_weights(rng, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = np.array([30, 11])
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        results.append(F.rnn(x, lengths=lengths, reverse=reverse, **w))
    for other in results[1:]:
        np.testing.assert_array_equal(results[0][0], other[0])
        np.testing.assert_array_equal(results[0][1], other[1])
    rx.set_num_threads(2)
    check(dtype, x, w, "hidden-sliced", lengths=lengths, reverse=reverse)
