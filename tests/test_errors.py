"""Every bad input the API names raises the documented error, naming the
argument, before any compute; nothing crashes the interpreter: the functional
kernels (forward and backward) of every cell, the models' constructors,
calls, states and steps."""

import numpy as np
import pytest
from helpers import CELLS, backward, forward, gates, is_lstm, make, weights

import rnnext as rx
from rnnext import functional as F

I, H, B, T = 3, 4, 2, 5

# ---------------------------------------------------------------- rnn: the exact messages


def args(**override):
    rng = np.random.default_rng(0)
    a = dict(
        x=rng.standard_normal((B, T, I)),
        W_x=rng.standard_normal((H, I)).astype(np.float32),
        W_h=rng.standard_normal((H, H)).astype(np.float32),
        b_x=np.zeros(H, np.float32),
        b_h=np.zeros(H, np.float32),
        h0=None,
    )
    a.update(override)
    return a


def call(**override):
    a = args(**override)
    options = {k: a.pop(k) for k in list(a) if k in ("activation", "lengths", "batch_first", "reverse")}
    return F.rnn(a["x"], a["W_x"], a["W_h"], a["b_x"], a["b_h"], a["h0"], **options)


TYPE_ERRORS = [
    (dict(W_h=np.zeros((H, H), np.float64)), r"must all be float32 or all float64: W_x is float32, W_h is float64"),
    (dict(b_h=np.zeros(H, np.float64)), r"must all be float32 or all float64: W_x is float32, b_h is float64"),
    (dict(W_x=np.zeros((H, I), np.int64)), r"W_x: expected float32 or float64 weights, got dtype int64"),
    (dict(W_x=np.zeros((H, I), np.float16)), r"W_x: expected float32 or float64 weights, got dtype float16"),
    (dict(W_h=np.zeros((H, H), np.complex64)), r"W_h: expected an array of real numbers, got dtype complex64"),
    # dtype is checked before shapes: a wrong shape in a wrong dtype is a TypeError
    (dict(W_h=np.zeros((7, 7), np.float64)), r"W_h is float64"),
    (dict(x=np.zeros((B, T, I), complex)), r"x: expected an array of real numbers, got dtype complex128"),
    (dict(x=np.zeros((B, T, I), object)), r"x: expected an array of real numbers, got dtype object"),
    (dict(x=np.full((B, T, I), "a")), r"x: expected an array of real numbers, got dtype <U1"),
    (dict(x=np.zeros((B, T, I), "datetime64[s]")), r"x: expected an array of real numbers"),
    (dict(h0=np.zeros((B, H), complex)), r"h0: expected an array of real numbers"),
    (dict(lengths=np.full(B, 2.0)), r"lengths: expected an integer array, got dtype float64"),
    (dict(lengths=np.ones(B, bool)), r"lengths: expected an integer array, got dtype bool"),
    (dict(activation=None), r"activation: expected one of 'tanh', 'sigmoid', 'relu', got NoneType"),
]


@pytest.mark.parametrize("override,match", TYPE_ERRORS, ids=[m for _, m in TYPE_ERRORS])
def test_type_errors(override, match):
    with pytest.raises(TypeError, match=match):
        call(**override)


