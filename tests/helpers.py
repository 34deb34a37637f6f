"""What the tests share: the cells and their options, tolerances, weight
generators, calls of the functional kernels and of rnnext.reference in one
structure for every cell, central finite differences, a stacked reference of
the models built from rnnext.reference, and a subprocess runner.

A "cell" names a functional kernel with its options:

  rnn, rnn_sigmoid, rnn_relu   rnnext.functional.rnn, activation tanh / sigmoid / relu
  lstm                         rnnext.functional.lstm
  gru                          rnnext.functional.gru (PyTorch's form, linear_before_reset=True)
  gru_onnx                     rnnext.functional.gru, linear_before_reset=False (ONNX's default form)
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np

from rnnext import functional as F
from rnnext import reference

# ---------------------------------------------------------------- cells

CELLS = ["rnn", "lstm", "gru", "gru_onnx"]
# The same with every Elman activation: for the checks that depend on it.
CELLS_ALL_ACTIVATIONS = ["rnn", "rnn_sigmoid", "rnn_relu", "lstm", "gru", "gru_onnx"]
ACTIVATIONS = ["tanh", "sigmoid", "relu"]
DTYPES = [np.float32, np.float64]
KINDS = ["RNN", "LSTM", "GRU"]  # the model classes

BASE = {"rnn": "rnn", "rnn_sigmoid": "rnn", "rnn_relu": "rnn", "lstm": "lstm", "gru": "gru", "gru_onnx": "gru"}
OPTIONS = {
    "rnn": {"activation": "tanh"},
    "rnn_sigmoid": {"activation": "sigmoid"},
    "rnn_relu": {"activation": "relu"},
    "lstm": {},
    "gru": {"linear_before_reset": True},
    "gru_onnx": {"linear_before_reset": False},
}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
GRAD_NAMES = ["x", "W_x", "W_h", "b_x", "b_h", "h0"]


def base(cell):
    """rnn, lstm or gru: the kernel a cell (or a model kind, "RNN") calls."""
    return BASE[cell.lower()]


def gates(cell):
    return GATES[base(cell)]


def is_lstm(cell):
    return base(cell) == "lstm"


def grad_names(cell):
    return GRAD_NAMES + (["c0"] if is_lstm(cell) else [])


def n_states(cell):
    return 2 if is_lstm(cell) else 1


def dtype_id(dtype):
    return np.dtype(dtype).name


def shape_id(shape):
    return "B%dT%dI%dH%d" % shape


# ---------------------------------------------------------------- tolerances

# Tolerances of the test suite (see README): float64 agrees with the float64
# reference to 1e-10 relative; float32 to 1e-5 relative (atol 1e-6 for values
# near zero) on well-scaled problems, after up to 100 steps.
TOLERANCE = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}


def tolerance(dtype):
    return TOLERANCE[np.dtype(dtype).type]


def assert_close(actual, expected, dtype, what=""):
    """actual has dtype and expected's shape, and is within dtype's tolerance of it."""
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape}, expected {np.shape(expected)}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **tolerance(dtype))


def assert_equal_results(a, b, what=""):
    """Two forward() results (h_seq, states) are bitwise equal."""
    np.testing.assert_array_equal(a[0], b[0], err_msg=f"h_seq {what}")
    for i, (sa, sb) in enumerate(zip(a[1], b[1])):
        np.testing.assert_array_equal(sa, sb, err_msg=f"state {i} {what}")


# ---------------------------------------------------------------- weights


def weights(rng, cell, input_size, hidden_size, dtype=np.float64, bias=True, scale=None):
    """PyTorch-scaled random weights U(-k, k), k = 1/sqrt(H) (or ``scale``),
    with the cell's G gate blocks: {"W_x": (G*H, I), "W_h": (G*H, H), "b_x":
    (G*H,), "b_h": (G*H,)}, drawn in that order. ``bias``: both biases, none,
    or a pair (b_x?, b_h?); a bias left out is not in the dict."""
    G = gates(cell)
    H = hidden_size
    k = 1.0 / np.sqrt(H) if scale is None else scale
    b_x, b_h = (bias, bias) if isinstance(bias, bool) else bias
    w = {"W_x": rng.uniform(-k, k, (G * H, input_size)).astype(dtype),
         "W_h": rng.uniform(-k, k, (G * H, H)).astype(dtype)}
    if b_x:
        w["b_x"] = rng.uniform(-k, k, G * H).astype(dtype)
    if b_h:
        w["b_h"] = rng.uniform(-k, k, G * H).astype(dtype)
    return w


def as64(w):
    return {k: np.asarray(v, np.float64) for k, v in w.items()}


def f64(a):
    return None if a is None else np.asarray(a, np.float64)


def states_for(rng, cell, shape, dtype=np.float64, given=True):
    """(h0, c0) drawn from a standard normal; c0 None but for LSTM; both None if not given."""
    if not given:
        return None, None
    h0 = rng.standard_normal(shape).astype(dtype)
    c0 = rng.standard_normal(shape).astype(dtype) if is_lstm(cell) else None
    return h0, c0


def model_state(rng, kind, rows, B, H):
    """A random model state (rows, B, H): an (h, c) pair for LSTM."""
    h = rng.standard_normal((rows, B, H)) * 0.5
    return (h, rng.standard_normal((rows, B, H)) * 0.5) if is_lstm(kind) else h


def states_of(state):
    """(h, c) of a model state; c is None but for LSTM."""
    return tuple(state) if isinstance(state, tuple) else (state, None)


# ---------------------------------------------------------------- functional calls


def forward(cell, x, w, h0=None, c0=None, **kwargs):
    """The functional forward; returns (h_seq, states) with states (h_n, c_n)
    for LSTM, (h_n,) otherwise, plus the cache when asked. kwargs override the
    cell's options."""
    args = (x, w["W_x"], w["W_h"], w.get("b_x"), w.get("b_h"), h0)
    options = {**OPTIONS[cell], **kwargs}
    kernel = base(cell)
    if kernel == "lstm":
        out = F.lstm(*args, c0, **options)
        h_seq, (h_n, c_n) = out[:2]
        return (h_seq, (h_n, c_n)) + tuple(out[2:])
    out = (F.rnn if kernel == "rnn" else F.gru)(*args, **options)
    return (out[0], (out[1],)) + tuple(out[2:])


