"""rnnext.functional.lstm / gru and their backward passes: against the NumPy
reference, torch, central finite differences, and the properties API.md
promises (layouts, lengths, threads, errors)."""

import warnings

import numpy as np
import pytest
from conftest import DTYPES, assert_close

import rnnext as rx
from rnnext import functional as F
from rnnext import reference

# A cell variant: its functional forward, reference, gate count and options.
# "gru_onnx" is the GRU with linear_before_reset=False (ONNX's default form).
VARIANTS = ["lstm", "gru", "gru_onnx"]
GATES = {"lstm": 4, "gru": 3, "gru_onnx": 3}
OPTIONS = {"lstm": {}, "gru": {"linear_before_reset": True}, "gru_onnx": {"linear_before_reset": False}}
LSTM_NAMES = ["x", "W_x", "W_h", "b_x", "b_h", "h0", "c0"]
GRU_NAMES = ["x", "W_x", "W_h", "b_x", "b_h", "h0"]


def names_of(variant):
    return LSTM_NAMES if variant == "lstm" else GRU_NAMES


def weights(rng, variant, I, H, dtype=np.float64, bias=True):
    """PyTorch-scaled random weights U(-1/sqrt(H), 1/sqrt(H)) with G gate blocks."""
    G = GATES[variant]
    k = 1.0 / np.sqrt(H)
    w = {"W_x": rng.uniform(-k, k, (G * H, I)).astype(dtype), "W_h": rng.uniform(-k, k, (G * H, H)).astype(dtype)}
    if bias:
        w["b_x"] = rng.uniform(-k, k, G * H).astype(dtype)
        w["b_h"] = rng.uniform(-k, k, G * H).astype(dtype)
    return w


def forward(variant, x, w, h0=None, c0=None, **kwargs):
    """The functional forward; returns (h_seq, states) with states a tuple
    (h_n, c_n) for LSTM, (h_n,) for GRU, plus the cache when asked."""
    args = (x, w["W_x"], w["W_h"], w.get("b_x"), w.get("b_h"), h0)
    if variant == "lstm":
        out = F.lstm(*args, c0, **kwargs)
        h_seq, (h_n, c_n) = out[:2]
        return (h_seq, (h_n, c_n)) + tuple(out[2:])
    out = F.gru(*args, **OPTIONS[variant], **kwargs)
    return (out[0], (out[1],)) + tuple(out[2:])


def ref(variant, x, w, h0=None, c0=None, **kwargs):
    """The float64 reference on the same arguments, in forward()'s structure."""
    f64 = lambda a: None if a is None else np.asarray(a, np.float64)  # noqa: E731
    args = (f64(x), f64(w["W_x"]), f64(w["W_h"]), f64(w.get("b_x")), f64(w.get("b_h")), f64(h0))
    if variant == "lstm":
        h_seq, (h_n, c_n) = reference.lstm(*args, f64(c0), **kwargs)
        return h_seq, (h_n, c_n)
    h_seq, h_n = reference.gru(*args, **OPTIONS[variant], **kwargs)
    return h_seq, (h_n,)


def check(variant, dtype, x, w, h0=None, c0=None, what="", **kwargs):
    """Functional against reference; returns the functional's results."""
    h_seq, states = forward(variant, x, w, h0, c0, **kwargs)
    r_seq, r_states = ref(variant, x, w, h0, c0, **kwargs)
    assert_close(h_seq, r_seq, dtype, f"{variant} h_seq {what}")
    for name, got, expected in zip(("h_n", "c_n"), states, r_states):
        assert_close(got, expected, dtype, f"{variant} {name} {what}")
    return h_seq, states


def states_for(rng, variant, shape, dtype, given=True):
    if not given:
        return None, None
    h0 = rng.standard_normal(shape).astype(dtype)
    c0 = rng.standard_normal(shape).astype(dtype) if variant == "lstm" else None
    return h0, c0


def assert_equal_results(a, b, what=""):
    np.testing.assert_array_equal(a[0], b[0], err_msg=f"h_seq {what}")
    for i, (sa, sb) in enumerate(zip(a[1], b[1])):
        np.testing.assert_array_equal(sa, sb, err_msg=f"state {i} {what}")


# ---------------------------------------------------------------- forward vs reference