VALUE_ERRORS = [
    (dict(W_x=np.zeros(H, np.float32)), r"W_x: expected a 2-D array \(hidden_size, input_size\), got shape \(4,\)"),
    (dict(W_h=np.zeros((H, H + 1), np.float32)), r"W_h: expected shape \(4, 4\) .*got \(4, 5\)"),
    (dict(b_x=np.zeros(H + 1, np.float32)), r"b_x: expected shape \(4,\) .*got \(5,\)"),
    (dict(b_h=np.zeros((1, H), np.float32)), r"b_h: expected shape \(4,\) .*got \(1, 4\)"),
    (dict(x=np.zeros((B, T, I + 1))), r"x: expected shape \(B, T, 3\) or unbatched \(T, 3\) \(input_size 3\), got \(2, 5, 4\)"),
    (dict(x=np.zeros((T, B, I + 1)), batch_first=False), r"x: expected shape \(T, B, 3\)"),
    (dict(x=np.zeros(I)), r"x: expected a 2-D or 3-D array"),
    (dict(x=np.zeros((1, B, T, I))), r"x: expected a 2-D or 3-D array .*got shape \(1, 2, 5, 3\)"),
    (dict(h0=np.zeros((B + 1, H))), r"h0: expected shape \(2, 4\) \(B, hidden_size\), got \(3, 4\)"),
    (dict(h0=np.zeros((1, B, H))), r"h0: expected shape \(2, 4\)"),
    (dict(x=np.zeros((T, I)), h0=np.zeros((1, H))), r"h0: expected shape \(4,\) \(hidden_size,\) for an unbatched x"),
    (dict(lengths=np.ones(B + 1, int)), r"lengths: expected shape \(2,\) \(one length per sequence\), got \(3,\)"),
    (dict(lengths=np.array([1, 0])), r"lengths\[1\] = 0 is outside \[1, T\] with T = 5"),
    (dict(lengths=np.array([6, 1])), r"lengths\[0\] = 6 is outside \[1, T\] with T = 5"),
    (dict(lengths=np.array([-1, 1])), r"lengths\[0\] = -1 is outside"),
    (dict(lengths=np.array([2**63, 1], np.uint64)), r"lengths\[0\] = 9223372036854775808 is outside"),
    (dict(x=np.zeros((B, 0, I)), lengths=np.ones(B, int)), r"lengths\[0\] = 1 is outside \[1, T\] with T = 0"),
    (dict(activation="gelu"), r"activation: expected one of 'tanh', 'sigmoid', 'relu', got 'gelu'"),
]


@pytest.mark.parametrize("override,match", VALUE_ERRORS, ids=[m for _, m in VALUE_ERRORS])
def test_value_errors(override, match):
    with pytest.raises(ValueError, match=match):
        call(**override)


def test_ragged_input_is_a_type_error():
    with pytest.raises((TypeError, ValueError), match="x"):
        call(x=[[[1.0, 2.0, 3.0]], [[1.0]]])


def test_memory_error_before_compute():
    # 2**40 steps of a 1-element input exist as a broadcast view, but the
    # (B, T, H) output and workspace do not fit in memory.
    x = np.broadcast_to(np.float32(0), (1, 2**40, 1))
    W_x = np.zeros((64, 1), np.float32)
    W_h = np.zeros((64, 64), np.float32)
    with pytest.raises(MemoryError):
        F.rnn(x, W_x, W_h)


def test_model_errors():
    model = rx.RNN(I, H, 2)
    with pytest.raises(ValueError, match="x: expected shape"):
        model(np.zeros((B, T, I + 1)))
    with pytest.raises(TypeError, match="x: expected an array of real numbers"):
        model(np.zeros((B, T, I), complex))
    with pytest.raises(ValueError, match=r"lengths\[0\]"):
        model(np.zeros((B, T, I)), lengths=[0, 1])
    with pytest.raises(TypeError, match="x_t"):
        model.step(np.zeros(I, complex))
    with pytest.raises(TypeError, match="batch_size"):
        model.predict(np.zeros((B, T, I)), batch_size=1.5)


# ---------------------------------------------------------------- every cell


def cell_args(cell, **override):
    rng = np.random.default_rng(0)
    G = gates(cell)
    a = dict(
        x=rng.standard_normal((B, T, I)),
        W_x=rng.standard_normal((G * H, I)).astype(np.float32),
        W_h=rng.standard_normal((G * H, H)).astype(np.float32),
        b_x=np.zeros(G * H, np.float32),
        b_h=np.zeros(G * H, np.float32),
        h0=None,
        c0=None,
    )
    a.update(override)
    return a


def cell_call(cell, **override):
    a = cell_args(cell, **override)
    options = {k: a.pop(k) for k in list(a) if k in ("lengths", "batch_first", "reverse")}
    w = {k: a[k] for k in ("W_x", "W_h", "b_x", "b_h")}
    return forward(cell, a["x"], w, a["h0"], a["c0"], **options)


