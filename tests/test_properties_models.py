"""Property tests (hypothesis) of the models: random configurations
(layers, directions, heads, biases, dtypes, layouts), inputs, states and
lengths for every model class, forward and ``loss_and_grads``, held to a
stack of ``rnnext.reference``'s layers (helpers.stacked_reference), to
central finite differences of a reference-computed loss and to torch autograd
(skipped without torch). The properties, profiles and example counts are
those of test_properties.py (the functional kernels)."""

import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import (  # noqa: E402
    ACTIVATIONS, DATA_LAYOUTS, Case, assert_close, assert_identical, assert_no_alias, assert_unchanged,
    assert_zero_past_lengths, batch_major, batch_sizes, data_dtypes, data_values, dirty_padding, examples,
    grad_scale, kind_of, lengths_for, numeric_gradient, params64, relayout, snapshot, stacked_reference, torch_layer,
    weight_dtypes, with_threads)

import rnnext as rx  # noqa: E402

CELLS = ["rnn", "lstm", "gru"]  # "gru" draws linear_before_reset, "rnn" its activation


# ---------------------------------------------------------------- models


@st.composite
def model_cases(draw, cell, small=False, dtype=None, nonempty=False):
    """A model (any configuration) and its call's arguments, in chosen layouts
    and dtypes, plus their contiguous copies. ``nonempty``: B, T >= 1."""
    if small:
        B, T, I, H = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
        O = draw(st.none() | st.integers(1, 3))
    else:
        B, T, I = draw(batch_sizes(small=4)), draw(st.integers(0, 8)), draw(st.integers(1, 6))
        if nonempty:
            B, T = max(B, 1), max(T, 1)
        H = draw(st.sampled_from([1, 3, 16, 17, 33]) | st.integers(1, 20))
        O = draw(st.none() | st.integers(1, 5))
    unbatched = B == 1 and draw(st.booleans())
    config = dict(output_size=O, num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()),
                  batch_first=draw(st.booleans()), dtype=np.dtype(draw(weight_dtypes) if dtype is None else dtype).name)
    if cell == "rnn":
        config["activation"] = draw(st.sampled_from(ACTIVATIONS))
    # relu's kink at 0 (see functional_cases): biases keep pre-activations away from it.
    config["bias"] = (small and config.get("activation") == "relu") or draw(st.booleans())
    if cell == "gru":
        config["linear_before_reset"] = draw(st.booleans())
    model = getattr(rx, kind_of(cell))(I, H, seed=draw(st.integers(0, 2**16)), **config)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x_shape = (T, I) if unbatched else ((B, T, I) if config["batch_first"] else (T, B, I))
    x = data_values(rng, x_shape, draw(data_dtypes(np.dtype(config["dtype"]).type)))
    rows = config["num_layers"] * (2 if config["bidirectional"] else 1)
    state_shape = (rows, H) if unbatched else (rows, B, H)
    h0 = None
    if draw(st.booleans()):
        state_dtype = draw(data_dtypes(np.dtype(config["dtype"]).type))
        h0 = data_values(rng, state_shape, state_dtype, 0.5)
        if cell == "lstm":
            h0 = (h0, data_values(rng, state_shape, state_dtype, 0.5))
    lengths = draw(lengths_for(B, T, allow=not unbatched))
    layout = lambda a: relayout(a, draw(st.sampled_from(DATA_LAYOUTS)))  # noqa: E731
    laid = dict(x=layout(x), lengths=None if lengths is None else layout(lengths),
                h0=None if h0 is None else (tuple(map(layout, h0)) if cell == "lstm" else layout(h0)))
    return Case(cell=cell, model=model, B=B, T=T, I=I, H=H, O=O, unbatched=unbatched, seed=seed, rng=rng,
                plain=dict(x=x, h0=h0, lengths=lengths), laid=laid)


