"""Token inputs (API.md section 8) in use: ``fit`` training the table,
files, pickles and quantized models, ``step`` and ``generate`` with ids,
Seq2Seq and Dask with ids, and the errors of every method (the outputs and
gradients against torch are in test_embedding.py)."""

import copy
import io
import json
import pickle

import numpy as np
import pytest
from helpers import make, states_of

import rnnext as rx

V, I, H = 11, 4, 5


def token_model(kind="LSTM", output_size=V, **kwargs):
    kwargs.setdefault("seed", 3)
    return make(kind, I, H, output_size, vocab_size=V, **kwargs)


def ids_of(rng, shape, vocab=V):
    return rng.integers(0, vocab, shape)


# ---------------------------------------------------------------- training


def test_fit_trains_the_table(rng, kind):
    model = make(kind, 8, 16, V, vocab_size=V, seed=0)
    # A next-token task: id t+1 follows id t (mod V), ids 9 and 10 never occur.
    start = rng.integers(0, 9, (64, 1))
    ids = (start + np.arange(13)) % 9
    before = np.array(model.params["embedding"])
    history = model.fit(ids[:, :-1], ids[:, 1:], loss="cross_entropy", epochs=15, lr=1e-2, progress=False, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    after = model.params["embedding"]
    assert not np.allclose(after[:9], before[:9])
    np.testing.assert_array_equal(after[9:], before[9:])  # no gradient, no Adam step
    assert model.evaluate(ids[:, :-1], ids[:, 1:], loss="cross_entropy") == pytest.approx(history["loss"][-1], rel=0.5)
    # tbptt and many-to-one targets read ids too.
    model.fit(ids[:, :-1], ids[:, 1:], loss="cross_entropy", tbptt=4, progress=False)
    model.fit(ids[:, :-1], ids[:, -1], loss="cross_entropy", lengths=np.full(64, 12), progress=False)
    model.fit(ids[0, :-1], ids[0, 1:], loss="cross_entropy", progress=False)  # unbatched


def test_fit_checks_every_id_before_training(rng):
    model = token_model()
    ids = ids_of(rng, (40, 5))
    ids[37, 2] = V
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"x: token ids must be in \[0, 11\) \(vocab_size\), got 11"):
        model.fit(ids, ids, loss="cross_entropy", batch_size=4, progress=False, shuffle=False)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    lengths = np.full(40, 5)
    lengths[37] = 2  # the bad id is padding now
    model.fit(ids, ids % V, loss="cross_entropy", lengths=lengths, progress=False)


# ---------------------------------------------------------------- files, copies, quantized


def test_files_pickle_and_copies(rng, tmp_path, kind):
    model = token_model(kind, num_layers=2)
    ids = ids_of(rng, (2, 5))
    expected = model(ids)[0]
    path = tmp_path / "m.safetensors"
    model.save(path)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    for clone in (rx.load(path), rx.load(buffer), rx.from_bytes(model.to_bytes()), pickle.loads(pickle.dumps(model)),
                  copy.deepcopy(model)):
        assert type(clone) is type(model) and clone.config == model.config
        np.testing.assert_array_equal(clone.params["embedding"], model.params["embedding"])
        np.testing.assert_array_equal(clone(ids)[0], expected)


def test_files_and_pickles_from_before_token_inputs_load(rng):
    from safetensors.numpy import load as load_arrays
    from safetensors.numpy import save as save_arrays

    model = rx.GRU(3, 4, 2, seed=1)
    data = model.to_bytes()
    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + size])["__metadata__"]
    config = json.loads(meta["config"])
    del config["vocab_size"]
    old = save_arrays(load_arrays(data), metadata={**meta, "config": json.dumps(config)})
    loaded = rx.from_bytes(old)
    assert loaded.config["vocab_size"] is None and loaded.config == model.config
    state = model.__getstate__()
    del state["config"]["vocab_size"]
    revived = rx.GRU.__new__(rx.GRU)
    revived.__setstate__(state)
    assert revived.config == model.config
    x = rng.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(revived(x)[0], model(x)[0])


