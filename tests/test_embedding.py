"""Token inputs (API.md section 8): ``vocab_size=V`` puts an embedding table
``"embedding"`` (V, I) in front of layer 0, and every method reads integer
ids as ``x``. The parameter, outputs and gradients against
torch.nn.Embedding + module (+ Linear), gradients by finite differences,
from_torch's checks (the rest in use: test_embedding_uses.py)."""

import numpy as np
import pytest
from helpers import make, states_of

import rnnext as rx
from rnnext._tokens import embedding_grad

V, I, H = 11, 4, 5


def token_model(kind="LSTM", output_size=V, **kwargs):
    kwargs.setdefault("seed", 3)
    return make(kind, I, H, output_size, vocab_size=V, **kwargs)


def ids_of(rng, shape, vocab=V):
    return rng.integers(0, vocab, shape)


# ---------------------------------------------------------------- the parameter


def test_table_is_a_parameter_first_and_seeded(kind):
    model = token_model(kind)
    assert list(model.params)[0] == "embedding" and model.params["embedding"].shape == (V, I)
    assert model.config["vocab_size"] == V and "vocab_size=11" in repr(model)
    np.testing.assert_array_equal(token_model(kind).params["embedding"], model.params["embedding"])
    assert not np.array_equal(token_model(kind, seed=4).params["embedding"], model.params["embedding"])
    # N(0, 1), as torch.nn.Embedding: the mean and spread of a large table.
    table = make(kind, 64, 3, vocab_size=500, seed=0).params["embedding"]
    assert abs(table.mean()) < 0.02 and abs(table.std() - 1) < 0.02
    # Without vocab_size nothing changes: no table, the same seeded weights.
    plain = make(kind, I, H, V, seed=3)
    assert plain.config["vocab_size"] is None and "embedding" not in plain.params
    assert model.spec.param_count() == (len(model.params), sum(p.size for p in model.params.values()))


def test_assignment_and_state_dict(rng):
    model = token_model()
    table = rng.standard_normal((V, I))
    model.params["embedding"] = table
    np.testing.assert_array_equal(model.params["embedding"], table.astype(np.float32))
    with pytest.raises(ValueError, match=r"embedding: expected shape \(11, 4\)"):
        model.params["embedding"] = np.zeros((V, I + 1))
    clone = rx.LSTM.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    ids = ids_of(rng, (2, 6))
    np.testing.assert_array_equal(clone(ids)[0], model(ids)[0])


# ---------------------------------------------------------------- the forward, against torch

torch = pytest.importorskip("torch")
TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}


def torch_modules(kind, num_layers=1, bidirectional=False, batch_first=True, head=True, dtype="float64", seed=0):
    torch.manual_seed(seed)
    td = TORCH_DTYPE[dtype]
    module = getattr(torch.nn, kind)(I, H, num_layers=num_layers, bidirectional=bidirectional,
                                     batch_first=batch_first, dtype=td)
    embedding = torch.nn.Embedding(V, I, dtype=td)
    linear = torch.nn.Linear(H * (2 if bidirectional else 1), V, dtype=td) if head else None
    return embedding, module, linear


def torch_outputs(embedding, module, linear, ids, lengths, batch_first):
    """(out, h_n) of torch's Embedding -> module (packed with lengths) -> Linear,
    out zero past each length (as rnnext writes it)."""
    x = embedding(torch.from_numpy(ids))
    T = ids.shape[1 if batch_first else 0]
    if lengths is None:
        out, final = module(x)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=batch_first,
                                                         enforce_sorted=False)
        out, final = module(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    if linear is not None:
        out = linear(out)
        if lengths is not None:
            mask = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]
            out = out * (mask if batch_first else mask.T)[..., None]
    return out, final


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("head", [True, False])
def test_outputs_match_torch_and_round_trip(rng, kind, num_layers, bidirectional, batch_first, with_lengths, head):
    embedding, module, linear = torch_modules(kind, num_layers, bidirectional, batch_first, head)
    model = rx.from_torch(module, linear, embedding=embedding)
    assert model.vocab_size == V
    B, T = 4, 7
    ids = ids_of(rng, (B, T) if batch_first else (T, B))
    lengths = np.array([7, 3, 1, 5]) if with_lengths else None
    with torch.no_grad():
        expected, final = torch_outputs(embedding, module, linear, ids, lengths, batch_first)
    out, h_n = model(ids, lengths=lengths)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10, atol=1e-12)
    for got, want in zip(states_of(h_n), final if kind == "LSTM" else (final,)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.predict(ids, lengths=lengths, batch_size=3), out, rtol=0, atol=0)
    # to_torch gives the modules back in the order they apply, exactly.
    back = model.to_torch()
    assert isinstance(back, tuple) and len(back) == (3 if head else 2)
    assert isinstance(back[0], torch.nn.Embedding) and isinstance(back[1], type(module))
    torch.testing.assert_close(back[0].weight, embedding.weight, rtol=0, atol=0)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(back[1].state_dict()[name], value, rtol=0, atol=0)
    if head:
        torch.testing.assert_close(back[2].weight, linear.weight, rtol=0, atol=0)


