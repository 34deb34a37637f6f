"""rnn_backward: central finite differences in float64, torch autograd, and
the properties the API promises."""

import numpy as np
import pytest
from conftest import ACTIVATIONS, rnn_weights

import rnnext as rx
from rnnext import functional as F

NAMES = ["x", "W_x", "W_h", "b_x", "b_h", "h0"]


def finite_difference_check(rng, B, T, I, H, activation, reverse, batch_first, lengths, eps=1e-6):
    w = rnn_weights(rng, I, H, np.float64)
    args = {
        "x": rng.standard_normal((B, T, I) if batch_first else (T, B, I)),
        **w,
        "h0": rng.standard_normal((B, H)),
    }
    d_seq = rng.standard_normal((B, T, H) if batch_first else (T, B, H))
    d_n = rng.standard_normal((B, H))
    options = dict(activation=activation, reverse=reverse, batch_first=batch_first, lengths=lengths)

    def loss():
        h_seq, h_n = F.rnn(args["x"], args["W_x"], args["W_h"], args["b_x"], args["b_h"], args["h0"], **options)
        return np.sum(h_seq * d_seq) + np.sum(h_n * d_n)

    _, _, cache = F.rnn(args["x"], args["W_x"], args["W_h"], args["b_x"], args["b_h"], args["h0"],
                        return_cache=True, **options)
    grads = F.rnn_backward(cache, d_seq, d_n)
    for name in NAMES:
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
        np.testing.assert_allclose(grads[name], numeric, rtol=0, atol=1e-7 * scale,
                                   err_msg=f"d{name} {activation} reverse={reverse} batch_first={batch_first}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_major"])
def test_finite_differences(rng, activation, reverse, batch_first):
    finite_difference_check(rng, 3, 6, 4, 5, activation, reverse, batch_first, np.array([6, 2, 1]))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_finite_differences_larger_sizes(rng, activation):
    # Sizes past one SIMD panel (H > 32) and an odd input size.
    finite_difference_check(rng, 2, 3, 3, 37, activation, False, True, None)


def test_gradient_dict_shapes_and_defaults(rng):
    w = rnn_weights(rng, 3, 4, np.float32, bias=False)
    x = rng.standard_normal((2, 5, 3))
    h_seq, h_n, cache = F.rnn(x, w["W_x"], w["W_h"], return_cache=True)
    grads = F.rnn_backward(cache)  # no gradients: all zero
    assert set(grads) == set(NAMES)
    shapes = {"x": (2, 5, 3), "W_x": (4, 3), "W_h": (4, 4), "b_x": (4,), "b_h": (4,), "h0": (2, 4)}
    for name, g in grads.items():
        assert g.shape == shapes[name] and g.dtype == np.float32, name
        assert not g.any(), name
    grads = F.rnn_backward(cache, dh_n=np.ones((2, 4)))
    np.testing.assert_array_equal(grads["b_x"], grads["b_h"])
    assert not np.shares_memory(grads["b_x"], grads["b_h"])


def test_unbatched(rng):
    w = rnn_weights(rng, 3, 4)
    x = rng.standard_normal((5, 3))
    d_seq = rng.standard_normal((5, 4))
    _, _, cache = F.rnn(x, **w, return_cache=True)
    grads = F.rnn_backward(cache, d_seq, np.ones(4))
    _, _, cache_b = F.rnn(x[None], **w, return_cache=True)
    batched = F.rnn_backward(cache_b, d_seq[None], np.ones((1, 4)))
    assert grads["x"].shape == (5, 3) and grads["h0"].shape == (4,)
    np.testing.assert_array_equal(grads["x"], batched["x"][0])
    np.testing.assert_array_equal(grads["W_h"], batched["W_h"])


def test_padding_never_matters(rng):
    """Gradients past a length are ignored, inputs there never read, dx is zero there."""
    w = rnn_weights(rng, 3, 6)
    lengths = np.array([4, 2])
    x = rng.standard_normal((2, 5, 3))
    d_seq = rng.standard_normal((2, 5, 6))
    _, _, cache = F.rnn(x, **w, lengths=lengths, return_cache=True)
    clean = F.rnn_backward(cache, d_seq)
    x_bad, d_bad = x.copy(), d_seq.copy()
    for b, n in enumerate(lengths):
        x_bad[b, n:] = np.nan
        d_bad[b, n:] = np.inf
    _, _, cache = F.rnn(x_bad, **w, lengths=lengths, return_cache=True)
    dirty = F.rnn_backward(cache, d_bad)
    for name in NAMES:
        np.testing.assert_array_equal(clean[name], dirty[name], err_msg=name)
    assert not dirty["x"][0, 4:].any() and not dirty["x"][1, 2:].any()