def model_reference(model, params, x, h0, lengths, return_sequences):
    """helpers.stacked_reference on ``params`` (float64 arrays): (out, h_n, c_n)."""
    return stacked_reference(model, x, h0, lengths, return_sequences, params=params)


def model_outputs(result):
    out, h_n = result
    return (out,) + (tuple(h_n) if isinstance(h_n, tuple) else (h_n,))


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_model_forward(threads, cell, data):
    case = data.draw(model_cases(cell))
    model, laid, plain = case["model"], case["laid"], case["plain"]
    return_sequences = data.draw(st.booleans(), label="return_sequences")
    params_before = model.state_dict()
    before = snapshot(laid)

    call = lambda a: model(a["x"], a["h0"], lengths=a["lengths"], return_sequences=return_sequences)  # noqa: E731
    one = model_outputs(with_threads(1, call, laid))
    two = model_outputs(with_threads(2, call, laid))
    assert_identical(one, two, "1 thread vs 2 threads")
    assert_identical(model_outputs(call(plain)), two, "layouts vs contiguous copies")
    assert_unchanged(before, laid)
    assert_unchanged(params_before, model.state_dict(), "params")
    assert_no_alias(two, (laid, dict(model.params)))

    dtype = model.dtype.type
    for got in two:
        assert got.dtype == dtype
    batch_first, unbatched = model.batch_first, case["unbatched"]
    if plain["lengths"] is not None:  # steps past a length are never read
        dirty = dirty_padding(plain["x"], plain["lengths"], batch_first, unbatched)
        assert_identical(model_outputs(call(dict(plain, x=dirty))), two, "garbage in the padding")
    if return_sequences:
        assert_zero_past_lengths(two[0], plain["lengths"], batch_first, unbatched, "out")
        # predict, also a few sequences at a time: rows do not depend on their batch.
        batch_size = data.draw(st.none() | st.integers(1, max(1, case["B"])), label="predict batch_size")
        assert_identical(model.predict(laid["x"], lengths=laid["lengths"], batch_size=batch_size),
                         model(plain["x"], lengths=plain["lengths"])[0], "predict vs __call__")

    out, h_n, c_n = model_reference(model, params64(model), plain["x"], plain["h0"], plain["lengths"],
                                    return_sequences)
    assert_close(two[0], out, dtype, "out")
    assert_close(two[1], h_n, dtype, "h_n")
    if cell == "lstm":
        assert_close(two[2], c_n, dtype, "c_n")


@st.composite
def targets_for(draw, case, loss):
    """A target of loss ``loss`` for the case's model: per step or last step;
    padding filled with values the loss must ignore (NaN, out-of-range ids)."""
    model, rng, B, T, unbatched = case["model"], case["rng"], case["B"], case["T"], case["unbatched"]
    O = model.output_size or (2 if model.bidirectional else 1) * model.hidden_size
    per_step = draw(st.booleans())
    if per_step:
        lead = (T,) if unbatched else ((B, T) if model.batch_first else (T, B))
    else:
        lead = () if unbatched else (B,)
    if loss == "mse":
        target = data_values(rng, lead + (O,), draw(st.sampled_from([np.float32, np.float64, np.int32])))
    else:
        target = rng.integers(0, O, lead).astype(draw(st.sampled_from([np.int64, np.int32, np.uint8])))
    lengths = case["plain"]["lengths"]
    if per_step and lengths is not None:
        bm = batch_major(target, model.batch_first, unbatched)
        for b, n in enumerate(np.asarray(lengths)):
            if loss == "mse" and target.dtype.kind == "f":
                bm[b, n:] = np.nan
            elif loss == "cross_entropy" and target.dtype.kind == "i":
                bm[b, n:] = -7
    # Explicit where the rank cannot tell (unbatched), else inferred or explicit.
    explicit = per_step if unbatched or draw(st.booleans()) else None
    return target, per_step, explicit


