"""LSTM projections (``proj_size``, PyTorch's ``h_t = W_hr (o_t * tanh(c_t))``):
forward against rnnext.reference, gradients against finite differences,
streaming, training, files, torch interop (outputs and gradients) and
PyTorch's own module_db samples for nn.RNN/GRU/LSTM through from_torch."""

import io
import pickle

import numpy as np
import pytest
from helpers import (assert_close, assert_gradient_matches, model_numeric_gradient, params64, stacked_reference,
                     tolerance)

import rnnext as rx

CONFIGS = [  # (num_layers, bidirectional, output_size)
    (1, False, None), (1, False, 3), (2, False, None), (1, True, None), (2, True, 2), (3, True, None)]


def projected(I=4, H=7, P=3, dtype="float64", seed=0, **kwargs):
    return rx.LSTM(I, H, proj_size=P, dtype=dtype, seed=seed, **kwargs)


def data(rng, model, B=3, T=6, lengths=True):
    I = model.input_size
    x = rng.standard_normal((B, T, I) if model.batch_first else (T, B, I))
    n = np.array([T, max(1, T - 2), 1][:B] + [T] * max(0, B - 3)) if lengths else None
    return x, n


def test_shapes_and_config():
    m = projected(num_layers=2, bidirectional=True, output_size=5)
    assert m.proj_size == 3 and m.config["proj_size"] == 3
    assert m.params["W_h_l0"].shape == (28, 3)
    assert m.params["W_hr_l0"].shape == (3, 7)
    assert m.params["W_x_l1"].shape == (28, 6)  # D * P features into layer 1
    assert m.params["W_hr_l1_reverse"].shape == (3, 7)
    assert m.params["W_o"].shape == (5, 6)
    assert "proj_size=3" in repr(m)
    assert rx.LSTM(4, 7).proj_size == 0
    h, c = m.initial_state(2)
    assert h.shape == (4, 2, 3) and c.shape == (4, 2, 7)
    # The count the memory check uses is the listing's.
    assert m.spec.param_count() == (len(m.params), sum(v.size for v in m.params.values()))


@pytest.mark.parametrize("layers,bidirectional,output_size", CONFIGS)
@pytest.mark.parametrize("batch_first", [True, False])
def test_forward_matches_reference(rng, layers, bidirectional, output_size, batch_first):
    m = projected(num_layers=layers, bidirectional=bidirectional, output_size=output_size, batch_first=batch_first)
    x, n = data(rng, m)
    B = 3
    rows = layers * (2 if bidirectional else 1)
    h0 = (rng.standard_normal((rows, B, 3)), rng.standard_normal((rows, B, 7)))
    out, (h_n, c_n) = m(x, h0=h0, lengths=n)
    ref_out, ref_h, ref_c = stacked_reference(m, x, h0=h0, lengths=n)
    assert out.shape == ref_out.shape and h_n.shape == (rows, B, 3) and c_n.shape == (rows, B, 7)
    for a, b in ((out, ref_out), (h_n, ref_h), (c_n, ref_c)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_float32_after_100_steps(rng):
    m = projected(I=16, H=40, P=12, dtype="float32", num_layers=2)
    x = rng.standard_normal((4, 100, 16)).astype(np.float32)
    out, (h_n, c_n) = m(x)
    ref_out, ref_h, ref_c = stacked_reference(m, x)
    assert_close(out, ref_out, np.float32)
    assert_close(c_n, ref_c, np.float32)


def test_threads_do_not_change_results(rng):
    m = projected(I=8, H=70, P=20, dtype="float32")
    x = rng.standard_normal((33, 9, 8)).astype(np.float32)
    with rx.threads(1):
        one = m(x)
    with rx.threads(2):
        two = m(x)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1][1], two[1][1])


@pytest.mark.parametrize("layers,bidirectional,output_size", CONFIGS[:5])
def test_gradients_match_finite_differences(rng, layers, bidirectional, output_size):
    m = projected(I=3, H=5, P=2, num_layers=layers, bidirectional=bidirectional, output_size=output_size)
    x, n = data(rng, m, B=3, T=4)
    D = 2 if bidirectional else 1
    target = rng.standard_normal((3, 4, output_size or D * 2))
    loss, grads = m.loss_and_grads(x, target, lengths=n)
    assert set(grads) == set(m.params)

    def loss_of(params):
        other = projected(I=3, H=5, P=2, num_layers=layers, bidirectional=bidirectional, output_size=output_size)
        other.load_state_dict(params)
        return other.loss_and_grads(x, target, lengths=n)[0]

    for key in m.params:
        numeric = model_numeric_gradient(loss_of, params64(m), key)
        assert_gradient_matches(grads[key], numeric, what=key)


