"""Property tests (hypothesis): random shapes, layouts, dtypes, lengths and
options for every functional kernel (forward and backward) and every model
(forward and ``loss_and_grads``), held to ``rnnext.reference`` (plain NumPy),
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
       HYPOTHESIS_PROFILE=dev pytest tests/test_properties.py
Each test's example count is a fraction of the profile's ``max_examples``
(``examples()`` below).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import (ACTIVATIONS, GATES, assert_close, backward, f64, forward, grad_names, grad_scale, kind_of,
                     numeric_gradient, params64, reference_forward, stacked_reference, weights)

import rnnext as rx

# The kernels; "gru" draws linear_before_reset, "rnn" its activation.
CELLS = ["rnn", "lstm", "gru"]

# Memory layouts an input may come in; each holds the same values as the contiguous array.
LAYOUTS = ["C", "F", "strided_last", "strided_first", "negative", "readonly", "byteswapped"]
DATA_LAYOUTS = LAYOUTS + ["list"]  # x, states, lengths, gradients (not weights: a list is float64)


def examples(fraction):
    """Settings with a fraction of the loaded profile's max_examples."""
    return settings(max_examples=max(2, round(settings.default.max_examples * fraction)))


# ---------------------------------------------------------------- helpers


def relayout(a, how):
    """``a``'s values and dtype in another memory layout (or a nested list)."""
    a = np.asarray(a)
    if how == "C":
        return a.copy()
    if how == "F":
        return np.array(a, order="F", copy=True)
    if how == "strided_last" and a.ndim:
        buf = np.full(a.shape + (2,), 7, a.dtype)
        buf[..., 1] = a
        return buf[..., 1]
    if how == "strided_first" and a.ndim:
        buf = np.full((2 * a.shape[0] + 1,) + a.shape[1:], 7, a.dtype)
        buf[1::2] = a
        return buf[1::2]
    if how == "negative":
        flip = (slice(None, None, -1),) * a.ndim
        return a[flip].copy()[flip]
    if how == "byteswapped":  # the same values in the other byte order
        return a.astype(a.dtype.newbyteorder())
    if how == "readonly":
        out = a.copy()
        out.setflags(write=False)
        return out
    if how == "list" and a.size:  # (a zero-size array's list loses its shape)
        return a.tolist()
    return a.copy()


def arrays_of(value):
    """The ndarrays in an argument structure: dicts and tuples are containers,
    lists are data (an array given as a nested list)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple):
        return [a for v in value for a in arrays_of(v)]
    if isinstance(value, dict):
        return [a for v in value.values() for a in arrays_of(v)]
    return []


def snapshot(value):
    """A deep copy to compare against after a call."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(snapshot(v) for v in value)
    return value


def assert_unchanged(before, after, what="argument"):
    assert type(before) is type(after), what
    if isinstance(before, dict):
        assert before.keys() == after.keys(), what
        for k in before:
            assert_unchanged(before[k], after[k], f"{what}[{k!r}]")
    elif isinstance(before, tuple):
        assert len(before) == len(after), what
        for i, (b, a) in enumerate(zip(before, after)):
            assert_unchanged(b, a, f"{what}[{i}]")
    elif isinstance(before, np.ndarray):
        assert after.dtype == before.dtype and after.shape == before.shape, what
        np.testing.assert_array_equal(after, before, err_msg=f"{what} was modified")
    else:
        assert before == after, f"{what} was modified"


def assert_no_alias(outputs, inputs, what=""):
    for i, out in enumerate(arrays_of(outputs)):
        for inp in arrays_of(inputs):
            assert not np.shares_memory(out, inp), f"{what} output {i} aliases an input"


def assert_identical(a, b, what=""):
    """Bitwise equal nested results (NaN equal to NaN)."""
    a_arrays, b_arrays = arrays_of(a), arrays_of(b)
    assert len(a_arrays) == len(b_arrays), what
    for i, (x, y) in enumerate(zip(a_arrays, b_arrays)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what} [{i}]"
        assert x.tobytes() == y.tobytes(), f"{what} [{i}] not bitwise equal"


def batch_major(a, batch_first, unbatched):
    """A (B, T, ...) view of a per-step array."""
    if unbatched:
        return a[None]
    return a if batch_first else np.swapaxes(a, 0, 1)


def assert_zero_past_lengths(seq, lengths, batch_first, unbatched, what):
    if lengths is None:
        return
    bm = batch_major(np.asarray(seq), batch_first, unbatched)
    for b, n in enumerate(np.asarray(lengths).reshape(-1)):
        assert not bm[b, n:].any(), f"{what}: nonzero past lengths[{b}] = {n}"


def dirty_padding(a, lengths, batch_first, unbatched):
    """A copy of a per-step array with garbage past each length: NaN (for
    floats), the largest value (integers) or the opposite (bool)."""
    a = np.array(a)
    bm = batch_major(a, batch_first, unbatched)
    for b, n in enumerate(np.asarray(lengths).reshape(-1)):
        if a.dtype.kind == "f":
            bm[b, n:] = np.nan
        elif a.dtype.kind == "b":
            bm[b, n:] = ~bm[b, n:]
        else:
            bm[b, n:] = np.iinfo(a.dtype).max
    return a