def test_a_file_whose_table_does_not_fit_is_refused():
    from safetensors.numpy import load as load_arrays
    from safetensors.numpy import save as save_arrays

    data = token_model().to_bytes()
    size = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + size])["__metadata__"]
    tensors = load_arrays(data)
    tensors["embedding"] = tensors["embedding"][:-1]
    with pytest.raises(ValueError, match="not a valid rnnext model file: tensor 'embedding' has shape"):
        rx.from_bytes(save_arrays(tensors, metadata=meta))
    del tensors["embedding"]
    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(save_arrays(tensors, metadata=meta))


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_quantized_keeps_the_table_in_float32(rng, tmp_path, precision):
    model = token_model("LSTM", dtype="float64")
    q = model.quantize(precision)
    assert q.params["embedding"].dtype == np.float32
    np.testing.assert_array_equal(q.params["embedding"], model.params["embedding"].astype(np.float32))
    ids = ids_of(rng, (3, 8))
    features = model.params["embedding"][ids]
    plain = rx.LSTM(I, H, V, dtype="float64")
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "embedding"})
    np.testing.assert_array_equal(q(ids)[0], plain.quantize(precision)(features)[0])
    again = rx.from_bytes(q.to_bytes())
    np.testing.assert_array_equal(again(ids)[0], q(ids)[0])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(q))(ids)[0], q(ids)[0])
    np.testing.assert_array_equal(q.generate(ids, 4, mode="greedy"), again.generate(ids, 4, mode="greedy"))


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("num_layers", [1, 2])
def test_step_with_ids_equals_forward(rng, kind, num_layers):
    model = token_model(kind, num_layers=num_layers, dtype="float64")
    ids = ids_of(rng, (3, 6))
    out, h_n = model(ids)
    state = None
    for t in range(6):
        y, state = model.step(ids[:, t], state)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-12, atol=1e-14)
    for got, want in zip(states_of(state), states_of(h_n)):
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    y, _ = model.step(np.int64(ids[0, 0]))  # a scalar: one unbatched step
    np.testing.assert_allclose(y, model(ids[0, :1])[0][0], rtol=1e-12, atol=1e-14)
    assert model.step(int(ids[0, 0]))[0].shape == (V,)


def test_generate_feeds_ids_back(rng, kind):
    model = token_model(kind, num_layers=2, dtype="float64")
    prompt = ids_of(rng, (3, 4))
    got = model.generate(prompt, 6, mode="greedy")
    out, state = model(prompt)
    y, expected = out[:, -1], []
    for _ in range(6):
        c = y.argmax(-1)
        expected.append(c)
        y, state = model.step(c, state)
    np.testing.assert_array_equal(got, np.stack(expected, axis=1))
    assert model.generate(prompt[0], 6, mode="greedy").tolist() == got[0].tolist()
    sampled = model.generate(prompt, 6, mode="sample", top_k=3, seed=1)
    assert sampled.shape == (3, 6) and sampled.dtype == np.int64


# ---------------------------------------------------------------- Seq2Seq


def test_seq2seq_with_ids_equals_one_hot(rng):
    """With an identity table the token models compute what one-hot models do."""
    Vs, Vt = 6, 7
    enc_ids = rx.GRU(Vs, 8, vocab_size=Vs, dtype="float64", seed=0)
    dec_ids = rx.GRU(Vt, 8, Vt, vocab_size=Vt, dtype="float64", seed=1)
    enc_ids.params["embedding"] = np.eye(Vs)
    dec_ids.params["embedding"] = np.eye(Vt)
    enc_hot, dec_hot = rx.GRU(Vs, 8, dtype="float64"), rx.GRU(Vt, 8, Vt, dtype="float64")
    enc_hot.load_state_dict({k: v for k, v in enc_ids.state_dict().items() if k != "embedding"})
    dec_hot.load_state_dict({k: v for k, v in dec_ids.state_dict().items() if k != "embedding"})
    tokens, hot = rx.Seq2Seq(enc_ids, dec_ids), rx.Seq2Seq(enc_hot, dec_hot)
    src, tgt = rng.integers(0, Vs, (5, 4)), rng.integers(0, Vt, (5, 6))
    lengths = dict(src_lengths=np.array([4, 2, 3, 1, 4]), tgt_lengths=np.array([6, 6, 2, 3, 5]))
    a, ga = tokens.loss_and_grads(src, tgt, bos=0, **lengths)
    b, gb = hot.loss_and_grads(src, tgt, bos=0, **lengths)
    assert a == pytest.approx(b, rel=1e-12)
    for key, value in gb.items():
        np.testing.assert_allclose(ga[key], value, rtol=1e-10, atol=1e-13, err_msg=key)
    np.testing.assert_array_equal(tokens.translate(src, 5, bos=0, eos=1), hot.translate(src, 5, bos=0, eos=1))
    history = tokens.fit(src, tgt, bos=0, epochs=5, lr=1e-2, progress=False, **lengths)
    assert history["loss"][-1] < history["loss"][0]
    assert not np.allclose(enc_ids.params["embedding"], np.eye(Vs))
    with pytest.raises(ValueError, match="bos: the decoder has vocab_size"):
        tokens.fit(src, tgt, progress=False)
    with pytest.raises(TypeError, match="src: the encoder has vocab_size=6"):
        tokens.translate(np.zeros((2, 3, Vs)), 3, bos=0, eos=1)
    with pytest.raises(ValueError, match=r"output_size \(5\) must equal vocab_size \(7\)"):
        rx.Seq2Seq(enc_ids, rx.GRU(4, 8, 5, vocab_size=7))


# ---------------------------------------------------------------- Dask