def reference_loss(model, params, case, target, loss, per_step):
    """The loss by the float64 reference: mean over counted elements."""
    plain = case["plain"]
    out, _, _ = model_reference(model, params, plain["x"], plain["h0"], plain["lengths"], per_step)
    lengths = plain["lengths"]
    t = np.asarray(target)
    if per_step:
        out = batch_major(out, model.batch_first, case["unbatched"])
        t = batch_major(t, model.batch_first, case["unbatched"])
        mask = np.ones(out.shape[:2], bool) if lengths is None else \
            np.arange(out.shape[1])[None, :] < np.asarray(lengths).reshape(-1, 1)
    else:
        out, t = np.atleast_2d(out), t.reshape((-1,) + t.shape[t.ndim - (1 if loss == "mse" else 0):])
        mask = np.ones(out.shape[:1], bool)
    with np.errstate(all="ignore"):
        if loss == "mse":
            diff = np.where(mask[..., None], out - np.asarray(t, np.float64).astype(model.dtype), 0.0)
            return float(np.sum(diff ** 2) / (mask.sum() * out.shape[-1]))
        ids = np.where(mask, t, 0).astype(np.int64)
        shifted = out - out.max(axis=-1, keepdims=True)
        nll = np.log(np.exp(shifted).sum(axis=-1)) - np.take_along_axis(shifted, ids[..., None], -1)[..., 0]
        return float(np.sum(np.where(mask, nll, 0.0)) / mask.sum())


def torch_model_loss(torch, model, params, case, target, loss, per_step):
    """The model's loss in torch, float64, on leaf tensors ``params``."""
    cell = type(model).__name__.lower()
    cast = lambda v: np.asarray(v).astype(model.dtype).astype(np.float64)  # noqa: E731
    plain, unbatched = case["plain"], case["unbatched"]
    L, D, H = model.num_layers, 2 if model.bidirectional else 1, model.hidden_size
    x = cast(plain["x"])
    x = batch_major(x, model.batch_first, unbatched)
    B, T = x.shape[:2]
    h0 = plain["h0"]
    h0, c0 = (h0 if cell == "lstm" else (h0, None)) if h0 is not None else (None, None)
    state = lambda s: torch.zeros((L * D, B, H), dtype=torch.float64) if s is None else \
        torch.tensor(cast(s).reshape(L * D, B, H))  # noqa: E731
    h0, c0 = state(h0), state(c0)
    lengths = np.full(B, T) if plain["lengths"] is None else np.asarray(plain["lengths"]).astype(np.int64)
    zeros = torch.zeros(model.params["W_h_l0"].shape[0], dtype=torch.float64)
    inputs = torch.tensor(np.ascontiguousarray(x))
    finals = []
    for layer in range(L):
        outputs = []
        for d in range(D):
            k = layer * D + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            h_seq, h, _ = torch_layer(torch, cell, inputs, params["W_x" + sfx], params["W_h" + sfx],
                                      params.get("b_x" + sfx, zeros), params.get("b_h" + sfx, zeros), h0[k],
                                      c0[k] if cell == "lstm" else None, lengths, d == 1,
                                      getattr(model, "activation", "tanh"),
                                      getattr(model, "linear_before_reset", True))
            outputs.append(h_seq)
            finals.append(h)
        inputs = torch.cat(outputs, -1)
    features = inputs if per_step else torch.cat(finals[(L - 1) * D:], -1)
    out = features @ params["W_o"].T + params["b_o"] if model.output_size is not None else features
    t = np.asarray(target)
    if per_step:
        t = batch_major(t, model.batch_first, unbatched)
        mask = torch.as_tensor(np.arange(T)[None, :] < lengths[:, None])
    else:
        t = t.reshape((B,) + ((out.shape[-1],) if loss == "mse" else ()))
        mask = torch.ones(B, dtype=torch.bool)
    if loss == "mse":
        tt = torch.tensor(np.where(mask.numpy()[..., None], np.asarray(t, np.float64).astype(model.dtype), 0.0))
        diff = torch.where(mask[..., None], out - tt, torch.zeros((), dtype=torch.float64))
        return (diff ** 2).sum() / (mask.sum() * out.shape[-1])
    ids = torch.as_tensor(np.where(mask.numpy(), t, 0).astype(np.int64))
    nll = torch.logsumexp(out, -1) - torch.gather(out, -1, ids[..., None])[..., 0]
    return torch.where(mask, nll, torch.zeros((), dtype=torch.float64)).sum() / mask.sum()


