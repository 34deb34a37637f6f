"""Property tests (hypothesis): random shapes, layouts, dtypes, lengths and
options for every functional kernel (forward and backward; every model's
forward and ``loss_and_grads``: test_properties_models.py), held to
``rnnext.reference`` (plain NumPy),
to central finite differences of a reference-computed loss, and to torch
autograd of the same equations when torch is installed (those tests skip
without it).

Properties: results equal the reference (float64 rtol 1e-10, atol 1e-12;
float32 rtol 1e-5, atol 1e-6 against the float64 reference of the same
float32-rounded arguments); inputs (and model parameters) are never modified;
outputs never alias inputs; outputs past each length are exactly zero, and so
is the gradient with respect to x there; whatever lies past a length (NaN
included) changes nothing; forward results and gradients are bitwise identical
for 1 and 2 threads and from one call to the next; a non-contiguous,
Fortran-ordered, negatively strided, read-only, byte-swapped or nested-list
input gives bitwise the result of its contiguous copy (but for the value of
``loss_and_grads``' loss: a known bug, test_loss_does_not_depend_on_the_target_layout).

Hypothesis profiles (registered in tests/conftest.py):
  ci   (the default) derandomized, 40 examples per test (fewer for the
       finite-difference tests), no deadline: the same examples on every run,
       the whole file in about 10 s.
  dev  500 examples per test, random, failures remembered in .hypothesis/:
       HYPOTHESIS_PROFILE=dev pytest tests/test_properties*.py
Each test's example count is a fraction of the profile's ``max_examples``
(``examples()`` in helpers.py, with the strategies both files share).
"""

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import (  # noqa: E402
    ACTIVATIONS, DATA_LAYOUTS, GATES, LAYOUTS, Case, assert_close, assert_identical, assert_no_alias,
    assert_unchanged, assert_zero_past_lengths, backward, batch_major, batch_sizes, data_dtypes, data_float_dtypes,
    data_values, dirty_padding, examples, f64, forward, grad_names, grad_scale, hidden_sizes, lengths_for,
    numeric_gradient, reference_forward, relayout, snapshot, torch_layer, weight_dtypes, weights, with_threads)

# The kernels; "gru" draws linear_before_reset, "rnn" its activation.
CELLS = ["rnn", "lstm", "gru"]


# ---------------------------------------------------------------- functional cases


def weights_for(rng, cell, I, H, dtype, b_x=True, b_h=True):
    """helpers.weights with a bias left out given as None."""
    return {"b_x": None, "b_h": None, **weights(rng, cell, I, H, dtype, bias=(b_x, b_h))}


@st.composite
def functional_cases(draw, cell, tiny=False, big=True, dtype=None):
    """Everything one functional call needs: arguments (in chosen layouts and
    dtypes) and options, plus their contiguous copies."""
    if tiny:
        B, T, I, H = draw(st.integers(0, 2)), draw(st.integers(0, 3)), draw(st.integers(0, 2)), draw(st.integers(1, 3))
    else:
        B, T, I, H = draw(batch_sizes(big=big)), draw(st.integers(0, 12)), draw(st.integers(0, 9)), draw(hidden_sizes)
    unbatched = B == 1 and draw(st.booleans())
    dtype = draw(weight_dtypes) if dtype is None else dtype
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    options = dict(batch_first=draw(st.booleans()), reverse=draw(st.booleans()))
    if cell == "rnn":
        options["activation"] = draw(st.sampled_from(ACTIVATIONS))
    if cell == "gru":
        options["linear_before_reset"] = draw(st.booleans())
    # relu's kink at 0: a zero pre-activation (no biases, no inputs) makes
    # finite differences meaningless; biases keep it away from 0.
    force_bias = tiny and options.get("activation") == "relu"
    w = weights_for(rng, cell, I, H, dtype, b_x=force_bias or draw(st.booleans()), b_h=draw(st.booleans()))
    x_dtype = draw(data_dtypes(dtype))
    if unbatched:
        x_shape = (T, I)
    else:
        x_shape = (B, T, I) if options["batch_first"] else (T, B, I)
    x = data_values(rng, x_shape, x_dtype)
    state_shape = (H,) if unbatched else (B, H)
    states = {}
    for name in ("h0", "c0") if cell == "lstm" else ("h0",):
        if draw(st.booleans()):
            states[name] = data_values(rng, state_shape, draw(data_dtypes(dtype)), 0.5)
        else:
            states[name] = None
    lengths = draw(lengths_for(B, T, allow=not unbatched))
    plain = {"x": x, **w, **states, "lengths": lengths}
    args = {}
    for name, value in plain.items():
        if value is None:
            args[name] = None
        else:
            layouts = LAYOUTS if name.startswith(("W", "b")) else DATA_LAYOUTS
            args[name] = relayout(value, draw(st.sampled_from(layouts)))
    return Case(cell=cell, B=B, T=T, I=I, H=H, dtype=dtype, unbatched=unbatched, options=options, seed=seed,
                plain=plain, args=args, rng=rng)