# (B, T, I, H): H not a multiple of the SIMD widths or the 32-float panel
# (1, 5, 33, 70), H > 64, I != H, B = 1, B > 64 (chunked batches).
SHAPES = [
    (1, 1, 1, 1),
    (1, 100, 64, 64),
    (2, 7, 3, 5),
    (3, 13, 7, 17),
    (4, 11, 16, 33),
    (5, 9, 37, 70),
    (2, 6, 129, 130),
    (67, 5, 9, 11),
    (130, 4, 6, 33),
    (1, 20, 300, 96),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B%dT%dI%dH%d" % s)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_matches_reference(rng, shape, variant, dtype):
    B, T, I, H = shape
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype)
    check(variant, dtype, x, w, h0, c0, str(shape))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_float32_after_100_steps(rng, variant, dtype):
    """The accuracy promise: float32 within rtol 1e-5, atol 1e-6 of the float64
    reference after 100 steps, with lengths and both directions."""
    B, T, I, H = 6, 100, 24, 70
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = np.array([100, 37, 1, 99, 64, 100])
    for reverse in (False, True):
        check(variant, dtype, x, w, what=f"T=100 reverse={reverse}", lengths=lengths, reverse=reverse)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
@pytest.mark.parametrize("given", [True, False], ids=["states", "no_states"])
def test_options(rng, variant, dtype, reverse, batch_first, given):
    B, T, I, H = 7, 19, 13, 41
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype, given)
    lengths = np.array([5, 19, 1, 12, 19, 2, 7])  # any order
    what = f"reverse={reverse} batch_first={batch_first}"
    h_seq, states = check(variant, dtype, x, w, h0, c0, what, lengths=lengths, reverse=reverse,
                          batch_first=batch_first)
    seq = h_seq if batch_first else h_seq.transpose(1, 0, 2)
    for b in range(B):
        assert not seq[b, lengths[b]:].any(), f"outputs past lengths[{b}] are not zero"
        # h_n is the state after the last step read: lengths[b]-1 forwards, 0 in reverse.
        last = 0 if reverse else lengths[b] - 1
        np.testing.assert_array_equal(states[0][b], seq[b, last])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_without_biases_and_states(rng, variant, dtype):
    B, T, I, H = 3, 6, 5, 9
    w = weights(rng, variant, I, H, dtype, bias=False)
    x = rng.standard_normal((B, T, I))
    check(variant, dtype, x, w, what="no bias")
    G = GATES[variant]
    zeros = dict(w, b_x=np.zeros(G * H, dtype), b_h=np.zeros(G * H, dtype))
    explicit = forward(variant, x, zeros, np.zeros((B, H)), np.zeros((B, H)) if variant == "lstm" else None)
    assert_equal_results(explicit, forward(variant, x, w), "explicit zeros vs None")
    # Only one of the biases.
    full = weights(rng, variant, I, H, dtype)
    for keep in ("b_x", "b_h"):
        one = {"W_x": full["W_x"], "W_h": full["W_h"], keep: full[keep]}
        check(variant, dtype, x, one, what=f"only {keep}")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unbatched(rng, variant, dtype, reverse):
    T, I, H = 8, 5, 11
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (H,), dtype)
    h_seq, states = check(variant, dtype, x, w, h0, c0, "unbatched", reverse=reverse)
    assert h_seq.shape == (T, H)
    assert all(s.shape == (H,) for s in states)
    batched = forward(variant, x[None], w, h0[None], None if c0 is None else c0[None], reverse=reverse)
    np.testing.assert_array_equal(h_seq, batched[0][0])
    for s, sb in zip(states, batched[1]):
        np.testing.assert_array_equal(s, sb[0])
    # A scalar length for an unbatched sequence.
    h_seq, states = forward(variant, x, w, lengths=np.int64(3), reverse=reverse)
    assert not h_seq[3:].any()
    np.testing.assert_array_equal(states[0], h_seq[0 if reverse else 2])