def cell_type_errors(cell):
    G = gates(cell)
    cases = [
        (dict(W_h=np.zeros((G * H, H), np.float64)), r"W_h"),
        (dict(b_x=np.zeros(G * H, np.float64)), r"b_x"),
        (dict(W_x=np.zeros((G * H, I), np.float64)), r"W_h|W_x"),
        (dict(W_x=np.zeros((G * H, I), np.int64)), r"W_x"),
        (dict(W_h=np.zeros((G * H, H), np.complex64)), r"W_h"),
        # dtype is checked before shapes: a wrong shape in a wrong dtype is a TypeError
        (dict(W_h=np.zeros((7, 7), np.float64)), r"W_h"),
        (dict(x=np.zeros((B, T, I), complex)), r"x: "),
        (dict(x=np.zeros((B, T, I), object)), r"x: "),
        (dict(h0=np.zeros((B, H), complex)), r"h0"),
        (dict(lengths=np.full(B, 2.0)), r"lengths"),
    ]
    if is_lstm(cell):
        cases.append((dict(c0=np.zeros((B, H), complex)), r"c0"))
    return cases


def cell_value_errors(cell):
    G = gates(cell)
    cases = [
        # W_h must be (G*H, H): the wrong number of rows for G gate blocks.
        (dict(W_h=np.zeros((G * H + 1, H), np.float32)), r"W_h"),
        (dict(W_h=np.zeros((G * H, H + 1), np.float32)), r"W_h"),
        (dict(W_x=np.zeros(G * H, np.float32)), r"W_x"),
        (dict(W_x=np.zeros((G * H + 1, I), np.float32)), r"W_x"),  # not G blocks
        (dict(b_x=np.zeros(G * H + 1, np.float32)), r"b_x"),
        (dict(b_h=np.zeros((1, G * H), np.float32)), r"b_h"),
        (dict(x=np.zeros((B, T, I + 1))), r"x: "),
        (dict(x=np.zeros((T, B, I + 1)), batch_first=False), r"x: "),
        (dict(x=np.zeros(I)), r"x: "),
        (dict(h0=np.zeros((B + 1, H))), r"h0"),
        (dict(h0=np.zeros((1, B, H))), r"h0"),
        (dict(x=np.zeros((T, I)), h0=np.zeros((1, H))), r"h0"),
        (dict(lengths=np.ones(B + 1, int)), r"lengths"),
        (dict(lengths=np.array([1, 0])), r"lengths\[1\] = 0"),
        (dict(lengths=np.array([6, 1])), r"lengths\[0\] = 6"),
        (dict(lengths=np.array([-1, 1])), r"lengths\[0\] = -1"),
    ]
    if G > 1:
        cases.append((dict(W_h=np.zeros((H, H), np.float32)), r"W_h"))  # an Elman cell's W_h
        cases.append((dict(b_x=np.zeros(H, np.float32)), r"b_x"))
    if is_lstm(cell):
        cases += [
            (dict(c0=np.zeros((B + 1, H))), r"c0"),
            (dict(c0=np.zeros((B, H + 1))), r"c0"),
            (dict(c0=np.zeros(H)), r"c0"),
            (dict(x=np.zeros((T, I)), c0=np.zeros((1, H))), r"c0"),
        ]
    return cases


def describe(override):
    return ",".join(f"{k}={np.shape(v)}{getattr(v, 'dtype', '')}" for k, v in override.items())


CELL_TYPE_ERRORS = [(cell, o, m) for cell in CELLS for o, m in cell_type_errors(cell)]
CELL_VALUE_ERRORS = [(cell, o, m) for cell in CELLS for o, m in cell_value_errors(cell)]


@pytest.mark.parametrize("cell,override,match", CELL_TYPE_ERRORS,
                         ids=[f"{c}-{describe(o)}" for c, o, _ in CELL_TYPE_ERRORS])
def test_cell_type_errors(cell, override, match):
    with pytest.raises(TypeError, match=match):
        cell_call(cell, **override)


@pytest.mark.parametrize("cell,override,match", CELL_VALUE_ERRORS,
                         ids=[f"{c}-{describe(o)}" for c, o, _ in CELL_VALUE_ERRORS])
def test_cell_value_errors(cell, override, match):
    with pytest.raises(ValueError, match=match):
        cell_call(cell, **override)