def reference_forward(cell, x, w, h0=None, c0=None, **kwargs):
    """rnnext.reference in float64 on the same arguments, in forward()'s structure."""
    args = (f64(x), f64(w["W_x"]), f64(w["W_h"]), f64(w.get("b_x")), f64(w.get("b_h")), f64(h0))
    options = {**OPTIONS[cell], **kwargs}
    kernel = base(cell)
    if kernel == "lstm":
        h_seq, (h_n, c_n) = reference.lstm(*args, f64(c0), **options)
        return h_seq, (h_n, c_n)
    h_seq, h_n = (reference.rnn if kernel == "rnn" else reference.gru)(*args, **options)
    return h_seq, (h_n,)


def check_forward(cell, dtype, x, w, h0=None, c0=None, what="", **kwargs):
    """The functional forward against the reference; returns the functional's results."""
    h_seq, states = forward(cell, x, w, h0, c0, **kwargs)
    r_seq, r_states = reference_forward(cell, x, w, h0, c0, **kwargs)
    assert_close(h_seq, r_seq, dtype, f"{cell} h_seq {what}")
    for name, got, expected in zip(("h_n", "c_n"), states, r_states):
        assert_close(got, expected, dtype, f"{cell} {name} {what}")
    return h_seq, states


def backward(cell, cache, d_seq=None, d_n=None, dc_n=None):
    """The cell's functional backward."""
    kernel = base(cell)
    if kernel == "lstm":
        return F.lstm_backward(cache, d_seq, d_n, dc_n)
    return (F.rnn_backward if kernel == "rnn" else F.gru_backward)(cache, d_seq, d_n)


# ---------------------------------------------------------------- finite differences


