"""rnnext.reference.lstm and .gru are themselves checked: against torch.nn.LSTM
and torch.nn.GRU in float64 (packed sequences for lengths, the reverse half of
a bidirectional module for reverse), and ONNX's GRU form (linear_before_reset
False) against a hand-written step."""

import numpy as np
import pytest
from helpers import torch_forward, weights

from rnnext import reference

torch = pytest.importorskip("torch")


def torch_run(cell, w, x, h0, c0, lengths, reverse, bias=True):
    """torch's output (B, T, H) batch first and final states (B, H) with the
    weights w; reverse runs the backward half of a bidirectional module whose
    forward half is zero."""
    B, T, I = x.shape
    H = w["W_h"].shape[1]
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        I, H, batch_first=True, bidirectional=reverse, bias=bias, dtype=torch.float64)
    suffix = "_reverse" if reverse else ""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.get_parameter("weight_ih_l0" + suffix).copy_(torch.from_numpy(w["W_x"]))
        module.get_parameter("weight_hh_l0" + suffix).copy_(torch.from_numpy(w["W_h"]))
        if bias:
            module.get_parameter("bias_ih_l0" + suffix).copy_(torch.from_numpy(w["b_x"]))
            module.get_parameter("bias_hh_l0" + suffix).copy_(torch.from_numpy(w["b_h"]))
        out, final = torch_forward(module, cell, torch.from_numpy(x), None if h0 is None else torch.from_numpy(h0),
                                   None if c0 is None else torch.from_numpy(c0), lengths, reverse)
    final = tuple(s.numpy() for s in final)
    return out.numpy(), (final if cell == "lstm" else final[0])


def reference_run(cell, w, x, h0, c0, **kwargs):
    if cell == "lstm":
        return reference.lstm(x, w["W_x"], w["W_h"], w.get("b_x"), w.get("b_h"), h0, c0, **kwargs)
    return reference.gru(x, w["W_x"], w["W_h"], w.get("b_x"), w.get("b_h"), h0, **kwargs)


def assert_same(ours, theirs, what):
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-13, err_msg=what)


def compare(cell, got, expected, what):
    h_seq, final = got
    t_seq, t_final = expected
    assert_same(h_seq, t_seq, f"{what} h_seq")
    if cell == "lstm":
        assert_same(final[0], t_final[0], f"{what} h_n")
        assert_same(final[1], t_final[1], f"{what} c_n")
    else:
        assert_same(final, t_final, f"{what} h_n")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("use_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("states", [False, True], ids=["zero_state", "h0"])
def test_matches_torch(rng, cell, reverse, use_lengths, states):
    B, T, I, H = 4, 9, 5, 7
    w = weights(rng, cell, I, H)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H)) if states else None
    c0 = rng.standard_normal((B, H)) if states and cell == "lstm" else None
    lengths = np.array([3, 9, 1, 6]) if use_lengths else None
    got = reference_run(cell, w, x, h0, c0, lengths=lengths, reverse=reverse)
    compare(cell, got, torch_run(cell, w, x, h0, c0, lengths, reverse), f"{cell} reverse={reverse}")
    if use_lengths:
        for b, n in enumerate(lengths):
            assert not got[0][b, n:].any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_without_bias_matches_torch(rng, cell):
    w = weights(rng, cell, 3, 6, bias=False)
    x = rng.standard_normal((2, 5, 3))
    got = reference_run(cell, w, x, None, None)
    compare(cell, got, torch_run(cell, w, x, None, None, None, False, bias=False), f"{cell} no bias")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layouts(rng, cell):
    """Time-major and unbatched inputs give the batch-major results rearranged."""
    B, T, I, H = 3, 6, 4, 5
    w = weights(rng, cell, I, H)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    lengths = np.array([6, 2, 4])
    base_seq, base_final = reference_run(cell, w, x, h0, c0, lengths=lengths, reverse=True)
    tm_seq, tm_final = reference_run(cell, w, x.transpose(1, 0, 2), h0, c0, lengths=lengths, reverse=True,
                                     batch_first=False)
    np.testing.assert_array_equal(tm_seq, base_seq.transpose(1, 0, 2))
    np.testing.assert_array_equal(np.asarray(tm_final), np.asarray(base_final))
    for b in range(B):
        one_seq, one_final = reference_run(cell, w, x[b, :lengths[b]], h0[b], None if c0 is None else c0[b],
                                           reverse=True)
        assert one_seq.shape == (lengths[b], H)
        np.testing.assert_array_equal(one_seq, base_seq[b, :lengths[b]])
        if cell == "lstm":
            np.testing.assert_array_equal(one_final[0], base_final[0][b])
            np.testing.assert_array_equal(one_final[1], base_final[1][b])
        else:
            np.testing.assert_array_equal(one_final, base_final[b])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_float32_runs_in_float32(rng, cell):
    w = {k: v.astype(np.float32) for k, v in weights(rng, cell, 3, 4).items()}
    h_seq, final = reference_run(cell, w, rng.standard_normal((2, 5, 3)), None, None)
    assert h_seq.dtype == np.float32
    for s in (final if cell == "lstm" else (final,)):
        assert s.dtype == np.float32 and s.shape == (2, 4)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_gru_linear_before_reset_false_one_step(rng):
    """ONNX's default GRU (linear_before_reset=0), its spec's equations written
    out for one step with the ONNX weight layout (gate order z, r, h)."""
    I, H = 4, 6
    w = weights(rng, "gru", I, H)
    x = rng.standard_normal(I)
    h = rng.standard_normal(H)
    # rnnext/torch gate order r, z, n -> ONNX's z, r, h.
    Wr, Wz, Wh = np.split(w["W_x"], 3)
    Rr, Rz, Rh = np.split(w["W_h"], 3)
    Wbr, Wbz, Wbh = np.split(w["b_x"], 3)
    Rbr, Rbz, Rbh = np.split(w["b_h"], 3)
    zt = sigmoid(x @ Wz.T + h @ Rz.T + Wbz + Rbz)
    rt = sigmoid(x @ Wr.T + h @ Rr.T + Wbr + Rbr)
    ht = np.tanh(x @ Wh.T + (rt * h) @ Rh.T + Rbh + Wbh)
    expected = (1 - zt) * ht + zt * h
    h_seq, h_n = reference.gru(x[None], w["W_x"], w["W_h"], w["b_x"], w["b_h"], h, linear_before_reset=False)
    assert_same(h_n, expected, "lbr=False")
    assert_same(h_seq[0], expected, "lbr=False h_seq")
    # The two forms differ (whenever r is not all ones).
    lbr = reference.gru(x[None], w["W_x"], w["W_h"], w["b_x"], w["b_h"], h)[1]
    assert np.abs(lbr - expected).max() > 1e-6