@pytest.mark.parametrize("variant", VARIANTS)
def test_saturation_and_nan(rng, variant):
    """Huge pre-activations saturate the gates without overflow or warnings;
    NaN propagates to its own sequence only."""
    B, T, I, H = 3, 6, 4, 7
    w = weights(rng, variant, I, H, np.float32)
    x = (rng.standard_normal((B, T, I)) * 1e4).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h_seq, states = forward(variant, x, w)
        # float32 rounding of pre-activations in the thousands: loose agreement only.
        np.testing.assert_allclose(h_seq, ref(variant, x, w)[0], rtol=0, atol=1e-2)
        assert np.isfinite(h_seq).all() and np.abs(h_seq).max() <= 1
        x[1, 2, 0] = np.nan
        h_seq, states = forward(variant, x, w)
    assert np.isnan(h_seq[1, 2:]).all() and not np.isnan(h_seq[1, :2]).any()
    assert not np.isnan(h_seq[[0, 2]]).any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_non_contiguous_and_converted_inputs(rng, variant):
    H, I = 10, 6
    w = weights(rng, variant, I, H, np.float32)
    base = rng.standard_normal((8, 12, 12))
    x = base[::2, ::-1, ::2]  # strided, negative strides
    expected = forward(variant, np.ascontiguousarray(x), w)
    for variant_x in (x, np.asfortranarray(x), x.tolist()):
        assert_equal_results(forward(variant, variant_x, w), expected, "strided x")
    wt = dict(w, W_h=np.asfortranarray(w["W_h"]), W_x=np.asfortranarray(w["W_x"]),
              b_x=np.repeat(w["b_x"], 2)[::2])
    assert not wt["b_x"].flags.c_contiguous
    assert_equal_results(forward(variant, np.ascontiguousarray(x), wt), expected, "fortran W_h")
    ints = rng.integers(-2, 3, (2, 4, I))
    assert_equal_results(forward(variant, ints, w), forward(variant, ints.astype(np.float32), w), "int x")
    forward(variant, ints.astype(bool), w)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inputs_untouched_outputs_fresh_dtype_follows_weights(rng, variant):
    B, T, I, H = 2, 3, 4, 5
    w = weights(rng, variant, I, H, np.float32)
    x = rng.standard_normal((B, T, I))  # float64 data, float32 weights
    h0, c0 = states_for(rng, variant, (B, H), np.float64)
    inputs = [a for a in (x, h0, c0, *w.values()) if a is not None]
    copies = [a.copy() for a in inputs]
    h_seq, states = forward(variant, x, w, h0, c0)
    for before, after in zip(copies, inputs):
        np.testing.assert_array_equal(before, after)
    for out in (h_seq, *states):
        assert out.dtype == np.float32
        assert out.flags.writeable and out.flags.owndata
        for a in inputs:
            assert not np.shares_memory(out, a)
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    h_seq, states = forward(variant, x.astype(np.float32), w64)
    assert h_seq.dtype == np.float64 and all(s.dtype == np.float64 for s in states)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_sizes(rng, variant):
    w = weights(rng, variant, 3, 4)
    h_seq, states = forward(variant, np.zeros((0, 5, 3)), w)
    assert h_seq.shape == (0, 5, 4) and all(s.shape == (0, 4) for s in states)
    h0, c0 = states_for(rng, variant, (2, 4), np.float64)
    h_seq, states = forward(variant, np.zeros((2, 0, 3)), w, h0, c0)
    assert h_seq.shape == (2, 0, 4)
    np.testing.assert_array_equal(states[0], h0)
    if variant == "lstm":
        np.testing.assert_array_equal(states[1], c0)
    # No inputs (I = 0): the biases alone drive the state.
    check(variant, np.float64, np.zeros((2, 3, 0)), weights(rng, variant, 0, 4), what="I=0")


ZERO_INPUT_BACKWARD = """
import numpy as np
from rnnext import functional as F
rng = np.random.default_rng(0)
for cell, G in (("lstm", 4), ("gru", 3)):
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
            np.testing.assert_allclose(grads[0][name], grads[1][name], rtol=1e-12, atol=1e-14, err_msg=name)
print("ok")
"""


def test_zero_input_size_backward():
    """I = 0 (the biases alone drive the state) through the backward; in a
    subprocess, since a crash there must fail this test, not the run."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", ZERO_INPUT_BACKWARD], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (
        f"exit status {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_sizes_backward(rng, variant):
    """No sequences, or no steps: the state's gradients pass straight through."""
    H = 4
    w = weights(rng, variant, 3, H)
    n_states = 2 if variant == "lstm" else 1
    for B, T in ((0, 5), (2, 0), (0, 0)):
        h0 = rng.standard_normal((B, H))
        c0 = rng.standard_normal((B, H)) if variant == "lstm" else None
        cache = forward(variant, np.zeros((B, T, 3)), w, h0, c0, return_cache=True)[2]
        d_n = [rng.standard_normal((B, H)) for _ in range(n_states)]
        grads = backward(variant, cache, np.zeros((B, T, H)), *d_n)
        assert grads["x"].shape == (B, T, 3)
        np.testing.assert_array_equal(grads["h0"], d_n[0])
        if variant == "lstm":
            np.testing.assert_array_equal(grads["c0"], d_n[1])
        for name in ("W_x", "W_h", "b_x", "b_h"):
            assert grads[name].shape == w[name].shape and not grads[name].any(), name


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(13, 30, 48, 72), (2, 25, 20, 300), (70, 6, 9, 40)],
                         ids=["batch_parallel", "hidden_sliced", "chunked"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_thread_count_does_not_change_results(rng, threads, variant, dtype, shape, reverse):
    B, T, I, H = shape
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype)
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        results.append(forward(variant, x, w, h0, c0, lengths=lengths, reverse=reverse))
    for n, other in zip((2, 3), results[1:]):
        assert_equal_results(results[0], other, f"1 vs {n} threads")
    rx.set_num_threads(2)
    check(variant, dtype, x, w, h0, c0, f"{shape} on 2 threads", lengths=lengths, reverse=reverse)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("H", [5, 33, 70])
