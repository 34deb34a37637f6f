"""Agreement with torch.nn.RNN/LSTM/GRU (the functional kernels' outputs and
gradients, the models' outputs, states and gradients), and rnnext.from_torch /
to_torch. Skipped without torch."""

import itertools
import warnings

import numpy as np
import pytest
from helpers import (DTYPES, assert_close, backward, base, dtype_id, forward, grad_names, is_lstm, n_states,
                     shape_id, states_for, states_of, tolerance, torch_forward)

import rnnext as rx

torch = pytest.importorskip("torch")

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}
# The cells torch has (not the ONNX form of the GRU).
TORCH_CELLS = ["rnn", "rnn_relu", "lstm", "gru"]


def torch_layer(cell, I, H, dtype, bias=True, bidirectional=False, batch_first=True, seed=0):
    """A one-layer torch module of the cell, seeded."""
    torch.manual_seed(seed)
    kwargs = dict(bias=bias, batch_first=batch_first, bidirectional=bidirectional, dtype=TORCH_DTYPE[dtype])
    if base(cell) == "rnn":
        return torch.nn.RNN(I, H, nonlinearity="relu" if cell == "rnn_relu" else "tanh", **kwargs)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[base(cell)](I, H, **kwargs)


def torch_weights(module, suffix=""):
    """W_x, W_h (and b_x, b_h) of a module's layer 0 (or its reverse half), as NumPy copies."""
    w = {"W_x": module.get_parameter("weight_ih_l0" + suffix), "W_h": module.get_parameter("weight_hh_l0" + suffix)}
    if module.bias:
        w.update(b_x=module.get_parameter("bias_ih_l0" + suffix), b_h=module.get_parameter("bias_hh_l0" + suffix))
    return {k: v.detach().numpy().copy() for k, v in w.items()}


def torch_tolerance(cell, dtype):
    """The promised tolerance, for the Elman cell; for the gated ones two
    float32 computations, each within the promised tolerance of the truth."""
    if base(cell) == "rnn" or dtype == np.float64:
        return tolerance(dtype)
    return dict(rtol=2e-5, atol=2e-6)


def from_numpy(a):
    return None if a is None else torch.from_numpy(a)


# ---------------------------------------------------------------- functional kernels


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 100, 64, 64), (4, 100, 33, 70), (4, 50, 33, 70), (3, 7, 130, 257),
                                   (66, 5, 8, 5)], ids=shape_id)