def test_w_h_error_names_the_gate_count():
    # An RNN-shaped W_h (H, H) with an LSTM: the message says what was expected.
    with pytest.raises(ValueError, match=r"W_h: expected shape \(16, 4\)"):
        cell_call("lstm", W_h=np.zeros((16, 5), np.float32))
    with pytest.raises(ValueError, match=r"W_h: expected shape \(12, 4\)"):
        cell_call("gru", W_h=np.zeros((12, 5), np.float32))


# ---------------------------------------------------------------- backward


def test_rnn_backward_error_messages(rng):
    w = weights(rng, "rnn", 3, 4)
    _, _, cache = F.rnn(rng.standard_normal((2, 5, 3)), **w, return_cache=True)
    with pytest.raises(ValueError, match=r"dh_seq: expected shape \(2, 5, 4\) like the forward's h_seq, got \(2, 5, 3\)"):
        F.rnn_backward(cache, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(2, 4\) like the forward's h_n, got \(4,\)"):
        F.rnn_backward(cache, None, np.zeros(4))
    with pytest.raises(TypeError, match="dh_n: expected an array of real numbers"):
        F.rnn_backward(cache, None, np.zeros((2, 4), complex))
    with pytest.raises(TypeError, match="cache: expected the cache returned by rnn"):
        F.rnn_backward({"not": "a cache"})


@pytest.mark.parametrize("made_by, backward_of", [("lstm", "rnn"), ("rnn", "gru"), ("gru", "lstm")])
def test_backward_refuses_another_cells_cache(rng, made_by, backward_of):
    w = weights(rng, made_by, 3, 4)
    _, _, cache = getattr(F, made_by)(rng.standard_normal((2, 5, 3)), **w, return_cache=True)
    with pytest.raises(TypeError, match=rf"cache: expected the cache returned by {backward_of}\(\.\.\., "
                                        rf"return_cache=True\), got the cache of {made_by}\(\.\.\.\)"):
        getattr(F, backward_of + "_backward")(cache)


def test_backward_errors(rng, cell):
    w = weights(rng, cell, 3, 4)
    cache = forward(cell, rng.standard_normal((2, 5, 3)), w, return_cache=True)[2]
    with pytest.raises(ValueError, match=r"dh_seq"):
        backward(cell, cache, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match=r"dh_n"):
        backward(cell, cache, None, np.zeros(4))
    with pytest.raises(TypeError, match=r"dh_n"):
        backward(cell, cache, None, np.zeros((2, 4), complex))
    if is_lstm(cell):
        with pytest.raises(ValueError, match=r"dc_n"):
            F.lstm_backward(cache, None, None, np.zeros((2, 5)))
    with pytest.raises(TypeError, match="cache"):
        backward(cell, {"not": "a cache"})
    # A cache of every other cell kind.
    for other in ("rnn", "lstm", "gru"):
        if other == cell.split("_")[0]:
            continue
        foreign = forward(other, rng.standard_normal((2, 5, 3)), weights(rng, other, 3, 4), return_cache=True)[2]
        with pytest.raises(TypeError, match="cache"):
            backward(cell, foreign)
        with pytest.raises(TypeError, match="cache"):
            backward(other, cache)


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=0, hidden_size=3), ValueError, "input_size"),
    (dict(input_size=2.5, hidden_size=3), TypeError, "input_size"),
    (dict(input_size=True, hidden_size=3), TypeError, "input_size"),
    (dict(input_size=2, hidden_size=-1), ValueError, "hidden_size"),
    (dict(input_size=2, hidden_size=3, output_size=0), ValueError, "output_size"),
    (dict(input_size=2, hidden_size=3, activation="gelu"), ValueError, "activation"),
    (dict(input_size=2, hidden_size=3, activation=None), TypeError, "activation"),
    (dict(input_size=2, hidden_size=3, dtype="float16"), ValueError, "dtype"),
    (dict(input_size=2, hidden_size=3, dtype="nonsense"), ValueError, "dtype"),
    (dict(input_size=2, hidden_size=3, bias="yes"), TypeError, "bias"),
    (dict(input_size=2, hidden_size=3, batch_first=1), TypeError, "batch_first"),
    (dict(input_size=2, hidden_size=3, seed=-1), ValueError, "seed"),
])
def test_rnn_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        rx.RNN(**kwargs)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(num_layers=0), ValueError, "num_layers: expected an int >= 1, got 0"),
    (dict(num_layers=2.0), TypeError, "num_layers: expected an int"),
    (dict(bidirectional="yes"), TypeError, "bidirectional: expected a bool"),
    (dict(dropout=-0.1), ValueError, r"dropout: expected a probability in \[0, 1\], got -0.1"),
    (dict(dropout=1.5), ValueError, "dropout"),
    (dict(dropout=float("nan")), ValueError, "dropout"),
    (dict(dropout="0.5"), TypeError, "dropout: expected a number"),
    (dict(dropout=True), TypeError, "dropout"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(dtype="int8"), ValueError, "dtype"),
])
def test_constructor_errors(kind, kwargs, error, match):
    args = dict(input_size=3, hidden_size=4)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        make(kind, **args)