def call_forward(cell, args, options, return_cache=False):
    """The functional forward (helpers.forward) of a case's arguments; returns (h_seq, states tuple[, cache])."""
    return forward(cell, args["x"], args, args["h0"], args.get("c0"), lengths=args["lengths"],
                   return_cache=return_cache, **options)


def case_reference(cell, plain, options, dtype):
    """The float64 reference (helpers.reference_forward) on the arguments as
    rnnext sees them (cast to the weights' dtype)."""
    cast = lambda v: None if v is None else np.asarray(v).astype(dtype).astype(np.float64)  # noqa: E731
    p = {k: (v if k == "lengths" else cast(v)) for k, v in plain.items()}
    with np.errstate(all="ignore"):
        return reference_forward(cell, p["x"], p, p["h0"], p.get("c0"), lengths=p["lengths"], **options)


# ---------------------------------------------------------------- functional forward


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_functional_forward(threads, cell, data):
    case = data.draw(functional_cases(cell))
    args, plain, options, dtype = case["args"], case["plain"], case["options"], case["dtype"]
    before = snapshot(args)

    one = with_threads(1, call_forward, cell, args, options)
    two = with_threads(2, call_forward, cell, args, options)
    assert_identical(one, two, "1 thread vs 2 threads")
    again = call_forward(cell, args, options)
    assert_identical(two, again, "the same call twice")
    contiguous = call_forward(cell, plain, options)
    assert_identical(contiguous, two, "layouts vs contiguous copies")
    cached = call_forward(cell, args, options, return_cache=True)
    assert_identical(cached[:2], two, "with the cache vs without")

    assert_unchanged(before, args)
    assert_no_alias(two, args)
    assert_no_alias(cached[:2], args, "return_cache")

    h_seq, states = two
    B, T, H, unbatched = case["B"], case["T"], case["H"], case["unbatched"]
    seq_shape = (T, H) if unbatched else ((B, T, H) if options["batch_first"] else (T, B, H))
    assert h_seq.shape == seq_shape
    assert_zero_past_lengths(h_seq, plain["lengths"], options["batch_first"], unbatched, "h_seq")
    if plain["lengths"] is not None:  # steps past a length are never read
        dirty = dict(plain, x=dirty_padding(plain["x"], plain["lengths"], options["batch_first"], unbatched))
        assert_identical(call_forward(cell, dirty, options), two, "garbage in the padding")

    r_seq, r_states = case_reference(cell, plain, options, dtype)
    assert_close(h_seq, r_seq, dtype, "h_seq")
    for i, (got, expected) in enumerate(zip(states, r_states)):
        assert_close(got, expected, dtype, ("h_n", "c_n")[i])


# ---------------------------------------------------------------- functional backward

@st.composite
def output_gradients(draw, case, states_given=None):
    """dh_seq, dh_n (and dc_n) for a case's forward: given or None, any float width, any layout."""
    rng, B, T, H, unbatched = case["rng"], case["B"], case["T"], case["H"], case["unbatched"]
    seq_shape = (T, H) if unbatched else ((B, T, H) if case["options"]["batch_first"] else (T, B, H))
    state_shape = (H,) if unbatched else (B, H)
    names = {"dh_seq": seq_shape, "dh_n": state_shape}
    if case["cell"] == "lstm":
        names["dc_n"] = state_shape
    plain = {}
    for name, shape in names.items():
        given_ = draw(st.booleans()) if states_given is None else states_given
        dtype = draw(st.sampled_from([np.float32, np.float64]) | data_float_dtypes)
        plain[name] = data_values(rng, shape, dtype) if given_ else None
    laid = {k: None if v is None else relayout(v, draw(st.sampled_from(DATA_LAYOUTS))) for k, v in plain.items()}
    return plain, laid


def call_backward(cell, cache, grads):
    return backward(cell, cache, grads["dh_seq"], grads["dh_n"], grads.get("dc_n"))