def test_functional_matches_torch(rng, cell, dtype, shape):
    B, T, I, H = shape
    module = torch_layer(cell, I, H, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype)
    with torch.no_grad():
        expected = torch_forward(module, cell, torch.from_numpy(x), torch.from_numpy(h0), from_numpy(c0))
    got = forward(cell, x, torch_weights(module), h0, c0)
    tol = torch_tolerance(cell, dtype)
    assert got[0].dtype == dtype
    np.testing.assert_allclose(got[0], expected[0].numpy(), err_msg=f"{cell} h_seq", **tol)
    for name, g, e in zip(("h_n", "c_n"), got[1], expected[1]):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, e.numpy(), err_msg=f"{cell} {name}", **tol)


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("given", [True, False], ids=["states", "no_states"])
def test_lengths_and_reverse_match_torch(rng, cell, dtype, reverse, bias, given):
    """Variable lengths against torch's packed sequences; reverse against the
    backward half of a bidirectional module."""
    B, T, I, H = 6, 20, 9, 31
    module = torch_layer(cell, I, H, dtype, bias=bias, bidirectional=reverse)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0, c0 = states_for(rng, cell, (B, H), dtype, given)
    lengths = np.array([20, 3, 1, 17, 20, 8])
    with torch.no_grad():
        expected = torch_forward(module, cell, torch.from_numpy(x), from_numpy(h0), from_numpy(c0), lengths, reverse)
    w = torch_weights(module, "_reverse" if reverse else "")
    got = forward(cell, x, w, h0, c0, lengths=lengths, reverse=reverse)
    tol = torch_tolerance(cell, dtype)
    np.testing.assert_allclose(got[0], expected[0].numpy(), err_msg=f"{cell} h_seq", **tol)
    for name, g, e in zip(("h_n", "c_n"), got[1], expected[1]):
        np.testing.assert_allclose(g, e.numpy(), err_msg=f"{cell} {name}", **tol)


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("shape", [(5, 12, 7, 19), (2, 6, 9, 70), (67, 4, 6, 33)], ids=shape_id)
def test_functional_gradients_match_torch_autograd(rng, cell, reverse, shape):
    B, T, I, H = shape
    module = torch_layer(cell, I, H, np.float64, bidirectional=reverse)
    suffix = "_reverse" if reverse else ""
    x = torch.tensor(rng.standard_normal((B, T, I)), requires_grad=True)
    h0 = torch.tensor(rng.standard_normal((B, H)), requires_grad=True)
    c0 = torch.tensor(rng.standard_normal((B, H)), requires_grad=True) if is_lstm(cell) else None
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    lengths[1] = 1
    d_seq = rng.standard_normal((B, T, H))
    d_n = [rng.standard_normal((B, H)) for _ in range(n_states(cell))]
    h_seq, states = torch_forward(module, cell, x, h0, c0, lengths, reverse)
    loss = torch.sum(h_seq * torch.tensor(d_seq)) + sum(torch.sum(s * torch.tensor(d)) for s, d in zip(states, d_n))
    loss.backward()
    expected = {"x": x.grad, "h0": h0.grad, "c0": None if c0 is None else c0.grad}
    for name, tname in (("W_x", "weight_ih_l0"), ("W_h", "weight_hh_l0"), ("b_x", "bias_ih_l0"),
                        ("b_h", "bias_hh_l0")):
        expected[name] = module.get_parameter(tname + suffix).grad
    w = torch_weights(module, suffix)
    cache = forward(cell, x.detach().numpy(), w, h0.detach().numpy(), None if c0 is None else c0.detach().numpy(),
                    lengths=lengths, reverse=reverse, return_cache=True)[2]
    grads = backward(cell, cache, d_seq, *d_n)
    for name in grad_names(cell):
        np.testing.assert_allclose(grads[name], expected[name].numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{cell} d{name}")


# ---------------------------------------------------------------- from_torch, one layer


def torch_rnn(I, H, activation, dtype, bias=True, batch_first=True, seed=0):
    return torch_layer("rnn_relu" if activation == "relu" else "rnn", I, H, dtype, bias=bias, batch_first=batch_first,
                       seed=seed)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_from_torch(rng, activation, bias, batch_first, dtype):
    module = torch_rnn(5, 12, activation, dtype, bias=bias, batch_first=batch_first)
    head = torch.nn.Linear(12, 3, dtype=TORCH_DTYPE[dtype])
    model = rx.from_torch(module, head)
    assert model.config == dict(input_size=5, hidden_size=12, output_size=3, vocab_size=None, num_layers=1,
                                bidirectional=False,
                                activation=activation, bias=bias, dropout=0.0, batch_first=batch_first,
                                dtype=np.dtype(dtype).name)
    x = rng.standard_normal((4, 7, 5) if batch_first else (7, 4, 5)).astype(dtype)
    with torch.no_grad():
        h_seq, h_n = module(torch.from_numpy(x))
        y = head(h_seq)
    out, got_n = model(x)
    assert_close(out, y.numpy(), dtype, "out")
    assert_close(got_n, h_n.numpy(), dtype, "h_n")
    plain = rx.from_torch(module)
    assert plain.output_size is None
    assert_close(plain(x)[0], h_seq.numpy(), dtype, "h_seq")
    # The model owns copies: changing the torch module later changes nothing.
    with torch.no_grad():
        module.weight_hh_l0.zero_()
    assert model.W_h.any()


def test_from_torch_errors():
    with pytest.raises(TypeError, match="module: expected a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got Linear"):
        rx.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="got RNNCell"):
        rx.from_torch(torch.nn.RNNCell(3, 4))
    assert rx.from_torch(torch.nn.LSTM(3, 4, proj_size=2)).proj_size == 2  # refused before 0.9
    with pytest.raises(ValueError, match="float32 or float64"):
        rx.from_torch(torch.nn.RNN(3, 4, dtype=torch.float16))
    with pytest.raises(TypeError, match="head: expected a torch.nn.Linear"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.ReLU())
    with pytest.raises(ValueError, match="in_features = hidden_size \\* num_directions = 4, got 5"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match="in_features = hidden_size \\* num_directions = 8, got 4"):
        rx.from_torch(torch.nn.GRU(3, 4, bidirectional=True), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="head: expected the module's dtype"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(4, 2, dtype=torch.float64))


def test_head_without_bias(rng):
    module = torch.nn.RNN(3, 4)
    head = torch.nn.Linear(4, 2, bias=False)
    model = rx.from_torch(module, head)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        expected = head(module(torch.from_numpy(x).transpose(0, 1))[0]).transpose(0, 1)
    # torch.nn.RNN defaults to time-major; from_torch keeps that.
    assert not model.batch_first
    assert_close(model(x.transpose(1, 0, 2))[0].transpose(1, 0, 2), expected.numpy(), np.float32)


# ---------------------------------------------------------------- stacked and bidirectional RNN, LSTM, GRU


def torch_module(kind, I, H, **kwargs):
    return getattr(torch.nn, kind)(I, H, **kwargs)