def numeric_gradient(loss, array, eps=1e-6, indices=None, assign=None):
    """Central differences (loss(+eps) - loss(-eps)) / (2 eps) of the scalar
    ``loss()`` with respect to each entry of the writable ``array``, which is
    moved in place and restored. ``indices``: only those entries (the others
    stay 0). ``assign(array)``, when given, is called after each move (to
    hand the moved copy to a model whose parameters are read-only)."""
    numeric = np.zeros(array.shape)
    for index in np.ndindex(array.shape) if indices is None else indices:
        old = array[index]
        array[index] = old + eps
        if assign is not None:
            assign(array)
        plus = loss()
        array[index] = old - eps
        if assign is not None:
            assign(array)
        minus = loss()
        array[index] = old
        numeric[index] = (plus - minus) / (2 * eps)
    if assign is not None:
        assign(array)
    return numeric


def grad_scale(g):
    return max(1.0, float(np.abs(g).max(initial=0)))


def assert_gradient_matches(grad, numeric, what="", rel=1e-7):
    """An analytic gradient against its finite differences: within rel of the
    largest of the numeric gradient's entries (and of 1)."""
    np.testing.assert_allclose(grad, numeric, rtol=0, atol=rel * grad_scale(numeric), err_msg=what)


def model_numeric_gradient(loss_of, params, key, eps=1e-6):
    """Central differences of loss_of(params) with respect to params[key]
    (params: a dict of writable float64 arrays, moved in place and restored)."""
    params = {k: np.array(v) for k, v in params.items()}
    return numeric_gradient(lambda: loss_of(params), params[key], eps)


# ---------------------------------------------------------------- models


def make(kind, *args, **kwargs):
    """rx.RNN / LSTM / GRU by name ("RNN" or "rnn")."""
    import rnnext as rx

    return getattr(rx, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}.get(kind, kind))(*args, **kwargs)


MODEL_KIND = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def kind_of(cell):
    """The model class name of a cell: RNN, LSTM or GRU."""
    return MODEL_KIND[base(cell)]


def model_of(cell, *args, **kwargs):
    """The model class of a cell with the cell's options (activation,
    linear_before_reset): model_of("gru_onnx", 3, 4) is GRU(3, 4, linear_before_reset=False)."""
    return make(kind_of(cell), *args, **OPTIONS[cell], **kwargs)


def params64(model):
    return {k: np.array(v, np.float64) for k, v in model.params.items()}  # writable copies


def stacked_reference(model, x, h0=None, lengths=None, return_sequences=True, params=None):
    """The model's forward composed from rnnext.reference's single layers, in
    float64, on ``params`` (float64 arrays; by default the model's own) and
    the arguments as the model sees them (cast to its dtype): (out, h_n, c_n),
    c_n None but for LSTM."""
    cell = type(model).__name__.lower()
    dtype = model.dtype
    params = params64(model) if params is None else params
    cast = lambda v: None if v is None else np.asarray(v).astype(dtype).astype(np.float64)  # noqa: E731
    L, D = model.num_layers, 2 if model.bidirectional else 1
    h0, c0 = states_of(h0) if h0 is not None else (None, None)
    h0, c0 = cast(h0), cast(c0)
    inputs = cast(x)
    h_n, c_n = [], []
    with np.errstate(all="ignore"):
        for layer in range(L):
            outputs = []
            for d in range(D):
                k = layer * D + d
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                args = (inputs, params["W_x" + sfx], params["W_h" + sfx], params.get("b_x" + sfx),
                        params.get("b_h" + sfx), None if h0 is None else h0[k])
                options = dict(lengths=lengths, batch_first=model.batch_first, reverse=d == 1)
                if cell == "rnn":
                    h_seq, h = reference.rnn(*args, activation=model.activation, **options)
                    c = None
                elif cell == "lstm":
                    h_seq, (h, c) = reference.lstm(*args, None if c0 is None else c0[k], **options,
                                                   W_hr=params.get("W_hr" + sfx))
                else:
                    h_seq, h = reference.gru(*args, linear_before_reset=model.linear_before_reset, **options)
                    c = None
                outputs.append(h_seq)
                h_n.append(h)
                c_n.append(c)
            inputs = np.concatenate(outputs, axis=-1)
        if return_sequences:
            out = inputs
            if model.output_size is not None:
                out = reference.dense(inputs, params["W_o"], params["b_o"])
                if lengths is not None:
                    bm = out if model.batch_first or out.ndim == 2 else out.swapaxes(0, 1)
                    for b, n in enumerate(np.asarray(lengths).reshape(-1)):
                        bm[b, n:] = 0
        else:
            out = np.concatenate(h_n[(L - 1) * D:], axis=-1)
            if model.output_size is not None:
                out = reference.dense(out, params["W_o"], params["b_o"])
    return out, np.stack(h_n), (np.stack(c_n) if cell == "lstm" else None)