def test_rows_independent_of_batch(rng, threads, variant, dtype, H):
    """Row b of a batch is bitwise what that sequence gives alone (and in a
    batch of another size), whatever the threads' split of the batch."""
    B, T, I = 75, 9, 12
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype)
    lengths = rng.integers(1, T + 1, B)
    for n in (1, 2):
        rx.set_num_threads(n)
        full = forward(variant, x, w, h0, c0, lengths=lengths)
        for b in (0, 1, 37, 64, 74):
            one = forward(variant, x[b:b + 1], w, h0[b:b + 1], None if c0 is None else c0[b:b + 1],
                          lengths=lengths[b:b + 1])
            np.testing.assert_array_equal(one[0][0], full[0][b], err_msg=f"h_seq row {b}, {n} threads")
            for i, (s1, sf) in enumerate(zip(one[1], full[1])):
                np.testing.assert_array_equal(s1[0], sf[b], err_msg=f"state {i} row {b}, {n} threads")
        part = forward(variant, x[3:11], w, h0[3:11], None if c0 is None else c0[3:11], lengths=lengths[3:11])
        np.testing.assert_array_equal(part[0], full[0][3:11], err_msg=f"rows 3:11, {n} threads")


# ---------------------------------------------------------------- torch

torch_dtype = {np.float32: "float32", np.float64: "float64"}


def torch_module(variant, I, H, dtype, bias=True, bidirectional=False, seed=0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[variant]
    return cls(I, H, batch_first=True, bias=bias, bidirectional=bidirectional,
               dtype=getattr(torch, torch_dtype[dtype]))


def torch_weights(module, suffix=""):
    w = {"W_x": module.get_parameter("weight_ih_l0" + suffix), "W_h": module.get_parameter("weight_hh_l0" + suffix)}
    if module.bias:
        w.update(b_x=module.get_parameter("bias_ih_l0" + suffix), b_h=module.get_parameter("bias_hh_l0" + suffix))
    return {k: v.detach().numpy().copy() for k, v in w.items()}


def torch_forward(module, variant, x, h0, c0, lengths=None, reverse=False):
    """(h_seq (B, T, H), states) of a torch module; reverse reads the backward
    half of a bidirectional module (the forward half's outputs dropped)."""
    import torch

    B, T, _ = x.shape
    H = module.hidden_size
    D = 2 if reverse else 1

    def full(s):
        out = torch.zeros((D, B, H), dtype=x.dtype)
        if s is not None:
            out = out.clone()
            out[D - 1] = s
        return out

    state = (full(h0), full(c0)) if variant == "lstm" else full(h0)
    if lengths is None:
        out, final = module(x, state)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, final = module(packed, state)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    out = out[..., (D - 1) * H:]
    if variant == "lstm":
        return out, (final[0][D - 1], final[1][D - 1])
    return out, (final[D - 1],)


def torch_tolerance(dtype):
    # Two float32 computations, each within the promised tolerance of the truth.
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 100, 64, 64), (4, 50, 33, 70), (3, 7, 130, 257),
                                   (66, 5, 8, 5)], ids=lambda s: "B%dT%dI%dH%d" % s)
def test_matches_torch(rng, variant, dtype, shape):
    torch = pytest.importorskip("torch")
    B, T, I, H = shape
    module = torch_module(variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype)
    with torch.no_grad():
        expected = torch_forward(module, variant, torch.from_numpy(x), torch.from_numpy(h0),
                                 None if c0 is None else torch.from_numpy(c0))
    got = forward(variant, x, torch_weights(module), h0, c0)
    np.testing.assert_allclose(got[0], expected[0].numpy(), err_msg="h_seq", **torch_tolerance(dtype))
    for g, e in zip(got[1], expected[1]):
        np.testing.assert_allclose(g, e.numpy(), err_msg="state", **torch_tolerance(dtype))


@pytest.mark.parametrize("variant", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_lengths_and_reverse_match_torch(rng, variant, dtype, reverse, bias):
    torch = pytest.importorskip("torch")
    B, T, I, H = 6, 20, 9, 31
    module = torch_module(variant, I, H, dtype, bias=bias, bidirectional=reverse)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, variant, (B, H), dtype)
    lengths = np.array([20, 3, 1, 17, 20, 8])
    with torch.no_grad():
        expected = torch_forward(module, variant, torch.from_numpy(x), torch.from_numpy(h0),
                                 None if c0 is None else torch.from_numpy(c0), lengths, reverse)
    w = torch_weights(module, "_reverse" if reverse else "")
    got = forward(variant, x, w, h0, c0, lengths=lengths, reverse=reverse)
    np.testing.assert_allclose(got[0], expected[0].numpy(), err_msg="h_seq", **torch_tolerance(dtype))
    for g, e in zip(got[1], expected[1]):
        np.testing.assert_allclose(g, e.numpy(), err_msg="state", **torch_tolerance(dtype))