def check_model_gradients(model, grads, params_before, laid, what=""):
    assert set(grads) == set(model.params), what
    for name, g in grads.items():
        assert g.shape == model.params[name].shape and g.dtype == model.dtype, f"{what} {name}"
    assert_unchanged(params_before, model.state_dict(), "params")
    assert_no_alias(grads, (laid, dict(model.params)), "gradient")
    values = list(grads.values())
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            assert not np.shares_memory(a, b), "two gradients share memory"


@st.composite
def loss_cases(draw, cell):
    case = draw(model_cases(cell, nonempty=True))  # (a mean over nothing is not a loss)
    loss = draw(st.sampled_from(["mse", "cross_entropy"]), label="loss")
    target, per_step, explicit = draw(targets_for(case, loss))
    laid_target = relayout(target, draw(st.sampled_from(DATA_LAYOUTS), label="target layout"))
    return case, loss, target, per_step, explicit, laid_target


def call_loss_and_grads(model, a, target, loss, explicit):
    # Headless models under cross_entropy are part of the property (the
    # arithmetic holds for them too); their warning is tested in test_fit_errors.py.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "loss: cross_entropy on a model without a head", UserWarning)
        return model.loss_and_grads(a["x"], target, loss=loss, h0=a["h0"], lengths=a["lengths"],
                                    return_sequences=explicit)


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_model_loss_and_grads_properties(threads, cell, data):
    """The loss against the reference; inputs and parameters untouched, fresh
    gradients, bitwise reproducible (also across thread counts: the README
    promises it), layout-independent, garbage in the padding ignored."""
    case, loss, target, per_step, explicit, laid_target = data.draw(loss_cases(cell))
    model, laid, plain = case["model"], case["laid"], case["plain"]
    params_before = model.state_dict()
    before = snapshot((laid, laid_target))

    value, grads = with_threads(1, call_loss_and_grads, model, laid, laid_target, loss, explicit)
    assert_unchanged(before, (laid, laid_target))
    check_model_gradients(model, grads, params_before, laid)
    again = call_loss_and_grads(model, laid, laid_target, loss, explicit)
    assert again[0] == value
    assert_identical(grads, again[1], "loss_and_grads twice")
    two = with_threads(2, call_loss_and_grads, model, laid, laid_target, loss, explicit)
    assert two[0] == value
    assert_identical(grads, two[1], "1 thread vs 2 threads")
    contiguous = call_loss_and_grads(model, plain, target, loss, explicit)
    assert_identical(grads, contiguous[1], "layouts vs contiguous copies")
    assert contiguous[0] == value, "loss: layouts vs contiguous copies"
    if plain["lengths"] is not None:
        dirty = dict(plain, x=dirty_padding(plain["x"], plain["lengths"], model.batch_first, case["unbatched"]))
        dirty_result = call_loss_and_grads(model, dirty, target, loss, explicit)
        assert dirty_result[0] == contiguous[0]
        assert_identical(contiguous[1], dirty_result[1], "garbage in the padding")

    ref = reference_loss(model, params64(model), case, target, loss, per_step)
    f32 = model.dtype == np.float32
    np.testing.assert_allclose(value, ref, rtol=1e-5 if f32 else 1e-10, atol=1e-6 if f32 else 1e-12, err_msg="loss")