def test_dask_predict_and_fit_with_ids(rng):
    da = pytest.importorskip("dask.array")
    import rnnext.dask  # noqa: F401 (rx.dask)
    model = token_model("GRU", dtype="float64")
    ids = ids_of(rng, (10, 6))
    lengths = rng.integers(1, 7, 10)
    X = da.from_array(ids, chunks=(4, -1))
    np.testing.assert_array_equal(rx.dask.predict(model, X, lengths=lengths).compute(),
                                  model.predict(ids, lengths=lengths))
    np.testing.assert_array_equal(rx.dask.predict(model, X, return_sequences=False).compute(),
                                  model(ids, return_sequences=False)[0])
    local = copy.deepcopy(model)
    target = ids_of(rng, (10, 6))
    a = local.fit(ids, target, loss="cross_entropy", epochs=2, batch_size=4, lengths=lengths, seed=0, progress=False)
    b = rx.dask.fit(model, X, target, loss="cross_entropy", epochs=2, batch_size=4, lengths=lengths, seed=0,
                    progress=False)
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-10)
    np.testing.assert_allclose(model.params["embedding"], local.params["embedding"], rtol=1e-10)
    with pytest.raises(TypeError, match=r"X: GRU\(.*vocab_size=11.*\) reads integer token ids"):
        rx.dask.predict(model, X.astype(np.float64))
    with pytest.raises(ValueError, match="token ids need a model with vocab_size"):
        rx.dask.predict(rx.GRU(I, H), X)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("value,error,match", [
    (0, ValueError, r"vocab_size: expected an int >= 1, got 0"),
    (2.5, TypeError, r"vocab_size: expected an int, got float"),
    (True, TypeError, r"vocab_size: expected an int, got bool"),
])
def test_bad_vocab_size(value, error, match):
    with pytest.raises(error, match=match):
        rx.RNN(3, 4, vocab_size=value)


def test_bad_ids(rng, kind):
    model = token_model(kind)
    for call in (lambda x: model(x), lambda x: model.predict(x), lambda x: model.forward_cache(x),
                 lambda x: model.loss_and_grads(x, np.zeros(x.shape, int), loss="cross_entropy"),
                 lambda x: model.evaluate(x, np.zeros(x.shape, int), loss="cross_entropy"),
                 lambda x: model.generate(x, 2, mode="greedy")):
        with pytest.raises(ValueError, match=r"x0?: token ids must be in \[0, 11\) \(vocab_size\), got -1"):
            call(np.array([[0, -1]]))
        with pytest.raises(ValueError, match=r"x0?: token ids must be in \[0, 11\) \(vocab_size\), got 11"):
            call(np.array([[0, 11]]))
        with pytest.raises(TypeError, match=r"x0?: .*vocab_size=11.* reads integer token ids .* got dtype float64"):
            call(np.zeros((2, 3)))
        with pytest.raises(ValueError, match=r"x0?: .* reads token ids \(B, T\) or \(T,\) .* got shape \(2, 3, 4\)"):
            call(np.zeros((2, 3, 4), int))
    with pytest.raises(ValueError, match=r"x_t: token ids must be in \[0, 11\)"):
        model.step(np.array([3, 11]))
    with pytest.raises(TypeError, match="x_t: .* reads integer token ids"):
        model.step(np.zeros((2, I)))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(1,\)"):
        model(np.zeros((1, 3), int), lengths=[1, 2])
    with pytest.raises(ValueError, match=r"lengths\[0\] = 4 is outside \[1, T\] with T = 3"):
        model(np.zeros((1, 3), int), lengths=[4])


def test_ids_to_a_model_without_vocab_size_suggest_it(rng, kind):
    """Issue 16: ids given to a feature model used to be reported as a target problem."""
    model = make(kind, 80, 16, 80)
    ids = rng.integers(0, 80, (32, 64))
    for call in (lambda: model.fit(ids, ids, loss="cross_entropy", progress=False),
                 lambda: model.loss_and_grads(ids, ids, loss="cross_entropy"),
                 lambda: model(ids), lambda: model.predict(ids, batch_size=4),
                 lambda: model(ids[0])):
        with pytest.raises(ValueError, match=r"x: .* reads features \(B, T, I\) or \(T, I\) with I = 80, got "
                                             r"integers of shape .*vocab_size=V"):
            call()
    with pytest.raises(ValueError, match=r"x_t: .* reads features \(B, 80\) or \(80,\), got integers .*vocab_size"):
        model.step(ids[:, 0])


def test_to_onnx_refuses_vocab_size():
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="to_onnx: vocab_size=11"):
        token_model().to_onnx()


def test_generate_errors_for_token_models(rng):
    prompt = ids_of(rng, (2, 3))
    with pytest.raises(ValueError, match="mode: .* reads token ids, so it generates in the token modes"):
        token_model().generate(prompt, 3)
    with pytest.raises(ValueError, match="needs output size 5 == vocab_size 11"):
        token_model(output_size=5).generate(prompt, 3, mode="greedy")
    with pytest.raises(ValueError, match="needs output size 5 == vocab_size 11"):  # no head: O = H
        token_model(output_size=None).generate(prompt, 3, mode="greedy")
    with pytest.raises(TypeError, match="x0: .* reads integer token ids"):
        token_model().generate(np.zeros((2, 3, I)), 3, mode="greedy")
