"""Losses, model gradients, fit, evaluate, truncated BPTT, dropout, for one
and several layers of every model class."""

import copy

import numpy as np
import pytest
from helpers import make, model_numeric_gradient, model_state, states_of

import rnnext as rx
from rnnext import train


def data(rng, B=6, T=9, I=3, O=2, kind="mse", per_step=True):
    x = rng.standard_normal((B, T, I))
    if kind == "mse":
        y = rng.standard_normal((B, T, O) if per_step else (B, O))
    else:
        y = rng.integers(0, O, (B, T) if per_step else (B,))
    return x, y


# ---------------------------------------------------------------- losses


def test_mse_definition(rng):
    y = rng.standard_normal((3, 4, 2))
    target = rng.standard_normal((3, 4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    target[~mask] = np.nan  # never read
    loss, dy, count = train.mse_loss(y, target, mask)
    diff = (y - target)[mask]
    assert count == mask.sum() * 2
    assert loss == pytest.approx(np.mean(diff**2), rel=1e-12)
    np.testing.assert_allclose(dy[mask], 2 * diff / count)
    assert not dy[~mask].any()


def test_cross_entropy_definition_and_stability(rng):
    y = rng.standard_normal((4, 5)) * 3
    ids = rng.integers(0, 5, 4)
    loss, dy, count = train.cross_entropy_loss(y, ids, None)
    logp = y - np.log(np.exp(y).sum(-1, keepdims=True))
    assert count == 4
    assert loss == pytest.approx(-logp[np.arange(4), ids].mean(), rel=1e-12)
    expected = np.exp(logp)
    expected[np.arange(4), ids] -= 1
    np.testing.assert_allclose(dy, expected / 4, rtol=1e-12)
    # Huge logits: log-sum-exp keeps the loss finite and exact.
    big = np.array([[1000.0, 0.0], [0.0, -1000.0]])
    loss, dy, _ = train.cross_entropy_loss(big, np.array([1, 1]), None)
    assert loss == pytest.approx((1000.0 + 1000.0) / 2)
    assert np.all(np.isfinite(dy))


# ---------------------------------------------------------------- gradients against torch

torch_cases = [("mse", True), ("mse", False), ("cross_entropy", True), ("cross_entropy", False)]


@pytest.mark.parametrize("kind,per_step", torch_cases)
@pytest.mark.parametrize("head", [True, False])
def test_loss_and_grads_match_torch(rng, kind, per_step, head):
    torch = pytest.importorskip("torch")
    B, T, I, H = 5, 8, 3, 6
    O = 4 if head else H
    module = torch.nn.RNN(I, H, batch_first=True, dtype=torch.float64)
    linear = torch.nn.Linear(H, O, dtype=torch.float64) if head else None
    model = rx.from_torch(module, linear)
    x, y = data(rng, B, T, I, O, kind, per_step)
    lengths = np.array([8, 1, 5, 8, 3])
    h0 = rng.standard_normal((1, B, H))
    if kind == "cross_entropy" and not head:
        with pytest.warns(UserWarning, match="without a head"):
            loss, grads = model.loss_and_grads(x, y, loss=kind, h0=h0, lengths=lengths)
    else:
        loss, grads = model.loss_and_grads(x, y, loss=kind, h0=h0, lengths=lengths)

    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, h_n = module(packed, torch.tensor(h0))
    h_seq, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    feats = h_seq if per_step else h_n[0]
    logits = linear(feats) if head else feats
    if per_step:
        mask = torch.tensor(np.arange(T)[None] < lengths[:, None])
        logits, target = logits[mask], torch.tensor(y)[mask]
    else:
        target = torch.tensor(y)
    if kind == "mse":
        expected = torch.nn.functional.mse_loss(logits, target)
    else:
        expected = torch.nn.functional.cross_entropy(logits, target)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-12)
    torch_grads = {"W_x_l0": module.weight_ih_l0.grad, "W_h_l0": module.weight_hh_l0.grad,
                   "b_x_l0": module.bias_ih_l0.grad, "b_h_l0": module.bias_hh_l0.grad}
    if head:
        torch_grads.update(W_o=linear.weight.grad, b_o=linear.bias.grad)
    assert set(grads) == set(torch_grads)
    for name, g in torch_grads.items():
        np.testing.assert_allclose(grads[name], g.numpy(), rtol=1e-9, atol=1e-13, err_msg=name)


def test_loss_and_grads_layouts_agree(rng):
    model = rx.RNN(3, 5, 2, dtype="float64", seed=0)
    x, y = data(rng, 4, 6, 3, 2, "cross_entropy")
    loss, grads = model.loss_and_grads(x, y, loss="cross_entropy", lengths=[6, 2, 3, 1])
    tm = rx.RNN.from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    loss_t, grads_t = tm.loss_and_grads(x.transpose(1, 0, 2), y.T, loss="cross_entropy", lengths=[6, 2, 3, 1])
    assert loss_t == pytest.approx(loss, rel=1e-14)
    for k in grads:
        np.testing.assert_allclose(grads_t[k], grads[k], rtol=1e-12, atol=1e-15)
    # Unbatched: the same as a batch of one.
    l1, g1 = model.loss_and_grads(x[0], y[0], loss="cross_entropy")
    l2, g2 = model.loss_and_grads(x[:1], y[:1], loss="cross_entropy")
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


def test_return_sequences_inference_and_override(rng):
    model = rx.RNN(3, 5, 2, dtype="float64", seed=0)
    x = rng.standard_normal((4, 6, 3))
    last = rng.standard_normal((4, 2))
    l_auto, _ = model.loss_and_grads(x, last)
    l_explicit, _ = model.loss_and_grads(x, last, return_sequences=False)
    assert l_auto == l_explicit
    out = model(x, return_sequences=False)[0]
    assert l_auto == pytest.approx(np.mean((out - last) ** 2))
    with pytest.raises(ValueError, match=r"target: expected shape \(4, 6, 2\) for mse at every step"):
        model.loss_and_grads(x, last, return_sequences=True)


@pytest.mark.parametrize("target,match,error", [
    (np.zeros((4, 6)), "cross_entropy expects integer class ids", TypeError),
    (np.full((4, 6), 2), r"class ids must be in \[0, 2\), got 2", ValueError),
    (np.zeros((4, 7), int), r"target: expected shape \(4, 6\)", ValueError),
])
def test_target_errors(rng, target, match, error):
    model = rx.RNN(3, 5, 2)
    with pytest.raises(error, match=match):
        model.loss_and_grads(rng.standard_normal((4, 6, 3)), target, loss="cross_entropy")


def test_class_ids_past_lengths_are_ignored(rng):
    model = rx.RNN(3, 5, 2, dtype="float64", seed=0)
    x = rng.standard_normal((2, 4, 3))
    y = np.array([[0, 1, -100, -100], [1, 1, 0, -100]])
    lengths = [2, 3]
    loss, _ = model.loss_and_grads(x, y, loss="cross_entropy", lengths=lengths)
    y_clean = np.where(y < 0, 0, y)
    assert loss == model.loss_and_grads(x, y_clean, loss="cross_entropy", lengths=lengths)[0]
    with pytest.raises(ValueError, match="loss: expected 'mse' or 'cross_entropy', got 'l1'"):
        model.loss_and_grads(x, y_clean, loss="l1")


# ---------------------------------------------------------------- fit


def running_parity(rng, n, T):
    x = rng.choice([-1.0, 1.0], size=(n, T, 1))
    y = (np.cumsum(x[..., 0] < 0, axis=1) % 2).astype(np.int64)
    return x, y


def test_fit_learns_parity(rng):
    """A task that needs memory: the parity of the -1s read so far."""
    x, y = running_parity(rng, 1200, 8)
    model = rx.RNN(1, 16, 2, seed=0)
    history = model.fit(x[:1000], y[:1000], loss="cross_entropy", epochs=25, lr=0.01, seed=0, progress=False,
                        validation_data=(x[1000:], y[1000:]))
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert len(history["val_loss"]) == 25
    accuracy = np.mean(model.predict(x[1000:]).argmax(-1) == y[1000:])
    assert accuracy > 0.95


def test_fit_sgd_reduces_mse(rng):
    x = rng.standard_normal((64, 10, 2))
    y = np.cumsum(x, axis=1)[:, :, :1] * 0.2  # a running sum: memory again
    model = rx.RNN(2, 8, 1, seed=1)
    history = model.fit(x, y, loss="mse", epochs=30, batch_size=16, optimizer="sgd", lr=0.05, seed=0,
                        progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]


def test_fit_is_reproducible(rng):
    x, y = running_parity(rng, 64, 5)
    a, b = rx.RNN(1, 8, 2, seed=0), rx.RNN(1, 8, 2, seed=0)
    ha = a.fit(x, y, loss="cross_entropy", epochs=2, batch_size=8, seed=3, progress=False)
    hb = b.fit(x, y, loss="cross_entropy", epochs=2, batch_size=8, seed=3, progress=False)
    assert ha == hb
    np.testing.assert_array_equal(a.W_h, b.W_h)


def test_one_sgd_step_matches_manual_update(rng):
    x, y = data(rng, 4, 5, 3, 2)
    model = rx.RNN(3, 6, 2, dtype="float64", seed=0)
    before = model.state_dict()
    loss, grads = model.loss_and_grads(x, y)
    history = model.fit(x, y, loss="mse", epochs=1, batch_size=4, optimizer="sgd", lr=0.1, shuffle=False,
                        progress=False)
    assert history["loss"] == [pytest.approx(loss, rel=1e-14)]
    for k in before:
        np.testing.assert_allclose(model.params[k], before[k] - 0.1 * grads[k], rtol=1e-14, atol=1e-16)


def test_adam_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x, y = data(rng, 4, 5, 3, 2)
    module = torch.nn.RNN(3, 6, batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(6, 2, dtype=torch.float64)
    model = rx.from_torch(module, head)
    model.fit(x, y, loss="mse", epochs=3, batch_size=4, optimizer="adam", lr=0.01, shuffle=False, progress=False)
    params = list(module.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(head(module(torch.tensor(x))[0]), torch.tensor(y)).backward()
        opt.step()
    expected = rx.from_torch(module, head)
    for k in model.params:
        np.testing.assert_allclose(model.params[k], expected.params[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_clip_norm_bounds_each_update(rng):
    x, y = data(rng, 4, 5, 3, 2)
    model = rx.RNN(3, 6, 2, dtype="float64", seed=0)
    _, grads = model.loss_and_grads(x, y)
    norm = train.global_norm(grads)
    clip = norm / 10
    before = model.state_dict()
    model.fit(x, y, loss="mse", epochs=1, batch_size=4, optimizer="sgd", lr=1.0, clip_norm=clip, progress=False)
    step = np.sqrt(sum(np.sum((model.params[k] - before[k]) ** 2) for k in before))
    assert step == pytest.approx(clip, rel=1e-5)
    # Clipping leaves small gradients alone and keeps their direction.
    clipped, reported = train.clip_grad_norm(grads, 2 * norm)
    assert reported == pytest.approx(norm)
    for k in grads:
        np.testing.assert_array_equal(clipped[k], grads[k])


def test_tbptt_carries_state_not_gradient(rng):
    x, y = data(rng, 3, 10, 2, 2)
    lengths = np.array([10, 4, 7])
    model = rx.RNN(2, 5, 2, dtype="float64", seed=0)
    manual = copy.deepcopy(model)
    model.fit(x, y, loss="mse", epochs=1, batch_size=3, optimizer="sgd", lr=0.1, tbptt=4, lengths=lengths,
              shuffle=False, progress=False)
    # The same by hand: chunks of 4 steps, the state carried, one SGD step
    # (momentum starts at zero) per chunk, finished sequences dropped.
    state = np.zeros((3, 5))
    velocity = None
    for start in range(0, 10, 4):
        chunk = np.clip(lengths - start, 0, 4)
        live = np.flatnonzero(chunk > 0)
        xs, ys = x[live, start:start + 4], y[live, start:start + 4]
        n = xs.shape[1]
        ls = np.minimum(chunk[live], n)
        _, grads = manual.loss_and_grads(xs, ys, h0=state[live][None], lengths=ls)
        _, h_n = manual(xs, state[live][None], lengths=ls)
        state[live] = h_n[0]
        velocity = grads if velocity is None else {k: 0.9 * velocity[k] + grads[k] for k in grads}
        manual.load_state_dict({k: manual.params[k] - 0.1 * velocity[k] for k in grads})
    for k in model.params:
        np.testing.assert_allclose(model.params[k], manual.params[k], rtol=1e-12, atol=1e-14, err_msg=k)
    with pytest.raises(ValueError, match="tbptt: truncated BPTT needs per-step targets"):
        model.fit(x, y[:, -1], loss="mse", tbptt=4, progress=False)


def test_full_length_tbptt_is_full_bptt(rng):
    x, y = data(rng, 4, 6, 2, 2)
    a = rx.RNN(2, 5, 2, dtype="float64", seed=0)
    b = copy.deepcopy(a)
    a.fit(x, y, loss="mse", epochs=2, batch_size=2, tbptt=6, seed=1, progress=False)
    b.fit(x, y, loss="mse", epochs=2, batch_size=2, seed=1, progress=False)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_non_finite_loss_stops_training(rng):
    x, y = data(rng, 8, 5, 3, 2)
    y[5:] = 1e200  # finite targets (fit refuses NaN in them) whose loss overflows
    model = rx.RNN(3, 6, 2, seed=0)
    before = model.state_dict()
    with pytest.raises(FloatingPointError, match="loss is inf at epoch 1, batch 2"):
        model.fit(x, y, loss="mse", epochs=1, batch_size=4, shuffle=False, progress=False)
    # The first batch was applied, the one with Inf was not.
    assert not np.array_equal(model.W_h, before["W_h_l0"])
    assert np.all(np.isfinite(model.W_h))


def test_exploding_model_raises_instead_of_training_on_nan(rng):
    x = rng.standard_normal((4, 60, 2)) * 10
    y = rng.standard_normal((4, 60, 1))
    model = rx.RNN(2, 16, 1, activation="relu", seed=0)
    model.W_h = np.eye(16) * 3.0
    with pytest.raises(FloatingPointError, match="at epoch 1, batch 1"):
        model.fit(x, y, loss="mse", epochs=3, batch_size=4, lr=0.1, progress=False)


def test_callbacks_and_history(rng):
    x, y = data(rng, 8, 4, 3, 2)
    model = rx.RNN(3, 6, 2, seed=0)
    seen = []

    def stop_after_two(epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 1

    history = model.fit(x, y, loss="mse", epochs=10, callbacks=[stop_after_two], progress=False,
                        validation_data=(x, y))
    assert seen == [(0, ["loss", "val_loss"]), (1, ["loss", "val_loss"])]
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(x, y, loss="mse"), rel=1e-6)


def test_progress_bar(rng, capsys):
    x, y = data(rng, 8, 4, 3, 2)
    rx.RNN(3, 6, 2, seed=0).fit(x, y, loss="mse", epochs=1, batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "loss=" in err
    rx.RNN(3, 6, 2, seed=0).fit(x, y, loss="mse", epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_evaluate(rng):
    x, y = data(rng, 10, 6, 3, 2, "cross_entropy")
    lengths = rng.integers(1, 7, 10)
    model = rx.RNN(3, 6, 2, dtype="float64", seed=0)
    full = model.loss_and_grads(x, y, loss="cross_entropy", lengths=lengths)[0]
    assert model.evaluate(x, y, loss="cross_entropy", lengths=lengths) == pytest.approx(full, rel=1e-12)
    assert model.evaluate(x, y, loss="cross_entropy", lengths=lengths, batch_size=3) == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(loss="mse", optimizer="rmsprop"), ValueError, "optimizer: expected 'sgd', 'adam', 'adamw'"),
    (dict(loss="mse", lr=0), ValueError, "lr: expected a positive number"),
    (dict(loss="mse", lr="fast"), TypeError, "lr"),
    (dict(loss="mse", epochs=0), ValueError, "epochs"),
    (dict(loss="mse", batch_size=2.5), TypeError, "batch_size"),
    (dict(loss="mse", clip_norm=-1.0), ValueError, "clip_norm"),
    (dict(loss="mse", tbptt=0), ValueError, "tbptt"),
    (dict(loss="mse", callbacks=[1]), TypeError, "callbacks"),
    (dict(loss="mse", validation_data=(1,)), ValueError, "validation_data"),
    (dict(loss="mse", lengths=[1.5, 2.0]), TypeError, "lengths"),
    (dict(loss="mse", lengths=[0, 2]), ValueError, r"lengths\[0\] = 0"),
])
def test_fit_errors(rng, kwargs, error, match):
    x, y = data(rng, 2, 4, 3, 2)
    with pytest.raises(error, match=match):
        rx.RNN(3, 6, 2).fit(x, y, progress=False, **kwargs)


# ---------------------------------------------------------------- dropout


def test_dropout_only_in_fit(rng, kind):
    x = rng.standard_normal((6, 5, 3))
    y = rng.standard_normal((6, 5, 2))
    model = make(kind, 3, 8, 2, num_layers=3, dropout=0.5, dtype="float64", seed=0)
    plain = make(kind, 3, 8, 2, num_layers=3, dtype="float64", seed=0)
    np.testing.assert_array_equal(model(x)[0], plain(x)[0])
    np.testing.assert_array_equal(model(x)[0], model(x)[0])
    np.testing.assert_array_equal(model.predict(x), plain.predict(x))
    loss, grads = model.loss_and_grads(x, y)
    loss_plain, grads_plain = plain.loss_and_grads(x, y)
    assert loss == loss_plain
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_plain[k])
    y_step, _ = model.step(x[:, 0])
    np.testing.assert_array_equal(y_step, plain.step(x[:, 0])[0])
    # In fit it drops: the same seeded fit differs from the model without dropout, and repeats exactly.
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ha = a.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    hb = b.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    hp = plain.fit(x, y, loss="mse", epochs=2, batch_size=3, optimizer="sgd", lr=0.1, seed=1, progress=False)
    assert ha == hb and ha != hp
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W_x_l1"], plain.params["W_x_l1"])
    # The first layer's input is never dropped: a one-layer model fits the same with any dropout.
    one = make(kind, 3, 8, 2, seed=0)
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        one_dropout = make(kind, 3, 8, 2, dropout=0.5, seed=0)
    h1 = one.fit(x, y, loss="mse", epochs=1, batch_size=3, seed=1, progress=False)
    h2 = one_dropout.fit(x, y, loss="mse", epochs=1, batch_size=3, seed=1, progress=False)
    assert h1 == h2


def test_dropout_masks_inputs_and_gradients_alike(rng, kind):
    """With fixed masks (a fixed generator), the training forward is a
    deterministic function of the parameters whose gradient is what
    _backward_cache returns: the masks scale the backward exactly as the forward."""
    model = make(kind, 2, 3, 2, num_layers=2, bidirectional=True, dropout=0.4, dtype="float64", seed=0)
    x = rng.standard_normal((3, 4, 2))
    lengths = np.array([4, 2, 3])
    d_out = rng.standard_normal((3, 4, 2))

    def run(params):
        model.load_state_dict(params)
        return model._forward_cache(x, lengths=lengths, dropout_rng=np.random.default_rng(7))

    params = model.state_dict()
    out, _, cache = run(params)
    assert not np.allclose(out, model(x, lengths=lengths)[0])  # something was dropped
    grads = model._backward_cache(cache, d_out).params
    objective = lambda p: float(np.sum(run(p)[0] * d_out))  # noqa: E731
    for key in ("W_x_l1", "W_x_l1_reverse", "W_h_l0", "b_x_l0_reverse"):
        np.testing.assert_allclose(grads[key], model_numeric_gradient(objective, params, key), rtol=1e-6, atol=1e-9,
                                   err_msg=key)


def test_dropout_mask_is_inverted_dropout():
    from rnnext.layers import dropout_mask

    mask = dropout_mask((200, 50, 8), 0.3, np.dtype(np.float32), np.random.default_rng(0))
    kept = mask != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(mask[kept], 1 / 0.7, rtol=1e-6)
    assert not dropout_mask((3, 4), 1.0, np.dtype(np.float64), np.random.default_rng(0)).any()


# ---------------------------------------------------------------- stacked models


def test_fit_learns_a_toy_task_with_an_lstm(rng):
    """Many-to-one: does the sequence hold more +1s than -1s? A stacked LSTM with dropout learns it."""
    x = rng.choice([-1.0, 1.0], size=(700, 9, 1))
    lengths = rng.integers(5, 10, 700) // 2 * 2 + 1  # odd lengths: no ties
    y = np.array([(x[b, :n, 0].sum() > 0) for b, n in enumerate(lengths)], np.int64)
    model = rx.LSTM(1, 12, 2, num_layers=2, dropout=0.1, seed=0)
    history = model.fit(x[:600], y[:600], loss="cross_entropy", lengths=lengths[:600], epochs=15, lr=0.02,
                        seed=0, progress=False, validation_data=(x[600:], y[600:], lengths[600:]))
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    logits, _ = model(x[600:], lengths=lengths[600:], return_sequences=False)
    assert np.mean(logits.argmax(-1) == y[600:]) > 0.9


def test_tbptt_with_a_stacked_model_carries_the_state(rng, kind):
    x = rng.standard_normal((3, 8, 2))
    y = rng.standard_normal((3, 8, 2))
    lengths = np.array([8, 3, 6])
    model = make(kind, 2, 4, 2, num_layers=2, dtype="float64", seed=0)
    manual = copy.deepcopy(model)
    model.fit(x, y, loss="mse", epochs=1, batch_size=3, optimizer="sgd", lr=0.1, tbptt=4, lengths=lengths,
              shuffle=False, progress=False)
    state = manual.initial_state(3)
    velocity = None
    for start in (0, 4):
        chunk = np.clip(lengths - start, 0, 4)
        live = np.flatnonzero(chunk > 0)
        h0 = tuple(s[:, live] for s in state) if kind == "LSTM" else state[:, live]
        xs, ys = x[live, start:start + 4], y[live, start:start + 4]
        _, grads = manual.loss_and_grads(xs, ys, h0=h0, lengths=chunk[live])
        _, h_n = manual(xs, h0, lengths=chunk[live])
        for s, h in zip(states_of(state), states_of(h_n)):
            if s is not None:
                s[:, live] = h
        velocity = grads if velocity is None else {k: 0.9 * velocity[k] + grads[k] for k in grads}
        manual.load_state_dict({k: manual.params[k] - 0.1 * velocity[k] for k in grads})
    for k in model.params:
        np.testing.assert_allclose(model.params[k], manual.params[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_loss_and_grads_layouts_and_unbatched_agree(rng, kind):
    model = make(kind, 3, 4, 2, num_layers=2, bidirectional=True, dtype="float64", seed=0)
    x = rng.standard_normal((3, 5, 3))
    y = rng.integers(0, 2, (3, 5))
    lengths = [5, 2, 4]
    loss, grads = model.loss_and_grads(x, y, loss="cross_entropy", lengths=lengths)
    tm = type(model).from_config({**model.config, "batch_first": False})
    tm.load_state_dict(model.state_dict())
    loss_t, grads_t = tm.loss_and_grads(x.transpose(1, 0, 2), y.T, loss="cross_entropy", lengths=lengths)
    assert loss_t == pytest.approx(loss, rel=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads_t[k], grads[k], rtol=1e-12, atol=1e-15, err_msg=k)
    h0 = model_state(rng, kind, 4, 1, 4)
    h0_unbatched = tuple(s[:, 0] for s in h0) if kind == "LSTM" else h0[:, 0]
    l1, g1 = model.loss_and_grads(x[0], y[0], loss="cross_entropy", h0=h0_unbatched)
    l2, g2 = model.loss_and_grads(x[:1], y[:1], loss="cross_entropy", h0=h0)
    assert l1 == l2
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])
    # Without a head, the targets have D*H features.
    plain = make(kind, 3, 4, bidirectional=True, dtype="float64")
    value, _ = plain.loss_and_grads(x, rng.standard_normal((3, 8)))
    assert np.isfinite(value)
    assert plain.evaluate(x, rng.integers(0, 8, (3, 5)), loss="cross_entropy") > 0