def test_unbatched_ids_and_float32(rng, kind):
    embedding, module, linear = torch_modules(kind, dtype="float32")
    model = rx.from_torch(module, linear, embedding=embedding)
    assert model.dtype == np.float32
    ids = ids_of(rng, (9,))
    out, h_n = model(ids)
    assert out.shape == (9, V) and out.dtype == np.float32
    with torch.no_grad():
        expected, _ = torch_outputs(embedding, module, linear, ids[None], None, True)
    np.testing.assert_allclose(out, expected.numpy()[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out, model(ids[None])[0][0])
    last, _ = model(ids, return_sequences=False)
    np.testing.assert_array_equal(last, out[-1])
    for dtype in (np.int8, np.uint16, np.int32):  # any integer dtype
        np.testing.assert_array_equal(model(ids.astype(dtype))[0], out)


def test_padding_past_lengths_may_hold_anything(rng):
    model = token_model("GRU", dtype="float64")
    ids = ids_of(rng, (3, 6))
    lengths = np.array([2, 6, 4])
    padded = ids.copy()
    for b, n in enumerate(lengths):
        padded[b, n:] = [-7, 10**6, V][b % 3]
    np.testing.assert_array_equal(model(padded, lengths=lengths)[0], model(ids, lengths=lengths)[0])
    target = ids_of(rng, (3, 6))
    a = model.loss_and_grads(padded, target, loss="cross_entropy", lengths=lengths)
    b = model.loss_and_grads(ids, target, loss="cross_entropy", lengths=lengths)
    assert a[0] == b[0]
    for key in a[1]:
        np.testing.assert_array_equal(a[1][key], b[1][key], err_msg=key)


# ---------------------------------------------------------------- gradients


def test_table_gradient_by_finite_differences(rng, kind):
    model = make(kind, 3, 4, 5, vocab_size=6, num_layers=2, dtype="float64", seed=1)
    ids = rng.integers(0, 5, (3, 5))  # id 5 never appears: its row's gradient is exactly zero
    lengths = np.array([5, 2, 4])
    target = rng.integers(0, 5, (3, 5))
    _, grads = model.loss_and_grads(ids, target, loss="cross_entropy", lengths=lengths)
    assert np.all(grads["embedding"][5] == 0)
    table = np.array(model.params["embedding"])
    eps = 1e-6
    numeric = np.zeros_like(table)
    for v in range(6):
        for i in range(3):
            for sign in (1, -1):
                shifted = table.copy()
                shifted[v, i] += sign * eps
                model.params["embedding"] = shifted
                numeric[v, i] += sign * model.loss_and_grads(ids, target, loss="cross_entropy",
                                                             lengths=lengths)[0] / (2 * eps)
    np.testing.assert_allclose(grads["embedding"], numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("batch_first", [True, False])
def test_gradients_match_torch_autograd(rng, kind, batch_first):
    embedding, module, linear = torch_modules(kind, 2, True, batch_first)
    model = rx.from_torch(module, linear, embedding=embedding)
    B, T = 4, 6
    ids = ids_of(rng, (B, T) if batch_first else (T, B))
    lengths = np.array([6, 2, 5, 3])
    target = ids_of(rng, ids.shape)
    value, grads = model.loss_and_grads(ids, target, loss="cross_entropy", lengths=lengths)
    out, _ = torch_outputs(embedding, module, linear, ids, lengths, batch_first)
    mask = np.arange(T)[None, :] < lengths[:, None]
    mask = mask if batch_first else mask.T
    expected = torch.nn.functional.cross_entropy(out[torch.from_numpy(mask)],
                                                 torch.from_numpy(target[mask]))
    expected.backward()
    assert abs(value - expected.item()) < 1e-10
    np.testing.assert_allclose(grads["embedding"], embedding.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["W_h_l1_reverse"], module.weight_hh_l1_reverse.grad.numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grads["W_o"], linear.weight.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_scatter_add_equals_add_at(rng):
    ids = rng.integers(0, 7, (5, 9))
    dx = rng.standard_normal((5, 9, 3)).astype(np.float32)
    expected = np.zeros((7, 3), np.float64)
    np.add.at(expected, ids.reshape(-1), dx.reshape(-1, 3).astype(np.float64))
    got = embedding_grad(ids, dx, 7)
    assert got.dtype == np.float32 and got.shape == (7, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert embedding_grad(np.zeros((0, 4), np.int64), np.zeros((0, 4, 3)), 7).shape == (7, 3)


def test_backward_cache_with_ids(rng):
    model = token_model("RNN", dtype="float64")
    ids = ids_of(rng, (2, 5))
    out, _, cache = model.forward_cache(ids)
    grads = model.backward_cache(cache, np.ones_like(out))
    assert list(grads.params) == list(model.params)
    assert grads.x.shape == (2, 5, I)  # with respect to the looked-up features
    np.testing.assert_allclose(grads.params["embedding"], embedding_grad(ids, grads.x, V))


# ---------------------------------------------------------------- errors


def test_from_torch_embedding_errors():
    embedding, module, linear = torch_modules("LSTM")
    with pytest.raises(TypeError, match="embedding: expected a torch.nn.Embedding, got Linear"):
        rx.from_torch(module, linear, embedding=linear)
    with pytest.raises(ValueError, match=r"embedding: expected embedding_dim = the module's input_size = 4, got 5"):
        rx.from_torch(module, embedding=torch.nn.Embedding(V, I + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="embedding: expected the module's dtype torch.float64, got torch.float32"):
        rx.from_torch(module, embedding=torch.nn.Embedding(V, I))
    for option in (dict(padding_idx=0), dict(max_norm=1.0), dict(scale_grad_by_freq=True)):
        with pytest.raises(ValueError, match=f"embedding: {next(iter(option))}=.* is not supported"):
            rx.from_torch(module, embedding=torch.nn.Embedding(V, I, dtype=torch.float64, **option))
    sparse = torch.nn.Embedding(V, I, dtype=torch.float64, sparse=True)  # only the gradient's storage differs
    assert rx.from_torch(module, embedding=sparse).config["vocab_size"] == V