def test_cache_is_a_snapshot(rng):
    w = rnn_weights(rng, 3, 4)
    x = rng.standard_normal((2, 5, 3))
    _, _, cache = F.rnn(x, **w, return_cache=True)
    first = F.rnn_backward(cache, dh_n=np.ones((2, 4)))
    x[:] = 0  # changing the inputs after the forward changes nothing
    w["W_h"][:] = 0
    again = F.rnn_backward(cache, dh_n=np.ones((2, 4)))
    for name in NAMES:
        np.testing.assert_array_equal(first[name], again[name])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_gradients_identical_for_any_thread_count(rng, dtype, threads):
    B, T, I, H = 12, 30, 40, 70
    w = rnn_weights(rng, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    d_seq = rng.standard_normal((B, T, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        _, _, cache = F.rnn(x, **w, lengths=lengths, return_cache=True)
        results.append(F.rnn_backward(cache, d_seq))
    for other in results[1:]:
        for name in NAMES:
            np.testing.assert_array_equal(results[0][name], other[name], err_msg=name)


def test_float32_gradients_close_to_float64(rng):
    B, T, I, H = 4, 100, 16, 32
    w = rnn_weights(rng, I, H, np.float64)
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    grads = {}
    for dtype in (np.float32, np.float64):
        _, _, cache = F.rnn(x, **{k: v.astype(dtype) for k, v in w.items()}, return_cache=True)
        grads[dtype] = F.rnn_backward(cache, d_seq)
    for name in NAMES:
        # Gradients sum B*T terms: relative 1e-5 of their scale.
        scale = np.abs(grads[np.float64][name]).max()
        np.testing.assert_allclose(grads[np.float32][name], grads[np.float64][name], rtol=0, atol=1e-5 * scale,
                                   err_msg=name)


def test_backward_errors(rng):
    w = rnn_weights(rng, 3, 4)
    _, _, cache = F.rnn(rng.standard_normal((2, 5, 3)), **w, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_seq: expected shape \(2, 5, 4\) like the forward's h_seq, got \(2, 5, 3\)"):
        F.rnn_backward(cache, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(2, 4\) like the forward's h_n, got \(4,\)"):
        F.rnn_backward(cache, None, np.zeros(4))
    with pytest.raises(TypeError, match="dh_n: expected an array of real numbers"):
        F.rnn_backward(cache, None, np.zeros((2, 4), complex))
    with pytest.raises(TypeError, match="cache: expected the cache returned by rnn"):
        F.rnn_backward({"not": "a cache"})


def test_against_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    for activation in ("tanh", "relu"):
        B, T, I, H = 5, 12, 7, 19
        module = torch.nn.RNN(I, H, nonlinearity=activation, batch_first=True, dtype=torch.float64)
        x = torch.tensor(rng.standard_normal((B, T, I)), requires_grad=True)
        h0 = torch.tensor(rng.standard_normal((1, B, H)), requires_grad=True)
        lengths = np.array([12, 3, 1, 7, 12])
        d_seq = rng.standard_normal((B, T, H))
        d_n = rng.standard_normal((B, H))
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True,
                                                         enforce_sorted=False)
        out, h_n = module(packed, h0)
        h_seq, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        (torch.sum(h_seq * torch.tensor(d_seq)) + torch.sum(h_n[0] * torch.tensor(d_n))).backward()
        expected = {"x": x.grad, "W_x": module.weight_ih_l0.grad, "W_h": module.weight_hh_l0.grad,
                    "b_x": module.bias_ih_l0.grad, "b_h": module.bias_hh_l0.grad, "h0": h0.grad[0]}
        w = {"W_x": module.weight_ih_l0, "W_h": module.weight_hh_l0, "b_x": module.bias_ih_l0,
             "b_h": module.bias_hh_l0}
        w = {k: v.detach().numpy() for k, v in w.items()}
        _, _, cache = F.rnn(x.detach().numpy(), h0=h0.detach().numpy()[0], lengths=lengths,
                            activation=activation, return_cache=True, **w)
        grads = F.rnn_backward(cache, d_seq, d_n)
        for name in NAMES:
            np.testing.assert_allclose(grads[name], expected[name].numpy(), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{activation} d{name}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_hidden_sliced_backward_matches_one_thread(rng, threads, reverse):
    """Few sequences, many hidden units: threads split the hidden units of the
    backward loop and meet after each step; gradients stay bitwise identical."""
    B, T, I, H = 2, 12, 5, 300
    w = rnn_weights(rng, I, H, np.float64)
    x = rng.standard_normal((B, T, I))
    d_seq = rng.standard_normal((B, T, H))
    d_n = rng.standard_normal((B, H))
    lengths = np.array([12, 5])
    results = []
    for n in (1, 2, 3):
        rx.set_num_threads(n)
        _, _, cache = F.rnn(x, **w, lengths=lengths, reverse=reverse, return_cache=True)
        results.append(F.rnn_backward(cache, d_seq, d_n))
    for other in results[1:]:
        for name in NAMES:
            np.testing.assert_array_equal(results[0][name], other[name], err_msg=name)