# ---------------------------------------------------------------- subprocesses


class ChildResult:
    """What run_python saw: returncode (None on timeout), stdout, stderr, and
    output (both). Unpacks as (returncode, output)."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.output = stdout + stderr

    def __iter__(self):
        return iter((self.returncode, self.output))


def run_python(code=None, timeout=120.0, env=None, args=None):
    """Runs code (dedented; or, with ``args``, ``python *args``) in a fresh
    interpreter. If the code prints a line
    "ready" once set up (importing rnnext may rebuild it), only the rest must
    finish within timeout seconds. ``env``: variables added to the
    environment. Returns a ChildResult."""
    command = [sys.executable, *args] if args is not None else [
        sys.executable, "-c", "import sys\n" + textwrap.dedent(code)]
    environment = None if env is None else {**os.environ, **env}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=environment) as proc:
        out, err, ready = [], [], threading.Event()

        def read_out():  # one reader for the whole output: nothing is lost between set-up and the rest
            for line in proc.stdout:
                out.append(line)
                if line.strip() == "ready":
                    ready.set()
            ready.set()

        def read_err():
            err.extend(proc.stderr)

        readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
        for reader in readers:
            reader.start()
        if code is not None and "ready" in code:
            ready.wait()
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            returncode = None
        for reader in readers:
            reader.join()
    return ChildResult(returncode, "".join(out), "".join(err))


def assert_child_ok(code, timeout=300.0, env=None, last="ok"):
    """run_python(code) exits 0 and its output ends with ``last``."""
    result = run_python(code, timeout, env)
    assert result.returncode == 0 and result.stdout.strip().endswith(last), (
        f"exit status {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


# ---------------------------------------------------------------- torch (the tests that use it skip without it)


def torch_forward(module, cell, x, h0=None, c0=None, lengths=None, reverse=False):
    """(h_seq (B, T, H), states) of a one-layer batch-first torch module on
    torch tensors, states (h_n, c_n) for LSTM, (h_n,) otherwise; lengths pack
    the batch; reverse reads the backward half of a bidirectional module (the
    forward half's outputs dropped)."""
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

    state = (full(h0), full(c0)) if is_lstm(cell) else full(h0)
    if lengths is None:
        out, final = module(x, state)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(np.asarray(lengths)), batch_first=True,
                                                         enforce_sorted=False)
        out, final = module(packed, state)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    out = out[..., (D - 1) * H:]
    if is_lstm(cell):
        return out, (final[0][D - 1], final[1][D - 1])
    return out, (final[D - 1],)


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


# ---------------------------------------------------------------- property tests (test_properties*.py)

# Memory layouts an input may come in; each holds the same values as the contiguous array.
LAYOUTS = ["C", "F", "strided_last", "strided_first", "negative", "readonly", "byteswapped"]
DATA_LAYOUTS = LAYOUTS + ["list"]  # x, states, lengths, gradients (not weights: a list is float64)


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
    import rnnext as rx

    rx.set_num_threads(n)
    return function(*args, **kwargs)


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


def data_values(rng, shape, dtype, scale=1.0):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "u":
        return rng.integers(0, 3, shape).astype(dtype)
    if dtype.kind == "i":
        return rng.integers(-2, 3, shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


# The strategies: hypothesis is a test extra; the property tests skip without it.
try:
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError:
    st = None

if st is not None:

    def examples(fraction):
        """Settings with a fraction of the loaded profile's max_examples."""
        return settings(max_examples=max(2, round(settings.default.max_examples * fraction)))

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

    @st.composite
    def lengths_for(draw, B, T, allow=True):
        if not allow or T == 0 or not draw(st.booleans()):
            return None
        return draw(hnp.arrays(draw(length_dtypes), (B,), elements=st.integers(1, T)))