def test_state_gradients(rng):
    m = projected(I=3, H=5, P=2)
    x = rng.standard_normal((2, 4, 3))
    h0 = rng.standard_normal((1, 2, 2))
    c0 = rng.standard_normal((1, 2, 5))
    out, _, cache = m.forward_cache(x, h0=(h0, c0))
    d_out = rng.standard_normal(out.shape)
    g = m.backward_cache(cache, d_out)
    dh0, dc0 = g.h0

    def loss(h, c):
        return float(np.sum(m(x, h0=(h, c))[0] * d_out))

    num_h = np.zeros_like(h0)
    num_c = np.zeros_like(c0)
    for arr, num in ((h0, num_h), (c0, num_c)):
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + 1e-6
            plus = loss(h0, c0)
            arr[i] = old - 1e-6
            minus = loss(h0, c0)
            arr[i] = old
            num[i] = (plus - minus) / 2e-6
    assert_gradient_matches(dh0, num_h, "h0")
    assert_gradient_matches(dc0, num_c, "c0")
    num_x = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + 1e-6
        plus = loss(h0, c0)
        x[i] = old - 1e-6
        minus = loss(h0, c0)
        x[i] = old
        num_x[i] = (plus - minus) / 2e-6
    assert_gradient_matches(g.x, num_x, "x")


@pytest.mark.parametrize("output_size", [None, 4])
def test_step_matches_forward(rng, output_size):
    m = projected(output_size=output_size)
    x = rng.standard_normal((2, 5, 4))
    out, (h_n, c_n) = m(x)
    state = None
    for t in range(5):
        y, state = m.step(x[:, t], state)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state[0], h_n, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state[1], c_n, rtol=1e-12, atol=1e-13)
    m2 = projected(num_layers=2, output_size=output_size)
    out2, _ = m2(x)
    state = None
    for t in range(5):
        y, state = m2.step(x[:, t], state)
    np.testing.assert_allclose(y, out2[:, -1], rtol=1e-12, atol=1e-13)