def check_gradient_dict(case, grads, args, laid_dgrads):
    """Keys, shapes, dtypes, zero past lengths, no aliasing."""
    cell, dtype, B, T, I, H = (case[k] for k in ("cell", "dtype", "B", "T", "I", "H"))
    G, unbatched = GATES[cell], case["unbatched"]
    x_shape = np.shape(case["plain"]["x"])
    state = (H,) if unbatched else (B, H)
    shapes = {"x": x_shape, "W_x": (G * H, I), "W_h": (G * H, H), "b_x": (G * H,), "b_h": (G * H,), "h0": state,
              "c0": state}
    assert set(grads) == set(grad_names(cell))
    for name, g in grads.items():
        assert isinstance(g, np.ndarray) and g.shape == shapes[name] and g.dtype == dtype, name
    assert_zero_past_lengths(grads["x"], case["plain"]["lengths"], case["options"]["batch_first"], unbatched, "dx")
    assert_no_alias(grads, (args, laid_dgrads), "gradient")
    values = list(grads.values())
    for i, a in enumerate(values):
        for b in values[i + 1:]:
            assert not np.shares_memory(a, b), "two gradients share memory"


def torch_functional_gradients(torch, case, plain_dgrads):
    """Gradients of sum(h_seq dh_seq) + sum(h_n dh_n) (+ sum(c_n dc_n)) by torch autograd, float64."""
    cell, dtype, B, T, I, H = (case[k] for k in ("cell", "dtype", "B", "T", "I", "H"))
    G = GATES[cell]
    options, unbatched = case["options"], case["unbatched"]
    cast = lambda v: np.asarray(v).astype(dtype).astype(np.float64)  # noqa: E731
    p = case["plain"]
    x = cast(p["x"])
    Bx = 1 if unbatched else B
    x_bm = batch_major(x, options["batch_first"], unbatched)
    leaves = {"x": torch.tensor(np.ascontiguousarray(x_bm), requires_grad=True)}
    for name, shape in (("W_x", (G * H, I)), ("W_h", (G * H, H)), ("b_x", (G * H,)), ("b_h", (G * H,)),
                        ("h0", (Bx, H)), ("c0", (Bx, H))):
        value = p.get(name)
        value = np.zeros(shape) if value is None else cast(value).reshape(shape)
        leaves[name] = torch.tensor(value, requires_grad=True)
    lengths = np.full(Bx, T) if p["lengths"] is None else np.asarray(p["lengths"]).astype(np.int64)
    h_seq, h_n, c_n = torch_layer(torch, cell, leaves["x"], leaves["W_x"], leaves["W_h"], leaves["b_x"],
                                  leaves["b_h"], leaves["h0"], leaves["c0"] if cell == "lstm" else None, lengths,
                                  options["reverse"], options.get("activation", "tanh"),
                                  options.get("linear_before_reset", True))
    loss = torch.zeros((), dtype=torch.float64)
    d = {k: None if v is None else cast(v) for k, v in plain_dgrads.items()}
    if d["dh_seq"] is not None:
        d_bm = batch_major(d["dh_seq"], options["batch_first"], unbatched)
        loss = loss + (h_seq * torch.tensor(np.ascontiguousarray(d_bm))).sum()
    if d["dh_n"] is not None:
        loss = loss + (h_n * torch.tensor(d["dh_n"].reshape(Bx, H))).sum()
    if d.get("dc_n") is not None:
        loss = loss + (c_n * torch.tensor(d["dc_n"].reshape(Bx, H))).sum()
    if loss.requires_grad:
        loss.backward()
    out = {}
    for name in grad_names(cell):
        g = leaves[name].grad
        g = np.zeros(tuple(leaves[name].shape)) if g is None else g.numpy()
        if name == "x":
            g = g[0] if unbatched else (g if options["batch_first"] else g.swapaxes(0, 1))
        elif name in ("h0", "c0") and unbatched:
            g = g[0]
        out[name] = g
    return out, h_seq, h_n, c_n


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_functional_backward_properties(threads, cell, data):
    """Everything but the values (those are below): inputs untouched, fresh
    outputs, zero dx past lengths, padding ignored, bitwise reproducible
    (also across thread counts: the README promises it) and layout-independent."""
    case = data.draw(functional_cases(cell))
    plain_d, laid_d = data.draw(output_gradients(case))
    args, plain, options = case["args"], case["plain"], case["options"]

    before = snapshot((args, laid_d))
    cache = with_threads(1, call_forward, cell, args, options, return_cache=True)[2]
    grads = call_backward(cell, cache, laid_d)
    assert_unchanged(before, (args, laid_d))
    check_gradient_dict(case, grads, args, laid_d)
    assert_identical(grads, call_backward(cell, cache, laid_d), "backward twice on one cache")
    assert_identical(grads, call_backward(cell, cache, plain_d), "gradient layouts vs contiguous copies")
    two = with_threads(2, call_forward, cell, plain, options, return_cache=True)[2]
    assert_identical(grads, call_backward(cell, two, plain_d), "1 thread vs 2 threads, layouts vs contiguous")

    if plain["lengths"] is not None:  # steps past a length are never read, their gradients ignored
        where = dict(batch_first=options["batch_first"], unbatched=case["unbatched"])
        dirty = dict(plain, x=dirty_padding(plain["x"], plain["lengths"], **where))
        dirty_d = dict(plain_d)
        if plain_d["dh_seq"] is not None:
            dirty_d["dh_seq"] = dirty_padding(plain_d["dh_seq"], plain["lengths"], **where)
        h_seq, _, cache = call_forward(cell, dirty, options, return_cache=True)
        assert np.isfinite(h_seq).all()
        assert_identical(grads, call_backward(cell, cache, dirty_d), "garbage in the padding")


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(1.0)
def test_functional_backward_against_torch_autograd(cell, data):
    """The gradients of sum(h_seq dh_seq) + sum(h_n dh_n) (+ sum(c_n dc_n))
    against torch autograd of the reference's equations (float64; float32
    within 1e-4 relative)."""
    torch = pytest.importorskip("torch")
    case = data.draw(functional_cases(cell))
    plain_d, laid_d = data.draw(output_gradients(case))
    cache = call_forward(cell, case["args"], case["options"], return_cache=True)[2]
    grads = call_backward(cell, cache, laid_d)
    dtype = case["dtype"]
    with np.errstate(all="ignore"):
        expected, *_ = torch_functional_gradients(torch, case, plain_d)
    for name in grad_names(cell):
        scale = grad_scale(expected[name])
        if dtype == np.float64:
            np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12 * scale, err_msg=name)
        else:
            np.testing.assert_allclose(grads[name], expected[name], rtol=1e-4, atol=1e-5 * scale, err_msg=name)