def with_threads(n, function, *args, **kwargs):
    rx.set_num_threads(n)
    return function(*args, **kwargs)


# ---------------------------------------------------------------- strategies


def describe(value):
    if value is None:
        return "None"
    if isinstance(value, list):
        return f"list{np.shape(value)}"
    if isinstance(value, tuple):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    a = np.asarray(value)
    flags = "" if a.flags.c_contiguous else " strides=%s" % (a.strides,)
    flags += "" if a.flags.writeable else " read-only"
    return f"{a.dtype.str}{a.shape}{flags}"


class Case(dict):
    """A drawn case; printed by hypothesis as a summary (the values follow from ``seed``)."""

    def __repr__(self):
        skip = {"plain", "args", "laid", "rng"}
        head = ", ".join(f"{k}={v!r}" for k, v in self.items() if k not in skip)
        laid = self.get("args", self.get("laid", {}))
        args = ", ".join(f"{k}: {describe(v)}" for k, v in laid.items())
        return f"Case({head}; {args})"

    def _repr_pretty_(self, p, cycle):
        p.text(repr(self))


# H values at and around the SIMD widths and panels (16 doubles, 32 floats) come often.
hidden_sizes = st.sampled_from([1, 2, 7, 15, 16, 17, 31, 32, 33, 40]) | st.integers(1, 40)
weight_dtypes = st.sampled_from([np.float32, np.float64])
# Data (x, states, gradients) may come in any real dtype, any byte order: it is cast.
data_float_dtypes = hnp.floating_dtypes(sizes=(16, 32, 64), endianness="?")
data_int_dtypes = hnp.integer_dtypes(endianness="?") | hnp.unsigned_integer_dtypes(endianness="?")
length_dtypes = st.sampled_from([np.int64, np.int32, np.int16, np.uint8, np.uint64])


@st.composite
def batch_sizes(draw, small=5, big=True):
    """Mostly 0..small, sometimes past the 64-row chunks of the batch."""
    if big and draw(st.integers(0, 9)) == 9:  # (9, not 0: hypothesis shrinks towards small batches)
        return draw(st.integers(62, 70))
    return draw(st.integers(0, small))


@st.composite
def data_dtypes(draw, weight_dtype):
    """x's dtype: the weights', the other float width, float16, an integer or bool."""
    other = np.float64 if weight_dtype == np.float32 else np.float32
    return np.dtype(draw(st.sampled_from([weight_dtype, other]) | data_float_dtypes | data_int_dtypes
                         | st.just(np.bool_)))


def data_values(rng, shape, dtype, scale=1.0):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "u":
        return rng.integers(0, 3, shape).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-2, 3, shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


@st.composite
def lengths_for(draw, B, T, allow=True):
    if not allow or T == 0 or not draw(st.booleans()):
        return None
    return draw(hnp.arrays(draw(length_dtypes), (B,), elements=st.integers(1, T)))


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


def torch_layer(torch, cell, x, W_x, W_h, b_x, b_h, h0, c0, lengths, reverse, activation="tanh",
                linear_before_reset=True):
    """The reference's equations in torch (batch-major x (B, T, I)), for autograd:
    returns h_seq (B, T, H), h_n, c_n (None but for LSTM)."""
    B, T, _ = x.shape
    H = W_h.shape[1]
    valid = torch.as_tensor(np.arange(T)[None, :] < np.asarray(lengths).reshape(-1, 1)).reshape(B, T)
    act = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}[activation]
    h, c = h0, c0
    outputs = [None] * T
    zero = torch.zeros((B, H), dtype=x.dtype)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        a = x[:, t] @ W_x.T + b_x
        if cell == "rnn":
            h_new, c_new = act(a + h @ W_h.T + b_h), None
        elif cell == "lstm":
            z = a + h @ W_h.T + b_h
            i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
        else:
            hh = h @ W_h[:2 * H].T + b_h[:2 * H]
            r = torch.sigmoid(a[:, :H] + hh[:, :H])
            zg = torch.sigmoid(a[:, H:2 * H] + hh[:, H:])
            if linear_before_reset:
                n = torch.tanh(a[:, 2 * H:] + r * (h @ W_h[2 * H:].T + b_h[2 * H:]))
            else:
                n = torch.tanh(a[:, 2 * H:] + (r * h) @ W_h[2 * H:].T + b_h[2 * H:])
            h_new, c_new = (1 - zg) * n + zg * h, None
        m = valid[:, t:t + 1]
        outputs[t] = torch.where(m, h_new, zero)
        h = torch.where(m, h_new, h)
        if c is not None:
            c = torch.where(m, c_new, c)
    h_seq = torch.stack(outputs, 1) if T else torch.zeros((B, 0, H), dtype=x.dtype)
    return h_seq, h, c


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
    value, grads = model.loss_and_grads(laid["x"], target, loss=loss, h0=laid["h0"], lengths=laid["lengths"],
                                        return_sequences=explicit)
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
