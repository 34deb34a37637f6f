"""Arrays from any producer (API.md section 9): NumPy in every real dtype,
ml_dtypes' bfloat16, PyTorch tensors (with or without requires_grad, float16,
bfloat16, non-contiguous), JAX arrays, objects with only ``__array__`` or only
``__dlpack__``; each entry point gives what it gives for the same values as a
NumPy array, bit for bit, and every refusal is a TypeError naming the argument.
"""

import numpy as np
import pytest

import rnnext as rx
from rnnext import functional as F
from rnnext._arrays import as_array

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_enable_x64", True)  # int64 ids and lengths stay int64
except ImportError:  # pragma: no cover - jax is in the test extra
    jax = None


class ArrayOnly:
    """A producer with nothing but ``__array__`` (an array-like library)."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class DLPackOnly:
    """A producer with nothing but the DLPack protocol."""

    def __init__(self, a, device=(1, 0)):
        self._a, self._device = a, device

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


def _bfloat16(a):
    return a.astype(ml_dtypes.bfloat16)


# name -> (make from a float array, the float32 values the producer holds)
FLOAT_PRODUCERS = {
    "numpy_float16": (lambda a: a.astype(np.float16), lambda a: a.astype(np.float16).astype(np.float32)),
    "ml_dtypes_bfloat16": (_bfloat16, lambda a: _bfloat16(a).astype(np.float32)),
    "torch": (lambda a: torch.from_numpy(a.copy()), None),
    "torch_requires_grad": (lambda a: torch.from_numpy(a.copy()).requires_grad_(), None),
    "torch_float16": (lambda a: torch.from_numpy(a.copy()).half(), lambda a: a.astype(np.float16).astype(np.float32)),
    "torch_bfloat16": (lambda a: torch.from_numpy(a.copy()).bfloat16(), lambda a: _bfloat16(a).astype(np.float32)),
    "torch_bfloat16_requires_grad": (lambda a: torch.from_numpy(a.copy()).bfloat16().requires_grad_(),
                                     lambda a: _bfloat16(a).astype(np.float32)),
    "torch_non_contiguous": (lambda a: torch.from_numpy(np.repeat(a, 2, axis=-1))[..., ::2], None),
    "array_only": (lambda a: ArrayOnly(a.copy()), None),
    "dlpack_only": (lambda a: DLPackOnly(a.copy()), None),
    "list": (lambda a: a.tolist(), None),
}
if jax is not None:
    FLOAT_PRODUCERS.update({
        "jax": (lambda a: jnp.asarray(a), None),
        "jax_float16": (lambda a: jnp.asarray(a, jnp.float16), lambda a: a.astype(np.float16).astype(np.float32)),
        "jax_bfloat16": (lambda a: jnp.asarray(a, jnp.bfloat16), lambda a: _bfloat16(a).astype(np.float32)),
    })
# Producers that hold the float32 values exactly (weights of the functional
# kernels, whose dtype is the precision: half precision is refused there).
EXACT = [name for name, (_, held) in FLOAT_PRODUCERS.items() if held is None and name != "list"]  # a list has no dtype

INT_PRODUCERS = {
    "numpy_int32": lambda a: a.astype(np.int32),
    "torch_int64": lambda a: torch.from_numpy(a.astype(np.int64)),
    "torch_int32": lambda a: torch.from_numpy(a.astype(np.int32)),
    "dlpack_only": lambda a: DLPackOnly(a.astype(np.int64)),
    "list": lambda a: a.tolist(),
}
if jax is not None:
    INT_PRODUCERS["jax_int32"] = lambda a: jnp.asarray(a, jnp.int32)


def produce(name, a):
    make, held = FLOAT_PRODUCERS[name]
    return make(a), (a if held is None else held(a))


RNG = np.random.default_rng(0)
B, T, I, H, O = 3, 6, 4, 5, 2
X = RNG.standard_normal((B, T, I)).astype(np.float32)
LENGTHS = np.array([6, 2, 4])


def same(got, want):
    """Bitwise equality of (nested tuples / dicts of) arrays."""
    if isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            same(got[k], want[k])
    elif isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w)
    else:
        np.testing.assert_array_equal(got, want, strict=True)


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("producer", list(FLOAT_PRODUCERS))
@pytest.mark.parametrize("kind,layers,dtype", [("RNN", 1, np.float32), ("LSTM", 2, np.float32),
                                               ("GRU", 1, np.float64)])
def test_model_call_reads_every_producer(producer, kind, layers, dtype):
    model = getattr(rx, kind)(I, H, O, num_layers=layers, seed=1, dtype=dtype)
    x, held = produce(producer, X)
    h = RNG.standard_normal((layers, B, H)).astype(np.float32)
    h0, h0_held = produce(producer, h)
    if kind == "LSTM":
        c0, c0_held = produce(producer, h + 1)
        h0, h0_held = (h0, c0), (h0_held, c0_held)
    same(model(x, h0), model(held, h0_held))
    out = model(x, lengths=LENGTHS)
    assert out[0].dtype == dtype
    same(out, model(held, lengths=LENGTHS))
    same(model.predict(x, batch_size=2), model.predict(held, batch_size=2))
    x_t, x_t_held = produce(producer, X[:, 0])
    same(model.step(x_t, h0), model.step(x_t_held, h0_held))


@pytest.mark.parametrize("producer", list(INT_PRODUCERS))
def test_lengths_and_ids_from_every_integer_producer(producer):
    make = INT_PRODUCERS[producer]
    model = rx.LSTM(I, H, O, seed=1)
    same(model(X, lengths=make(LENGTHS)), model(X, lengths=LENGTHS))
    same(model.predict(X, lengths=make(LENGTHS), batch_size=2), model.predict(X, lengths=LENGTHS, batch_size=2))
    same(F.rnn(X, model.W_x[:H], model.W_h[:H, :H], lengths=make(LENGTHS)),
         F.rnn(X, model.W_x[:H], model.W_h[:H, :H], lengths=LENGTHS))
    tokens = rx.GRU(I, H, 7, vocab_size=7, seed=2)
    ids = RNG.integers(0, 7, (B, T))
    same(tokens(make(ids), lengths=make(LENGTHS)), tokens(ids, lengths=LENGTHS))
    same(tokens.step(make(ids[:, 0])), tokens.step(ids[:, 0]))
    y = RNG.integers(0, 7, (B, T))
    same(tokens.loss_and_grads(make(ids), make(y), loss="cross_entropy", lengths=make(LENGTHS)),
         tokens.loss_and_grads(ids, y, loss="cross_entropy", lengths=LENGTHS))
    same(tokens.generate(make(ids[:, :2]), 3, mode="greedy"), tokens.generate(ids[:, :2], 3, mode="greedy"))


@pytest.mark.parametrize("producer", ["torch_requires_grad", "torch_bfloat16", "ml_dtypes_bfloat16", "jax_bfloat16"])
def test_training_reads_every_producer(producer):
    if producer not in FLOAT_PRODUCERS:
        pytest.skip("jax is not installed")
    x, held = produce(producer, X)
    target = RNG.standard_normal((B, T, O)).astype(np.float32)
    y, y_held = produce(producer, target)
    one, two = (rx.LSTM(I, H, O, seed=3) for _ in range(2))
    same(one.loss_and_grads(x, y, lengths=LENGTHS), two.loss_and_grads(held, y_held, lengths=LENGTHS))
    kwargs = dict(loss="mse", epochs=2, batch_size=2, seed=0, progress=False)
    same(one.fit(x, y, validation_data=(x, y), **kwargs), two.fit(held, y_held, validation_data=(held, y_held), **kwargs))
    same(one.evaluate(x, y, loss="mse"), two.evaluate(held, y_held, loss="mse"))
    _, _, cache = one.forward_cache(x)
    d_out, d_out_held = produce(producer, target)
    same(one.backward_cache(cache, d_out), one.backward_cache(cache, d_out_held))
    grads = {k: produce(producer, np.ones(v.shape, np.float32))[0] for k, v in one.params.items()}
    held_grads = {k: produce(producer, np.ones(v.shape, np.float32))[1] for k, v in one.params.items()}
    same(rx.optim.SGD(0.1).step(one.params, grads), rx.optim.SGD(0.1).step(one.params, held_grads))


@pytest.mark.parametrize("producer", list(FLOAT_PRODUCERS))
def test_parameters_from_every_producer_become_the_models_dtype(producer):
    model = rx.GRU(I, H, seed=4, dtype=np.float64)
    W = RNG.standard_normal((3 * H, H)).astype(np.float32)
    value, held = produce(producer, W)
    model.params["W_h_l0"] = value
    assert model.W_h.dtype == np.float64
    same(model.W_h, held.astype(np.float64))
    state = {k: produce(producer, v.astype(np.float32))[0] for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    same(model.W_h, held.astype(np.float64))


@pytest.mark.parametrize("producer", ["torch_requires_grad", "torch_bfloat16", "numpy_float16", "dlpack_only"])
def test_seq2seq_and_quantized_models_read_every_producer(producer):
    encoder, decoder = rx.GRU(I, H, seed=5), rx.GRU(3, H, 3, seed=6)
    s2s = rx.Seq2Seq(encoder, decoder)
    src, held = produce(producer, X)
    tgt = RNG.integers(0, 3, (B, 4))
    same(s2s.loss_and_grads(src, torch.from_numpy(tgt)), s2s.loss_and_grads(held, tgt))
    same(s2s.translate(src, 4, bos=0, eos=2), s2s.translate(held, 4, bos=0, eos=2))
    quantized = rx.LSTM(I, H, O, seed=7).quantize("int8")
    same(quantized(src), quantized(held))
    continuous = rx.RNN(I, H, I, seed=8)
    same(continuous.generate(src, 3), continuous.generate(held, 3))


# ---------------------------------------------------------------- functional kernels


@pytest.mark.parametrize("weights", EXACT)
@pytest.mark.parametrize("data", list(FLOAT_PRODUCERS))
@pytest.mark.parametrize("cell,G", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_functional_kernels_read_every_producer(weights, data, cell, G):
    W = [RNG.standard_normal(s).astype(np.float32) * 0.3 for s in ((G * H, I), (G * H, H), (G * H,), (G * H,))]
    forward, backward = getattr(F, cell), getattr(F, cell + "_backward")
    x, held = produce(data, X)
    h0, h0_held = produce(data, np.ones((B, H), np.float32))
    got = forward(x, *[produce(weights, w)[0] for w in W], h0, lengths=LENGTHS, return_cache=True)
    want = forward(held, *W, h0_held, lengths=LENGTHS, return_cache=True)
    same(got[:2], want[:2])
    dh, dh_held = produce(data, np.ones((B, T, H), np.float32))
    same(backward(got[2], dh_seq=dh), backward(want[2], dh_seq=dh_held))


@pytest.mark.parametrize("make,dtype", [(lambda w: w.astype(np.float16), "float16"),
                                        (_bfloat16, "bfloat16"),
                                        (lambda w: torch.from_numpy(w).bfloat16(), "bfloat16")])
def test_functional_half_precision_weights_are_refused_by_name(make, dtype):
    W = np.zeros((H, I), np.float32)
    with pytest.raises(TypeError, match=f"W_x: expected float32 or float64 weights, got dtype {dtype}"):
        F.rnn(X, make(W), np.zeros((H, H), np.float32))


# ---------------------------------------------------------------- no copies


@pytest.mark.parametrize("make", [lambda a: torch.from_numpy(a), lambda a: torch.from_numpy(a).requires_grad_(),
                                  lambda a: DLPackOnly(a), lambda a: ArrayOnly(a)])
def test_float_producers_are_read_in_place(make):
    a = X.copy()
    assert np.shares_memory(as_array(make(a), "x"), a)


def test_jax_arrays_are_read_in_place():
    if jax is None:
        pytest.skip("jax is not installed")
    a = jnp.asarray(X)
    assert np.shares_memory(as_array(a, "x"), np.asarray(a))


def test_inputs_are_never_modified_and_outputs_never_alias_them():
    t = torch.from_numpy(X.copy()).requires_grad_()
    model = rx.RNN(I, I, seed=9)
    out, _ = model(t)
    assert not np.shares_memory(out, t.detach().numpy())
    np.testing.assert_array_equal(t.detach().numpy(), X)
    assert t.grad is None and t.requires_grad  # the graph is torch's: rnnext only read the data


# ---------------------------------------------------------------- refusals


class FailingArray:
    def __init__(self, shape):
        pass

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("no host copy")


# (what, make from a shape, the message after "<argument>: ")
REFUSED = [
    ("complex torch", lambda s: torch.zeros(s, dtype=torch.complex64), r".*complex64"),
    ("meta tensor", lambda s: torch.empty(s, device="meta"), r"a torch tensor on device 'meta'"),
    ("sparse tensor", lambda s: torch.zeros(s).to_sparse(), r"a torch.sparse_coo torch tensor"),
    ("CUDA DLPack", lambda s: DLPackOnly(np.zeros(s, np.float32), device=(2, 0)), r"a DLPack tensor on device type 2"),
    ("failing __array__", FailingArray, r"expected an array of real numbers, got FailingArray \(no host copy\)"),
    ("strings", lambda s: np.full(s, "a"), r".*dtype <U1"),
]


@pytest.mark.parametrize("what,make,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refusals_name_the_argument(what, make, message):
    model = rx.LSTM(I, H, seed=10)
    W_x, W_h = np.zeros((H, I), np.float32), np.zeros((H, H), np.float32)
    for call in (model, model.predict, lambda v: F.rnn(v, W_x, W_h)):
        with pytest.raises(TypeError, match="x: " + message):
            call(make((B, T, I)))
    with pytest.raises(TypeError, match="x_t: " + message):
        model.step(make((B, I)))


@pytest.mark.parametrize("argument,call", [
    ("h0", lambda m, bad: m(X, bad)),
    ("lengths", lambda m, bad: m(X, lengths=bad)),
    ("W_h_l0", lambda m, bad: m.params.__setitem__("W_h_l0", bad)),
    ("target", lambda m, bad: m.loss_and_grads(X, bad)),
    ("dh_seq", lambda m, bad: F.rnn_backward(F.rnn(X, m.W_x, m.W_h, return_cache=True)[2], dh_seq=bad)),
])
def test_refusals_name_every_argument(argument, call):
    model = rx.RNN(I, H, seed=11)
    with pytest.raises(TypeError, match=rf"{argument}: a torch tensor on device 'meta'"):
        call(model, torch.empty((1, B, H), device="meta"))
    with pytest.raises(TypeError, match=rf"{argument}: a DLPack tensor on device type 2"):
        call(model, DLPackOnly(np.zeros((1, B, H), np.float32), device=(2, 0)))


def test_float_lengths_from_torch_are_refused_by_name():
    with pytest.raises(TypeError, match="lengths: expected an integer array, got dtype float32"):
        rx.RNN(I, H)(X, lengths=torch.ones(B))


def test_dask_reads_bfloat16_blocks():
    da = pytest.importorskip("dask.array")
    pytest.importorskip("distributed")
    import dask

    from rnnext import dask as rxd

    model = rx.GRU(I, H, O, seed=12)
    with dask.config.set(scheduler="synchronous"):
        got = rxd.predict(model, da.from_array(_bfloat16(X), chunks=(2, -1, -1))).compute()
    same(got, model(_bfloat16(X).astype(np.float32))[0])


def test_sklearn_estimators_read_torch_tensors():
    pytest.importorskip("sklearn")
    from rnnext.sklearn import RNNClassifier, RNNRegressor

    y_class = np.array([0, 1, 0])
    kwargs = dict(hidden_size=4, epochs=2, seed=0)
    one, two = RNNClassifier(**kwargs), RNNClassifier(**kwargs)
    one.fit(torch.from_numpy(X).requires_grad_(), torch.from_numpy(y_class))
    two.fit(X, y_class)
    same(one.predict_proba(torch.from_numpy(X).bfloat16()), two.predict_proba(_bfloat16(X).astype(np.float32)))
    target = RNG.standard_normal((B, 2)).astype(np.float32)
    regressor = RNNRegressor(**kwargs).fit(X, torch.from_numpy(target).requires_grad_())
    same(regressor.predict(DLPackOnly(X)), RNNRegressor(**kwargs).fit(X, target).predict(X))