def test_gru_linear_before_reset_false_sequence(rng):
    """Several steps, lengths and reverse in the ONNX form: the hand-written step iterated."""
    B, T, I, H = 3, 5, 2, 4
    w = weights(rng, "gru", I, H)
    x = rng.standard_normal((B, T, I))
    h0 = rng.standard_normal((B, H))
    lengths = np.array([5, 1, 3])
    Wr, Wz, Wn = np.split(w["W_x"], 3)
    Rr, Rz, Rn = np.split(w["W_h"], 3)
    br, bz, bn = np.split(w["b_x"], 3)
    cr, cz, cn = np.split(w["b_h"], 3)
    for reverse in (False, True):
        h_seq, h_n = reference.gru(x, **w, h0=h0, lengths=lengths, reverse=reverse, linear_before_reset=False)
        for b in range(B):
            h = h0[b]
            steps = range(lengths[b])[::-1] if reverse else range(lengths[b])
            for t in steps:
                r = sigmoid(Wr @ x[b, t] + br + Rr @ h + cr)
                z = sigmoid(Wz @ x[b, t] + bz + Rz @ h + cz)
                n = np.tanh(Wn @ x[b, t] + bn + Rn @ (r * h) + cn)
                h = (1 - z) * n + z * h
                assert_same(h_seq[b, t], h, f"reverse={reverse} b={b} t={t}")
            assert_same(h_n[b], h, f"reverse={reverse} h_n[{b}]")
            assert not h_seq[b, lengths[b]:].any()


def test_lstm_one_step_by_hand(rng):
    I, H = 3, 5
    w = weights(rng, "lstm", I, H)
    x, h, c = rng.standard_normal(I), rng.standard_normal(H), rng.standard_normal(H)
    z = w["W_x"] @ x + w["b_x"] + w["W_h"] @ h + w["b_h"]
    i, f, g, o = np.split(z, 4)
    c1 = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h1 = sigmoid(o) * np.tanh(c1)
    h_seq, (h_n, c_n) = reference.lstm(x[None], **w, h0=h, c0=c)
    assert_same(h_n, h1, "h")
    assert_same(c_n, c1, "c")

