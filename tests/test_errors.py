"""Every bad input the API names raises the documented error, naming the
argument, before any compute; nothing crashes the interpreter."""

import numpy as np
import pytest

import rnnext as rx
from rnnext import functional as F

I, H, B, T = 3, 4, 2, 5


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