def torch_run(module, head, x, lengths, state, batch_first):
    """torch's forward on packed sequences: (per-step out, many-to-one out, h_n, c_n, x leaf, state leaves)."""
    X = torch.tensor(x, requires_grad=True)
    leaves = tuple(torch.tensor(s, requires_grad=True) for s in states_of(state) if s is not None)
    h0 = None if not leaves else (leaves if len(leaves) == 2 else leaves[0])
    T = x.shape[1 if batch_first else 0]
    if lengths is None:  # no packing: every sequence is T long
        seq, h_n = module(X, h0)
        lengths = np.full(x.shape[0 if batch_first else 1], T)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(X, torch.tensor(lengths), batch_first=batch_first,
                                                         enforce_sorted=False)
        out, h_n = module(packed, h0)
        seq, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    h_n, c_n = states_of(h_n)
    H, D = module.hidden_size, 2 if module.bidirectional else 1
    top = h_n[-D:]  # the last layer's final states: forward at lengths-1, backward at step 0
    last = top[0] if D == 1 else torch.cat([top[0], top[1]], dim=-1)
    if head is not None:
        seq, last = head(seq), head(last)
        seq = seq * torch.tensor(np.arange(T)[:, None] < lengths[None, :] if not batch_first
                                 else np.arange(T)[None, :] < lengths[:, None])[..., None]
    return seq, last, h_n, c_n, X, leaves