def test_training_reduces_the_loss(rng):
    m = projected(I=3, H=16, P=4, dtype="float32", output_size=1)
    x = rng.standard_normal((64, 10, 3)).astype(np.float32)
    y = x.sum(axis=(1, 2), keepdims=False)[:, None].astype(np.float32) / 5
    history = m.fit(x, y, loss="mse", epochs=30, lr=1e-2, progress=False, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_files_and_pickles_round_trip(rng, tmp_path):
    m = projected(num_layers=2, bidirectional=True, output_size=2)
    x, n = data(rng, m)
    expected = m(x, lengths=n)[0]
    path = tmp_path / "proj.safetensors"
    m.save(path)
    loaded = rx.load(path)
    assert loaded.config == m.config
    np.testing.assert_array_equal(loaded(x, lengths=n)[0], expected)
    clone = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(clone(x, lengths=n)[0], expected)
    np.testing.assert_array_equal(rx.from_bytes(m.to_bytes())(x, lengths=n)[0], expected)


def test_errors():
    with pytest.raises(ValueError, match="proj_size"):
        rx.LSTM(4, 7, proj_size=7)
    with pytest.raises(ValueError, match="proj_size"):
        rx.LSTM(4, 7, proj_size=-1)
    with pytest.raises(TypeError, match="proj_size"):
        rx.LSTM(4, 7, proj_size=2.0)
    with pytest.raises(TypeError):
        rx.GRU(4, 7, proj_size=2)
    m = projected()
    x = np.zeros((2, 5, 4))
    with pytest.raises(ValueError, match=r"h0\[0\].*P"):
        m(x, h0=(np.zeros((1, 2, 7)), np.zeros((1, 2, 7))))
    with pytest.raises(ValueError, match=r"h0\[1\].*H"):
        m(x, h0=(np.zeros((1, 2, 3)), np.zeros((1, 2, 3))))
    with pytest.raises(ValueError, match="proj_size"):
        m.quantize("int8")
    with pytest.raises(ValueError, match="proj_size"):  # as a quantized file would declare it
        projected(dtype="float32").set_quantized("int8", {})
    with pytest.raises(ValueError, match="proj_size"):
        rx.Seq2Seq(rx.LSTM(3, 6, proj_size=2), rx.LSTM(4, 6, 4))
    with pytest.raises(ValueError, match="W_hr"):  # H = 2 from W_x, W_hr must be (P, 2)
        rx._core.pack_lstm(np.zeros((8, 2)), np.zeros((8, 3)), W_hr=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="W_h.*proj_size"):
        rx._core.pack_lstm(np.zeros((8, 2)), np.zeros((8, 2)), W_hr=np.zeros((3, 2)))


# ---------------------------------------------------------------- torch


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True), (2, True)])
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_torch_matches_torch(rng, layers, bidirectional, batch_first):
    torch = _torch()
    torch.manual_seed(0)
    module = torch.nn.LSTM(4, 7, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                           proj_size=3, dtype=torch.float64)
    head = torch.nn.Linear(3 * (2 if bidirectional else 1), 2, dtype=torch.float64)
    m = rx.from_torch(module, head)
    assert m.proj_size == 3
    x = rng.standard_normal((3, 6, 4) if batch_first else (6, 3, 4))
    xt = torch.from_numpy(x).requires_grad_()
    seq, (h_n, c_n) = module(xt)
    out_t = head(seq)
    out, (h, c) = m(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, h_n.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, c_n.detach().numpy(), rtol=1e-10, atol=1e-12)
    # Gradients: a loss of torch's outputs, and the same loss in rnnext.
    target = rng.standard_normal(out.shape)
    loss_t = torch.nn.functional.mse_loss(out_t, torch.from_numpy(target))
    loss_t.backward()
    loss, grads = m.loss_and_grads(x, target)
    np.testing.assert_allclose(loss, loss_t.item(), rtol=1e-10)
    for name, p in module.named_parameters():
        ours = grads[name.replace("weight_ih", "W_x").replace("weight_hh", "W_h").replace("weight_hr", "W_hr")
                     .replace("bias_ih", "b_x").replace("bias_hh", "b_h")]
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)
    module2, head2 = m.to_torch()
    assert module2.proj_size == 3
    for (k, v), (k2, v2) in zip(module.state_dict().items(), module2.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def _module_db_samples(name, training=False):
    torch = _torch()
    common = pytest.importorskip("torch.testing._internal.common_modules")  # needs expecttest
    info = next(i for i in common.module_db if i.module_cls is getattr(torch.nn, name))
    return info, list(info.module_inputs_func(info, device="cpu", dtype=torch.float64, requires_grad=False,
                                              training=training))


@pytest.mark.parametrize("name", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("training", [False, True])
def test_module_db_samples_through_from_torch(name, training):
    """PyTorch's own module test samples: every one builds through from_torch
    and gives torch's outputs (with torch 2.13: 80 per mode, 32 RNN, 16 GRU,
    32 LSTM of which 16 have proj_size)."""
    torch = _torch()
    info, samples = _module_db_samples(name, training)
    assert samples
    for k, sample in enumerate(samples):
        args, kwargs = sample.constructor_input.args, sample.constructor_input.kwargs
        torch.manual_seed(k)
        module = info.module_cls(*args, **kwargs).to(torch.float64)
        m = rx.from_torch(module)
        inputs = sample.forward_input.args
        x = inputs[0]
        state = inputs[1] if len(inputs) > 1 else None
        expected = module(*inputs)
        h0 = None
        if state is not None:
            h0 = tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()
        out, final = m(x.numpy(), h0=h0)
        what = f"{name} sample {k}: {args} {kwargs}"
        np.testing.assert_allclose(out, expected[0].detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=what)
        finals = final if isinstance(final, tuple) else (final,)
        torch_finals = expected[1] if isinstance(expected[1], tuple) else (expected[1],)
        for a, b in zip(finals, torch_finals):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=what)


def test_module_db_includes_projections():
    """The samples above do cover projections (all of them failed before 0.9)."""
    samples = _module_db_samples("LSTM")[1]
    assert sum(1 for s in samples if s.constructor_input.kwargs.get("proj_size", 0)) >= 16