def test_loss_does_not_depend_on_the_target_layout():
    """A Fortran-ordered target gives bitwise the loss of its C-ordered copy
    (found by the properties above: NumPy's sums follow memory order, so the
    loss differed by 1 ulp in about a third of random problems until train.py
    summed C-ordered arrays; 20 problems made the failure certain)."""
    rng = np.random.default_rng(0)
    model = rx.RNN(3, 8, output_size=5, batch_first=False, dtype="float64", seed=0)
    mismatches = []
    for _ in range(20):
        x = rng.standard_normal((12, 6, 3))
        targets = {"mse": rng.standard_normal((12, 6, 5)).astype(np.float32),
                   "cross_entropy": rng.integers(0, 5, (12, 6))}
        for loss, target in targets.items():
            c_loss, c_grads = model.loss_and_grads(x, target, loss=loss)
            f_loss, f_grads = model.loss_and_grads(x, np.asfortranarray(target), loss=loss)
            assert_identical(c_grads, f_grads, "gradients, C vs Fortran target")
            if c_loss != f_loss:
                mismatches.append((loss, c_loss, f_loss))
    assert not mismatches, mismatches


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_model_loss_and_grads_against_torch_autograd(cell, data):
    """Every parameter's gradient against torch autograd of the reference's
    equations, loss and head (float64; float32 within 1e-4 relative)."""
    torch = pytest.importorskip("torch")
    case, loss, target, per_step, explicit, laid_target = data.draw(loss_cases(cell))
    model = case["model"]
    value, grads = call_loss_and_grads(model, case["laid"], laid_target, loss, explicit)

    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params64(model).items()}
    with np.errstate(all="ignore"):
        expected_loss = torch_model_loss(torch, model, leaves, case, target, loss, per_step)
        expected_loss.backward()
        ref = reference_loss(model, params64(model), case, target, loss, per_step)
    np.testing.assert_allclose(expected_loss.item(), ref, rtol=1e-12, atol=1e-14, err_msg="torch vs reference loss")
    f32 = model.dtype == np.float32
    np.testing.assert_allclose(value, ref, rtol=1e-5 if f32 else 1e-10, atol=1e-6 if f32 else 1e-12, err_msg="loss")
    for name, leaf in leaves.items():
        expected = np.zeros(leaf.shape) if leaf.grad is None else leaf.grad.numpy()
        scale = grad_scale(expected)
        if f32:
            np.testing.assert_allclose(grads[name], expected, rtol=1e-4, atol=1e-5 * scale, err_msg=name)
        else:
            np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12 * scale, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(0.5)
def test_model_loss_and_grads_finite_differences(cell, data):
    """float64 ``loss_and_grads`` against central differences of the
    reference's loss, at a few drawn parameter entries; tiny models, no torch needed."""
    case = data.draw(model_cases(cell, small=True, dtype=np.float64))
    model, laid = case["model"], case["laid"]
    loss = data.draw(st.sampled_from(["mse", "cross_entropy"]), label="loss")
    target, per_step, explicit = data.draw(targets_for(case, loss))
    params_before = model.state_dict()
    value, grads = call_loss_and_grads(model, laid, target, loss, explicit)
    check_model_gradients(model, grads, params_before, laid)
    point = params64(model)
    np.testing.assert_allclose(value, reference_loss(model, point, case, target, loss, per_step), rtol=1e-10,
                               atol=1e-12)
    entries = [(name, index) for name, array in point.items() for index in np.ndindex(array.shape)]
    picks = data.draw(st.lists(st.integers(0, len(entries) - 1), min_size=1, max_size=12, unique=True),
                      label="entries")
    scale = max(grad_scale(g) for g in grads.values())
    for i in picks:
        name, index = entries[i]
        numeric = numeric_gradient(lambda: reference_loss(model, point, case, target, loss, per_step), point[name],
                                   eps=1e-6, indices=[index])[index]
        assert abs(grads[name][index] - numeric) <= 1e-7 * scale, (name, index, grads[name][index], numeric)