# ---------------------------------------------------------------- gradients


def backward(variant, cache, d_seq=None, d_n=None, dc_n=None):
    if variant == "lstm":
        return F.lstm_backward(cache, d_seq, d_n, dc_n)
    return F.gru_backward(cache, d_seq, d_n)


def finite_difference_check(rng, variant, B, T, I, H, reverse, batch_first, lengths, bias=True, eps=1e-6,
                            names=None):
    w = weights(rng, variant, I, H, np.float64, bias=bias)
    args = {"x": rng.standard_normal((B, T, I) if batch_first else (T, B, I)), **w,
            "h0": rng.standard_normal((B, H))}
    if variant == "lstm":
        args["c0"] = rng.standard_normal((B, H))
    d_seq = rng.standard_normal((B, T, H) if batch_first else (T, B, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(2 if variant == "lstm" else 1)]
    options = dict(reverse=reverse, batch_first=batch_first, lengths=lengths)

    def run(**extra):
        return forward(variant, args["x"], args, args["h0"], args.get("c0"), **options, **extra)

    def loss():
        h_seq, states = run()
        return np.sum(h_seq * d_seq) + sum(np.sum(s * d) for s, d in zip(states, d_n))

    cache = run(return_cache=True)[2]
    grads = backward(variant, cache, d_seq, *d_n)
    assert set(grads) == set(names_of(variant))
    for name in names or names_of(variant):
        if name not in args:  # a bias left out: its gradient is still there
            assert grads[name].shape == (GATES[variant] * H,)
            continue
        array = args[name]
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            old = array[index]
            array[index] = old + eps
            plus = loss()
            array[index] = old - eps
            minus = loss()
            array[index] = old
            numeric[index] = (plus - minus) / (2 * eps)
        scale = max(1.0, np.abs(numeric).max())
        assert grads[name].shape == array.shape and grads[name].dtype == np.float64
        np.testing.assert_allclose(grads[name], numeric, rtol=0, atol=1e-7 * scale,
                                   err_msg=f"d{name} {variant} reverse={reverse} batch_first={batch_first}")
    return grads


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_finite_differences(rng, variant, reverse, batch_first):
    finite_difference_check(rng, variant, 3, 5, 4, 5, reverse, batch_first, np.array([5, 2, 1]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_finite_differences_without_bias(rng, variant):
    grads = finite_difference_check(rng, variant, 2, 4, 3, 4, False, True, None, bias=False)
    # The biases' gradients exist although the forward had none; b_x's equals
    # b_h's for every gate whose two biases add (all but GRU's n gate).
    H = 4
    G = GATES[variant]
    same = slice(0, G * H) if variant == "lstm" else slice(0, 2 * H)
    np.testing.assert_allclose(grads["b_x"][same], grads["b_h"][same], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", VARIANTS)
def test_finite_differences_larger_hidden(rng, variant):
    # Past one SIMD panel (H > 32 floats / 16 doubles), odd input size; the
    # weights' gradients only (the rest is covered above).
    finite_difference_check(rng, variant, 2, 3, 3, 37, False, True, np.array([3, 2]),
                            names=["x", "W_h", "b_h", "h0", "c0"] if variant == "lstm" else ["x", "W_h", "b_h", "h0"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_dict_shapes_and_defaults(rng, variant):
    B, T, I, H = 2, 5, 3, 4
    w = weights(rng, variant, I, H, np.float32, bias=False)
    x = rng.standard_normal((B, T, I))
    cache = forward(variant, x, w, return_cache=True)[2]
    grads = backward(variant, cache)  # no gradients: all zero
    G = GATES[variant]
    shapes = {"x": (B, T, I), "W_x": (G * H, I), "W_h": (G * H, H), "b_x": (G * H,), "b_h": (G * H,),
              "h0": (B, H), "c0": (B, H)}
    assert set(grads) == set(names_of(variant))
    for name, g in grads.items():
        assert g.shape == shapes[name] and g.dtype == np.float32, name
        assert not g.any(), name
    grads = backward(variant, cache, None, np.ones((B, H)))
    for a in grads.values():
        for b in grads.values():
            assert a is b or not np.shares_memory(a, b)
    if variant == "lstm":
        # Only dc_n given: flows back through c alone.
        grads = F.lstm_backward(cache, dc_n=np.ones((B, H)))
        assert grads["c0"].any() and grads["W_h"].any()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unbatched_backward(rng, variant, reverse):
    T, I, H = 5, 3, 4
    w = weights(rng, variant, I, H)
    x = rng.standard_normal((T, I))
    d_seq = rng.standard_normal((T, H))
    d_n = [np.ones(H)] * (2 if variant == "lstm" else 1)
    cache = forward(variant, x, w, reverse=reverse, return_cache=True)[2]
    grads = backward(variant, cache, d_seq, *d_n)
    cache_b = forward(variant, x[None], w, reverse=reverse, return_cache=True)[2]
    batched = backward(variant, cache_b, d_seq[None], *[d[None] for d in d_n])
    assert grads["x"].shape == (T, I) and grads["h0"].shape == (H,)
    for name in names_of(variant):
        expected = batched[name][0] if name in ("x", "h0", "c0") else batched[name]
        np.testing.assert_array_equal(grads[name], expected, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_padding_never_matters(rng, variant, reverse):
    """Gradients past a length are ignored, inputs there never read, dx is zero there."""
    B, T, I, H = 3, 6, 3, 7
    w = weights(rng, variant, I, H)
    lengths = np.array([4, 6, 2])
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(2 if variant == "lstm" else 1)]
    cache = forward(variant, x, w, lengths=lengths, reverse=reverse, return_cache=True)[2]
    clean = backward(variant, cache, d_seq, *d_n)
    x_bad, d_bad = x.copy(), d_seq.copy()
    for b, n in enumerate(lengths):
        x_bad[b, n:] = np.nan
        d_bad[b, n:] = np.inf
    h_seq, _, cache = forward(variant, x_bad, w, lengths=lengths, reverse=reverse, return_cache=True)
    assert np.isfinite(h_seq).all()
    dirty = backward(variant, cache, d_bad, *d_n)
    for name in names_of(variant):
        np.testing.assert_array_equal(clean[name], dirty[name], err_msg=name)
    for b, n in enumerate(lengths):
        assert not dirty["x"][b, n:].any()
        assert dirty["x"][b, :n].any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_lengths_equal_truncated_sequences(rng, variant):
    """A sequence of length n in a padded batch has the gradients of that
    sequence cut to n steps."""
    B, T, I, H = 3, 7, 4, 6
    w = weights(rng, variant, I, H)
    lengths = np.array([7, 3, 5])
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    d_seq = rng.standard_normal((B, T, H))
    cache = forward(variant, x, w, h0, lengths=lengths, reverse=True, return_cache=True)[2]
    grads = backward(variant, cache, d_seq, np.ones((B, H)))
    for b, n in enumerate(lengths):
        one = forward(variant, x[b:b + 1, :n], w, h0[b:b + 1], reverse=True, return_cache=True)[2]
        g1 = backward(variant, one, d_seq[b:b + 1, :n], np.ones((1, H)))
        np.testing.assert_allclose(grads["x"][b, :n], g1["x"][0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(grads["h0"][b], g1["h0"][0], rtol=1e-12, atol=1e-14)


def test_cache_is_a_snapshot(rng):
    for variant in VARIANTS:
        w = weights(rng, variant, 3, 4)
        x = rng.standard_normal((2, 5, 3))
        cache = forward(variant, x, w, return_cache=True)[2]
        first = backward(variant, cache, None, np.ones((2, 4)))
        x[:] = 0
        w["W_h"][:] = 0
        w["b_h"][:] = 0
        again = backward(variant, cache, None, np.ones((2, 4)))
        for name in names_of(variant):
            np.testing.assert_array_equal(first[name], again[name], err_msg=f"{variant} {name}")
        # A cache can be used more than once with other gradients.
        backward(variant, cache, np.ones((2, 5, 4)))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(12, 30, 40, 70), (2, 12, 5, 300)], ids=["batch_parallel", "hidden_sliced"])
def test_gradients_deterministic(rng, threads, variant, dtype, shape):
    """Bitwise identical gradients for a fixed thread count, and close (float64:
    1e-12) across thread counts."""
    B, T, I, H = shape
    w = weights(rng, variant, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    d_seq = rng.standard_normal((B, T, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    results = {}
    for n in (1, 2, 2):
        rx.set_num_threads(n)
        cache = forward(variant, x, w, lengths=lengths, return_cache=True)[2]
        g = backward(variant, cache, d_seq)
        if n in results:
            for name in names_of(variant):
                np.testing.assert_array_equal(results[n][name], g[name], err_msg=f"{name}, {n} threads twice")
        results[n] = g
    for name in names_of(variant):
        scale = np.abs(results[1][name]).max()
        np.testing.assert_allclose(results[2][name], results[1][name], rtol=0,
                                   atol=(1e-5 if dtype == np.float32 else 1e-12) * scale, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_gradients_close_to_float64(rng, variant):
    B, T, I, H = 4, 100, 16, 40
    w = weights(rng, variant, I, H)
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    grads = {}
    for dtype in (np.float32, np.float64):
        cache = forward(variant, x, {k: v.astype(dtype) for k, v in w.items()}, return_cache=True)[2]
        grads[dtype] = backward(variant, cache, d_seq)
    for name in names_of(variant):
        scale = np.abs(grads[np.float64][name]).max()
        assert grads[np.float32][name].dtype == np.float32
        np.testing.assert_allclose(grads[np.float32][name], grads[np.float64][name], rtol=0,
                                   atol=1e-5 * scale, err_msg=name)


@pytest.mark.parametrize("variant", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("shape", [(5, 12, 7, 19), (2, 6, 9, 70), (67, 4, 6, 33)], ids=lambda s: "B%dT%dI%dH%d" % s)
def test_against_torch_autograd(rng, variant, reverse, shape):
    torch = pytest.importorskip("torch")
    B, T, I, H = shape
    module = torch_module(variant, I, H, np.float64, bidirectional=reverse)
    suffix = "_reverse" if reverse else ""
    x = torch.tensor(rng.standard_normal((B, T, I)), requires_grad=True)
    h0 = torch.tensor(rng.standard_normal((B, H)), requires_grad=True)
    c0 = torch.tensor(rng.standard_normal((B, H)), requires_grad=True) if variant == "lstm" else None
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    d_seq = rng.standard_normal((B, T, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(2 if variant == "lstm" else 1)]
    h_seq, states = torch_forward(module, variant, x, h0, c0, lengths, reverse)
    loss = torch.sum(h_seq * torch.tensor(d_seq)) + sum(torch.sum(s * torch.tensor(d)) for s, d in zip(states, d_n))
    loss.backward()
    expected = {"x": x.grad, "h0": h0.grad, "c0": None if c0 is None else c0.grad}
    for name, tname in (("W_x", "weight_ih_l0"), ("W_h", "weight_hh_l0"), ("b_x", "bias_ih_l0"),
                        ("b_h", "bias_hh_l0")):
        expected[name] = module.get_parameter(tname + suffix).grad
    w = torch_weights(module, suffix)
    cache = forward(variant, x.detach().numpy(), w, h0.detach().numpy(),
                    None if c0 is None else c0.detach().numpy(), lengths=lengths, reverse=reverse,
                    return_cache=True)[2]
    grads = backward(variant, cache, d_seq, *d_n)
    for name in names_of(variant):
        np.testing.assert_allclose(grads[name], expected[name].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{variant} d{name}")


# ---------------------------------------------------------------- errors

I_, H_, B_, T_ = 3, 4, 2, 5


def error_args(variant, **override):
    rng = np.random.default_rng(0)
    G = GATES[variant]
    a = dict(
        x=rng.standard_normal((B_, T_, I_)),
        W_x=rng.standard_normal((G * H_, I_)).astype(np.float32),
        W_h=rng.standard_normal((G * H_, H_)).astype(np.float32),
        b_x=np.zeros(G * H_, np.float32),
        b_h=np.zeros(G * H_, np.float32),
        h0=None,
    )
    if variant == "lstm":
        a["c0"] = None
    a.update(override)
    return a


def call(variant, **override):
    a = error_args(variant, **override)
    options = {k: a.pop(k) for k in list(a) if k in ("lengths", "batch_first", "reverse", "linear_before_reset")}
    if variant == "lstm":
        return F.lstm(a["x"], a["W_x"], a["W_h"], a["b_x"], a["b_h"], a["h0"], a["c0"], **options)
    options.setdefault("linear_before_reset", OPTIONS[variant]["linear_before_reset"])
    return F.gru(a["x"], a["W_x"], a["W_h"], a["b_x"], a["b_h"], a["h0"], **options)


def type_errors(G):
    return [
        (dict(W_h=np.zeros((G * H_, H_), np.float64)), r"W_h"),
        (dict(b_x=np.zeros(G * H_, np.float64)), r"b_x"),
        (dict(W_x=np.zeros((G * H_, I_), np.float64)), r"W_h|W_x"),
        (dict(W_x=np.zeros((G * H_, I_), np.int64)), r"W_x"),
        (dict(W_h=np.zeros((G * H_, H_), np.complex64)), r"W_h"),
        # dtype is checked before shapes: a wrong shape in a wrong dtype is a TypeError
        (dict(W_h=np.zeros((7, 7), np.float64)), r"W_h"),
        (dict(x=np.zeros((B_, T_, I_), complex)), r"x: "),
        (dict(x=np.zeros((B_, T_, I_), object)), r"x: "),
        (dict(h0=np.zeros((B_, H_), complex)), r"h0"),
        (dict(lengths=np.full(B_, 2.0)), r"lengths"),
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_type_errors(variant):
    G = GATES[variant]
    cases = type_errors(G)
    if variant == "lstm":
        cases.append((dict(c0=np.zeros((B_, H_), complex)), r"c0"))
    for override, match in cases:
        with pytest.raises(TypeError, match=match):
            call(variant, **override)


def value_errors(variant):
    G = GATES[variant]
    cases = [
        # W_h must be (G*H, H): the wrong number of rows for G gate blocks.
        (dict(W_h=np.zeros((H_, H_), np.float32)), r"W_h"),
        (dict(W_h=np.zeros((G * H_ + 1, H_), np.float32)), r"W_h"),
        (dict(W_h=np.zeros((G * H_, H_ + 1), np.float32)), r"W_h"),
        (dict(W_x=np.zeros(G * H_, np.float32)), r"W_x"),
        (dict(W_x=np.zeros((G * H_ + 1, I_), np.float32)), r"W_x"),  # not G blocks
        (dict(b_x=np.zeros(H_, np.float32)), r"b_x"),
        (dict(b_h=np.zeros((1, G * H_), np.float32)), r"b_h"),
        (dict(x=np.zeros((B_, T_, I_ + 1))), r"x: "),
        (dict(x=np.zeros((T_, B_, I_ + 1)), batch_first=False), r"x: "),
        (dict(x=np.zeros(I_)), r"x: "),
        (dict(h0=np.zeros((B_ + 1, H_))), r"h0"),
        (dict(h0=np.zeros((1, B_, H_))), r"h0"),
        (dict(x=np.zeros((T_, I_)), h0=np.zeros((1, H_))), r"h0"),
        (dict(lengths=np.ones(B_ + 1, int)), r"lengths"),
        (dict(lengths=np.array([1, 0])), r"lengths\[1\] = 0"),
        (dict(lengths=np.array([6, 1])), r"lengths\[0\] = 6"),
        (dict(lengths=np.array([-1, 1])), r"lengths\[0\] = -1"),
    ]
    if variant == "lstm":
        cases += [
            (dict(c0=np.zeros((B_ + 1, H_))), r"c0"),
            (dict(c0=np.zeros((B_, H_ + 1))), r"c0"),
            (dict(c0=np.zeros(H_)), r"c0"),
            (dict(x=np.zeros((T_, I_)), c0=np.zeros((1, H_))), r"c0"),
        ]
    return cases


@pytest.mark.parametrize("variant", VARIANTS)
def test_value_errors(variant):
    for override, match in value_errors(variant):
        with pytest.raises(ValueError, match=match):
            call(variant, **override)


def test_w_h_error_names_the_gate_count():
    # An RNN-shaped W_h (H, H) with an LSTM: the message says what was expected.
    with pytest.raises(ValueError, match=r"W_h: expected shape \(16, 4\)"):
        call("lstm", W_h=np.zeros((16, 5), np.float32))
    with pytest.raises(ValueError, match=r"W_h: expected shape \(12, 4\)"):
        call("gru", W_h=np.zeros((12, 5), np.float32))


@pytest.mark.parametrize("variant", VARIANTS)
def test_backward_errors(rng, variant):
    w = weights(rng, variant, 3, 4)
    cache = forward(variant, rng.standard_normal((2, 5, 3)), w, return_cache=True)[2]
    with pytest.raises(ValueError, match=r"dh_seq"):
        backward(variant, cache, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"dh_n"):
        backward(variant, cache, None, np.zeros(4))
    with pytest.raises(TypeError, match=r"dh_n"):
        backward(variant, cache, None, np.zeros((2, 4), complex))
    if variant == "lstm":
        with pytest.raises(ValueError, match=r"dc_n"):
            F.lstm_backward(cache, None, None, np.zeros((2, 5)))
    with pytest.raises(TypeError, match="cache"):
        backward(variant, {"not": "a cache"})
    # A cache of another cell kind.
    other = forward("gru" if variant == "lstm" else "lstm", rng.standard_normal((2, 5, 3)),
                    weights(rng, "gru" if variant == "lstm" else "lstm", 3, 4), return_cache=True)[2]
    with pytest.raises(TypeError, match="cache"):
        backward(variant, other)
    rnn_cache = F.rnn(rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 4)),
                      return_cache=True)[2]
    with pytest.raises(TypeError, match="cache"):
        backward(variant, rnn_cache)
    with pytest.raises(TypeError, match="cache"):
        F.rnn_backward(cache)