def test_torch_layer_matches_reference():
    """The torch transcription used above computes the reference's forward."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    B, T, I, H = 3, 5, 4, 6
    for cell in CELLS:
        for options in ([dict(activation=a) for a in ACTIVATIONS] if cell == "rnn"
                        else [dict(linear_before_reset=v) for v in (True, False)] if cell == "gru" else [{}]):
            for reverse in (False, True):
                w = weights_for(rng, cell, I, H, np.float64)
                x, h0, c0 = rng.standard_normal((B, T, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
                lengths = np.array([5, 2, 4])
                t = {k: torch.tensor(v) for k, v in dict(x=x, h0=h0, c0=c0, **w).items()}
                h_seq, h_n, c_n = torch_layer(torch, cell, t["x"], t["W_x"], t["W_h"], t["b_x"], t["b_h"], t["h0"],
                                              t["c0"] if cell == "lstm" else None, lengths, reverse, **options)
                plain = dict(x=x, h0=h0, c0=c0 if cell == "lstm" else None, lengths=lengths, **w)
                r_seq, r_states = case_reference(cell, plain, dict(reverse=reverse, **options), np.float64)
                np.testing.assert_allclose(h_seq.numpy(), r_seq, rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(h_n.numpy(), r_states[0], rtol=1e-12, atol=1e-14)
                if cell == "lstm":
                    np.testing.assert_allclose(c_n.numpy(), r_states[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
@examples(0.5)
def test_functional_backward_finite_differences(cell, data):
    """float64 gradients against central differences of the reference's loss
    sum(h_seq dh_seq) + sum(h_n dh_n) (+ sum(c_n dc_n)); tiny sizes, no torch needed.
    A None bias or state is differentiated at zero."""
    case = data.draw(functional_cases(cell, tiny=True, dtype=np.float64))
    plain_d, laid_d = data.draw(output_gradients(case, states_given=True))
    args, plain, options = case["args"], case["plain"], case["options"]
    cache = call_forward(cell, args, options, return_cache=True)[2]
    grads = call_backward(cell, cache, laid_d)
    check_gradient_dict(case, grads, args, laid_d)

    G, H, I, B, unbatched = GATES[cell], case["H"], case["I"], case["B"], case["unbatched"]
    state = (H,) if unbatched else (B, H)
    point = {"x": f64(plain["x"]), "lengths": plain["lengths"]}
    for name, shape in (("W_x", (G * H, I)), ("W_h", (G * H, H)), ("b_x", (G * H,)), ("b_h", (G * H,)),
                        ("h0", state), ("c0", state)):
        point[name] = np.zeros(shape) if plain.get(name) is None else f64(plain[name]).copy()
    if cell != "lstm":
        point["c0"] = None
    d = {k: f64(v) for k, v in plain_d.items()}

    def loss():
        h_seq, states = case_reference(cell, point, options, np.float64)
        total = np.sum(h_seq * d["dh_seq"]) + np.sum(states[0] * d["dh_n"])
        return total + (np.sum(states[1] * d["dc_n"]) if cell == "lstm" else 0.0)

    for name in grad_names(cell):
        numeric = numeric_gradient(loss, point[name], eps=1e-6)
        np.testing.assert_allclose(grads[name], numeric, rtol=0, atol=1e-7 * grad_scale(numeric), err_msg=name)