def named_grads(module, head):
    grads = {name: p.grad for name, p in module.named_parameters()}
    out = {}
    for name, g in grads.items():
        kind, _, rest = name.partition("_l")
        out[{"weight_ih": "W_x", "weight_hh": "W_h", "bias_ih": "b_x", "bias_hh": "b_h"}[kind] + "_l" + rest] = g
    if head is not None:
        out.update(W_o=head.weight.grad, b_o=head.bias.grad)
    return out


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("with_head", [True, False], ids=["head", "nohead"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["bf", "tm"])
@pytest.mark.parametrize("packed", [True, False], ids=["lengths", "full"])
def test_stacked_models_match_torch(rng, kind, num_layers, bidirectional, with_head, batch_first, packed):
    """Outputs, final states and every gradient (parameters, h0/c0, x) on a
    variable-length batch, in float64, per step and many-to-one."""
    B, T, I, H, O = 5, 7, 3, 4, 3
    D = 2 if bidirectional else 1
    torch.manual_seed(int(rng.integers(1 << 30)))
    module = torch_module(kind, I, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first,
                          dtype=torch.float64)
    head = torch.nn.Linear(D * H, O, dtype=torch.float64) if with_head else None
    model = rx.from_torch(module, head)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    lengths = np.array([7, 1, 4, 7, 2]) if packed else None
    shape = (num_layers * D, B, H)
    state = (rng.standard_normal(shape), rng.standard_normal(shape)) if kind == "LSTM" else rng.standard_normal(shape)
    tol = dict(rtol=1e-9, atol=1e-12)

    seq, last, h_n, c_n, X, leaves = torch_run(module, head, x, lengths, state, batch_first)
    out, got_state = model(x, state, lengths=lengths)
    got_h, got_c = states_of(got_state)
    np.testing.assert_allclose(out, seq.detach().numpy(), **tol)
    np.testing.assert_allclose(got_h, h_n.detach().numpy(), **tol)
    if kind == "LSTM":
        np.testing.assert_allclose(got_c, c_n.detach().numpy(), **tol)
    got_last, _ = model(x, state, lengths=lengths, return_sequences=False)
    np.testing.assert_allclose(got_last, last.detach().numpy(), **tol)

    # Per step, mse over valid steps x outputs.
    bm = (lambda a: a) if batch_first else (lambda a: a.transpose(0, 1))
    target = rng.standard_normal(out.shape)
    valid = np.arange(T)[None] < (T if lengths is None else lengths[:, None])
    valid = np.broadcast_to(valid, (B, T))
    mask = torch.tensor(valid)
    expected = torch.nn.functional.mse_loss(bm(seq)[mask], bm(torch.tensor(target))[mask])
    expected.backward()
    loss, grads = model.loss_and_grads(x, target, h0=state, lengths=lengths)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    torch_grads = named_grads(module, head)
    assert list(grads) == list(model.params) and set(grads) == set(torch_grads)
    for name, g in torch_grads.items():
        np.testing.assert_allclose(grads[name], g.numpy(), err_msg=name, **tol)
    # The internal API gives the gradients with respect to x and the initial state too.
    value, cache_state, cache = model._forward_cache(x, state, lengths=lengths)
    from rnnext.train import mse_loss
    _, d_out, _ = mse_loss(bm(torch.tensor(value)).numpy(), bm(torch.tensor(target)).numpy(), valid)
    back = model._backward_cache(cache, bm(torch.tensor(d_out)).numpy())
    np.testing.assert_allclose(back.x, X.grad.numpy(), **tol)
    for got, leaf in zip(states_of(back.h0), leaves):
        np.testing.assert_allclose(got, leaf.grad.numpy(), **tol)

    # Many-to-one, cross-entropy over each sequence's last valid step (and the backward direction's first).
    for p in list(module.parameters()) + (list(head.parameters()) if head is not None else []):
        p.grad = None
    seq, last, *_ = torch_run(module, head, x, lengths, state, batch_first)
    classes = rng.integers(0, last.shape[-1], B)
    expected = torch.nn.functional.cross_entropy(last, torch.tensor(classes))
    expected.backward()
    with warnings.catch_warnings():  # headless models too: torch computes the same loss on raw states
        warnings.filterwarnings("ignore", "loss: cross_entropy on a model without a head", UserWarning)
        loss, grads = model.loss_and_grads(x, classes, loss="cross_entropy", h0=state, lengths=lengths)
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    for name, g in named_grads(module, head).items():
        np.testing.assert_allclose(grads[name], g.numpy(), err_msg=name, **tol)


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.filterwarnings("ignore:dropout option adds dropout after all but last:UserWarning")  # ours, as torch's
def test_torch_round_trips_are_exact(kind, num_layers, bidirectional, dtype):
    for bias, batch_first, dropout, with_head in itertools.product([True, False], [True, False], [0.0, 0.25],
                                                                   [True, False]):
        options = dict(num_layers=num_layers, bidirectional=bidirectional, bias=bias, batch_first=batch_first,
                       dropout=dropout, dtype=dtype)
        if kind == "RNN":
            options["nonlinearity"] = "relu" if bias else "tanh"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: dropout with one layer
            module = torch_module(kind, 3, 5, **options)
        D = 2 if bidirectional else 1
        head = torch.nn.Linear(D * 5, 2, dtype=dtype) if with_head else None
        what = f"{kind} {options} head={with_head}"
        model = rx.from_torch(module, head)
        assert type(model) is getattr(rx, kind), what
        assert model.config["dtype"] == ("float64" if dtype == torch.float64 else "float32")
        assert (model.num_layers, model.bidirectional, model.bias, model.batch_first, model.dropout) == \
            (num_layers, bidirectional, bias, batch_first, dropout), what
        back = model.to_torch()
        back_module, back_head = back if with_head else (back, None)
        assert type(back_module) is type(module), what
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
                     "proj_size"):
            assert getattr(back_module, attr) == getattr(module, attr), (what, attr)
        if kind == "RNN":
            assert back_module.nonlinearity == module.nonlinearity
        a, b = module.state_dict(), back_module.state_dict()
        assert list(a) == list(b), what
        for name in a:
            assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), (what, name)
        if with_head:
            assert back_head.weight.dtype == dtype
            assert torch.equal(back_head.weight, head.weight) and torch.equal(back_head.bias, head.bias)
        # And the other way: rnnext -> torch -> rnnext.
        again = rx.from_torch(back_module, back_head)
        assert again.config == model.config, what
        for k in model.params:
            assert again.params[k].tobytes() == model.params[k].tobytes(), (what, k)
        # The module computes what the model computes.
        x = np.random.default_rng(0).standard_normal((2, 4, 3) if batch_first else (4, 2, 3))
        back_module.eval()
        with torch.no_grad():
            seq, _ = back_module(torch.tensor(x, dtype=dtype))
            expected = back_head(seq) if with_head else seq
        np.testing.assert_allclose(model(x)[0], expected.numpy(),
                                   **(dict(rtol=1e-9, atol=1e-12) if dtype == torch.float64 else
                                      dict(rtol=1e-4, atol=1e-5)))


def test_to_torch_errors_and_head_without_bias():
    with pytest.raises(ValueError, match="to_torch: torch.nn.RNN has no 'sigmoid' activation"):
        rx.RNN(3, 4, activation="sigmoid").to_torch()
    with pytest.raises(ValueError, match="linear_before_reset=False"):
        rx.GRU(3, 4, linear_before_reset=False).to_torch()
    module, head = torch.nn.LSTM(3, 4, num_layers=2), torch.nn.Linear(4, 2, bias=False)
    model = rx.from_torch(module, head)
    assert not model.params["b_o"].any()
    _, back_head = model.to_torch()
    assert torch.equal(back_head.weight, head.weight) and not back_head.bias.any()
    assert isinstance(rx.LSTM(3, 4).to_torch(), torch.nn.LSTM)  # no head: the module alone
