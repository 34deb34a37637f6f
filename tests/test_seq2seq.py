"""rnnext.Seq2Seq: gradients through decoder and encoder, greedy translation, errors."""

import numpy as np
import pytest
from helpers import numeric_gradient

import rnnext as rx
from rnnext.generate import one_hot


def tokens(rng, B, T, V, lengths):
    ids = rng.integers(0, V, (B, T))
    for b, n in enumerate(lengths):
        ids[b, n:] = 0
    return ids


def torch_loss(torch, enc, dec, head, src, tgt, bos, src_lengths, tgt_lengths, V_src, V_tgt, bidirectional):
    """The same teacher-forced loss written with torch modules."""
    F = torch.nn.functional
    x = F.one_hot(torch.tensor(src), V_src).double()
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(src_lengths), batch_first=True,
                                                     enforce_sorted=False)
    _, state = enc(packed)

    def bridge(h):
        if not bidirectional:
            return h
        L = h.shape[0] // 2
        h = h.reshape(L, 2, *h.shape[1:])
        return torch.cat([h[:, 0], h[:, 1]], dim=-1)

    state = tuple(bridge(s) for s in state) if isinstance(state, tuple) else bridge(state)
    inputs = F.one_hot(torch.tensor(tgt), V_tgt).double()
    first = torch.zeros_like(inputs[:, :1])
    first[..., bos] = 1
    inputs = torch.cat([first, inputs[:, :-1]], dim=1)
    packed = torch.nn.utils.rnn.pack_padded_sequence(inputs, torch.tensor(tgt_lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, _ = dec(packed, state)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=tgt.shape[1])
    logits = head(out)
    mask = torch.arange(tgt.shape[1])[None, :] < torch.tensor(tgt_lengths)[:, None]
    return F.cross_entropy(logits[mask], torch.tensor(tgt)[mask])


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_match_torch(rng, kind, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    V_src, V_tgt, H, L = 7, 9, 5, 2
    D = 2 if bidirectional else 1
    module = getattr(torch.nn, kind)
    enc = module(V_src, H, num_layers=L, bidirectional=bidirectional, batch_first=True).double()
    dec = module(V_tgt, D * H, num_layers=L, batch_first=True).double()
    head = torch.nn.Linear(D * H, V_tgt).double()
    B, Ts, Tt = 4, 6, 5
    src_lengths, tgt_lengths = np.array([6, 2, 4, 1]), np.array([3, 5, 1, 4])
    src, tgt = tokens(rng, B, Ts, V_src, src_lengths), tokens(rng, B, Tt, V_tgt, tgt_lengths)

    model = rx.Seq2Seq(rx.from_torch(enc), rx.from_torch(dec, head))
    loss, grads = model.loss_and_grads(src, tgt, bos=2, src_lengths=src_lengths, tgt_lengths=tgt_lengths)

    expected = torch_loss(torch, enc, dec, head, src, tgt, 2, src_lengths, tgt_lengths, V_src, V_tgt, bidirectional)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-10)
    names = {"weight_ih": "W_x", "weight_hh": "W_h", "bias_ih": "b_x", "bias_hh": "b_h"}
    torch_grads = {}
    for prefix, module_ in (("encoder", enc), ("decoder", dec)):
        for name, p in module_.named_parameters():
            kind_, rest = name.rsplit("_l", 1)
            torch_grads[f"{prefix}.{names[kind_]}_l{rest}"] = p.grad.numpy()
    torch_grads["decoder.W_o"] = head.weight.grad.numpy()
    torch_grads["decoder.b_o"] = head.bias.grad.numpy()
    assert set(grads) == set(torch_grads)
    for name, g in grads.items():
        np.testing.assert_allclose(g, torch_grads[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_gradients_match_finite_differences(rng):
    enc = rx.GRU(4, 3, dtype="float64", seed=0)
    dec = rx.GRU(5, 3, 5, dtype="float64", seed=1)
    model = rx.Seq2Seq(enc, dec)
    src, tgt = rng.integers(0, 4, (3, 4)), rng.integers(0, 5, (3, 3))
    kwargs = dict(bos=1, src_lengths=np.array([4, 2, 3]), tgt_lengths=np.array([3, 1, 2]))
    _, grads = model.loss_and_grads(src, tgt, **kwargs)
    for prefix, sub in (("encoder.", enc), ("decoder.", dec)):
        for name in sub.params:
            for _ in range(3):
                value = np.array(sub.params[name])
                idx = tuple(rng.integers(0, n) for n in value.shape)
                numeric = numeric_gradient(lambda: model.loss_and_grads(src, tgt, **kwargs)[0], value,
                                           indices=[idx], assign=lambda v: sub.params.__setitem__(name, v))[idx]
                assert grads[prefix + name][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (prefix + name, idx)


def test_translate_is_the_greedy_step_loop(rng):
    enc = rx.LSTM(6, 8, num_layers=2, bidirectional=True, seed=0)
    dec = rx.LSTM(5, 16, 5, num_layers=2, seed=1)
    model = rx.Seq2Seq(enc, dec)
    src = rng.integers(0, 6, (3, 4))
    lengths = np.array([4, 1, 3])
    out = model.translate(src, 7, bos=0, eos=4, src_lengths=lengths)
    assert out.dtype == np.int64 and out.shape[0] == 3 and 1 <= out.shape[1] <= 7

    _, (h, c) = enc(one_hot(src, 6, np.float32), lengths=lengths)
    state = tuple(np.concatenate([s.reshape(2, 2, 3, 8)[:, 0], s.reshape(2, 2, 3, 8)[:, 1]], axis=-1) for s in (h, c))
    token = one_hot(np.zeros(3, np.int64), 5, np.float32)
    for t in range(out.shape[1]):
        logits, state = dec.step(token, state)
        ids = logits.argmax(-1)
        for b in range(3):
            ended = 4 in list(out[b, :t])
            assert out[b, t] == (4 if ended else ids[b])
        token = one_hot(ids, 5, np.float32)
    for row in out:  # every row ends at its eos (or max_len), eos after it
        if 4 in row:
            assert np.all(row[list(row).index(4):] == 4)


def test_fit_trains_both_models_and_reports_history(rng):
    enc, dec = rx.GRU(5, 16, seed=0), rx.GRU(6, 16, 6, seed=1)
    model = rx.Seq2Seq(enc, dec)
    src = rng.integers(0, 5, (64, 4))
    tgt = np.concatenate([src[:, ::-1] + 1, np.zeros((64, 1), np.int64)], axis=1)  # reverse, shift, then eos 0
    before = {k: np.array(v) for k, v in enc.params.items()}
    history = model.fit(src, tgt, bos=0, epochs=30, batch_size=16, lr=2e-2, seed=0, progress=False,
                        validation_data=(src[:8], tgt[:8]))
    assert len(history["loss"]) == len(history["val_loss"]) == 30
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    assert any(not np.array_equal(before[k], enc.params[k]) for k in before)
    out = model.translate(src[:16], 6, bos=0, eos=0)
    assert np.mean(np.all(out[:, :5] == tgt[:16], axis=1)) > 0.5


def test_fit_takes_optimiser_objects_schedules_and_callbacks(rng):
    src = rng.integers(0, 5, (32, 4))
    tgt = np.concatenate([src[:, ::-1] + 1, np.zeros((32, 1), np.int64)], axis=1)

    def fresh():
        return rx.Seq2Seq(rx.GRU(5, 8, seed=0), rx.GRU(6, 8, 6, seed=1))

    kwargs = dict(bos=0, batch_size=8, shuffle=False, progress=False, lr=lambda epoch: 0.02 * 0.5**epoch)
    one, two = fresh(), fresh()
    opt_one, opt_two = rx.optim.Adam(), rx.optim.Adam()
    h = one.fit(src, tgt, epochs=2, optimizer=opt_one, **kwargs)
    ha = two.fit(src, tgt, epochs=1, optimizer=opt_two, **kwargs)
    hb = two.fit(src, tgt, epochs=1, optimizer=opt_two, **kwargs)
    assert h["loss"] == ha["loss"] + hb["loss"]
    assert sorted(opt_one.state)[0] == "decoder.W_h_l0"  # the state keyed per model
    for k in one.encoder.params:
        np.testing.assert_array_equal(one.encoder.params[k], two.encoder.params[k])
    # EarlyStopping restores both models' best weights.
    model = fresh()
    seen = []

    def record(epoch, logs):
        seen.append((model.encoder.state_dict(), model.decoder.state_dict()))

    stop = rx.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    scripted = [1.0, 0.5, 0.9, 0.8]

    def scripted_stop(epoch, logs):
        return stop(epoch, dict(logs, val_loss=scripted[epoch]))

    scripted_stop.set_context = stop.set_context
    scripted_stop.on_train_end = stop.on_train_end
    history = model.fit(src, tgt, epochs=4, validation_data=(src, tgt), callbacks=[record, scripted_stop],
                        **dict(kwargs, lr=0.05))
    assert len(history["loss"]) == 3 and stop.best_epoch == 1
    for k in model.encoder.params:
        np.testing.assert_array_equal(model.encoder.params[k], seen[1][0][k])
    for k in model.decoder.params:
        np.testing.assert_array_equal(model.decoder.params[k], seen[1][1][k])
    with pytest.raises(TypeError, match="callbacks: ModelCheckpoint saves RNN, LSTM and GRU models"):
        model.fit(src, tgt, callbacks=[rx.callbacks.ModelCheckpoint("m", monitor="loss")], progress=False)


def test_errors():
    with pytest.raises(TypeError, match="encoder"):
        rx.Seq2Seq(object(), rx.GRU(3, 4, 3))
    with pytest.raises(ValueError, match="decoder: needs a head"):
        rx.Seq2Seq(rx.GRU(3, 4), rx.GRU(3, 4))
    with pytest.raises(ValueError, match="unidirectional"):
        rx.Seq2Seq(rx.GRU(3, 4), rx.GRU(3, 4, 3, bidirectional=True))
    with pytest.raises(ValueError, match="states differ"):
        rx.Seq2Seq(rx.LSTM(3, 4), rx.GRU(3, 4, 3))
    with pytest.raises(ValueError, match="num_layers"):
        rx.Seq2Seq(rx.GRU(3, 4, num_layers=2), rx.GRU(3, 4, 3))
    with pytest.raises(ValueError, match="hidden_size 4 must equal"):
        rx.Seq2Seq(rx.GRU(3, 4, bidirectional=True), rx.GRU(3, 4, 3))
    with pytest.raises(ValueError, match="output_size"):
        rx.Seq2Seq(rx.GRU(3, 4), rx.GRU(3, 4, 5))
    model = rx.Seq2Seq(rx.GRU(3, 4), rx.GRU(5, 4, 5))
    src, tgt = np.zeros((2, 3), np.int64), np.zeros((2, 2), np.int64)
    with pytest.raises(ValueError, match="src: class ids must be in"):
        model.fit(src + 3, tgt, progress=False)
    with pytest.raises(ValueError, match="tgt: class ids must be in"):
        model.fit(src, tgt + 5, progress=False)
    with pytest.raises(ValueError, match="tgt: expected 2 sequences"):
        model.fit(src, np.zeros((3, 2), np.int64), progress=False)
    with pytest.raises(ValueError, match=r"src_lengths\[0\] = 4"):
        model.fit(src, tgt, src_lengths=[4, 1], progress=False)
    with pytest.raises(ValueError, match="bos"):
        model.translate(src, 3, bos=7, eos=0)
    with pytest.raises(TypeError, match="eos"):
        model.translate(src, 3, bos=0, eos=1.5)
    with pytest.raises(ValueError, match="max_len"):
        model.translate(src, 0, bos=0, eos=1)