def test_cell_specific_options():
    with pytest.raises(TypeError, match="activation"):
        rx.LSTM(3, 4, activation="tanh")
    with pytest.raises(TypeError, match="linear_before_reset"):
        rx.RNN(3, 4, linear_before_reset=True)
    with pytest.raises(TypeError, match="linear_before_reset: expected a bool"):
        rx.GRU(3, 4, linear_before_reset="no")
    assert rx.GRU(3, 4).linear_before_reset is True
    assert rx.RNN(3, 4, activation="relu").activation == "relu"
    assert not hasattr(rx.LSTM(3, 4), "activation")


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 3, 6)), r"h0: expected shape \(num_layers, B, H\) = \(1, 3, 6\), got \(2, 3, 6\)"),
    (np.zeros((3, 6)), r"h0: expected shape"),
])
def test_state_shape_errors(bad, match):
    model = rx.RNN(2, 6)
    with pytest.raises(ValueError, match=match):
        model(np.zeros((3, 4, 2)), bad)


def test_state_errors(kind):
    model = make(kind, 2, 6, num_layers=2, bidirectional=True)
    x = np.zeros((3, 4, 2))
    good = model.initial_state(3)
    if kind == "LSTM":
        with pytest.raises(TypeError, match=r"h0: expected an \(h, c\) pair for LSTM, got ndarray"):
            model(x, good[0])
        with pytest.raises(ValueError, match=r"h0\[1\]: expected shape \(num_layers\*2, B, H\) = \(4, 3, 6\), "
                                             r"got \(2, 3, 6\)"):
            model(x, (good[0], np.zeros((2, 3, 6))))
        out, _ = model(x, (good[0], None))  # a None half is zeros
        np.testing.assert_array_equal(out, model(x)[0])
    else:
        with pytest.raises(ValueError, match=r"h0: expected shape \(num_layers\*2, B, H\) = \(4, 3, 6\), "
                                             r"got \(2, 3, 6\)"):
            model(x, np.zeros((2, 3, 6)))
        with pytest.raises(TypeError, match="h0: expected an array of real numbers"):
            model(x, np.zeros((4, 3, 6), complex))
    with pytest.raises(ValueError, match=r"x: expected shape .* \(input_size 2\)"):
        model(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match=r"lengths\[0\] = 9 is outside \[1, T\]"):
        model(x, lengths=[9, 1, 1])
    with pytest.raises(TypeError, match="return_sequences"):
        model(x, return_sequences=None)


def test_step_errors(kind):
    model = make(kind, 3, 5, num_layers=2)
    with pytest.raises(ValueError, match=r"x_t: expected shape \(B, 3\) or \(3,\)"):
        model.step(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="x_t"):
        model.step(np.zeros(3, complex))
    bad = (np.zeros((1, 2, 5)), np.zeros((2, 2, 5))) if kind == "LSTM" else np.zeros((1, 2, 5))
    with pytest.raises(ValueError, match=r"state.*expected shape \(num_layers, B, H\) = \(2, 2, 5\)"):
        model.step(np.zeros((2, 3)), bad)
    bi = make(kind, 3, 5, 3, bidirectional=True)
    with pytest.raises(ValueError, match="step: .*bidirectional"):
        bi.step(np.zeros(3))
    with pytest.raises(ValueError, match="generate: .*bidirectional"):
        bi.generate(np.zeros((1, 2, 3)), 3)
