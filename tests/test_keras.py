"""rnnext.from_keras against Keras's own outputs: SimpleRNN (3 activations),
LSTM, GRU (both reset_after forms), each alone and in Bidirectional, with and
without bias and a Dense head, initial states, masking against lengths, and
every refusal. Skipped without keras (run on its torch backend here)."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import rnnext as rx  # noqa: E402
from helpers import stacked_reference  # noqa: E402

# Keras's torch backend converts tensors with np.array(tensor), which NumPy 2
# warns about (torch's __array__ has no copy keyword): theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

B, T, I, H = 3, 20, 4, 5
CELLS = [("SimpleRNN", dict(activation="tanh")), ("SimpleRNN", dict(activation="sigmoid")),
         ("SimpleRNN", dict(activation="relu")), ("LSTM", {}), ("GRU", dict(reset_after=True)),
         ("GRU", dict(reset_after=False))]
IDS = ["rnn_tanh", "rnn_sigmoid", "rnn_relu", "lstm", "gru", "gru_reset_before"]


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def make(kind, options, dtype="float32", bidirectional=False, **extra):
    keras.utils.set_random_seed(0)
    layer = getattr(keras.layers, kind)(H, return_sequences=True, return_state=True, dtype=dtype, **options, **extra)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer, dtype=dtype)
    return layer


def keras_run(layer, x, mask=None, initial_state=None):
    """(sequences, [final states...]) as Keras computes them."""
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = mask
    if initial_state is not None:
        kwargs["initial_state"] = initial_state
    outputs = layer(x, **kwargs)
    return numpy(outputs[0]), [numpy(o) for o in outputs[1:]]


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)


def rnnext_finals(kind, state):
    """rnnext's final states as Keras lists them: per direction h (and c)."""
    h, c = state if kind == "LSTM" else (state, None)
    finals = []
    for d in range(h.shape[0]):
        finals.append(h[d])
        if c is not None:
            finals.append(c[d])
    return finals


@pytest.mark.parametrize("kind,options", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_keras(rng, kind, options, bidirectional, use_bias):
    layer = make(kind, options, bidirectional=bidirectional, use_bias=use_bias)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    seq, finals = keras_run(layer, x)  # builds the layer too
    model = rx.from_keras(layer)
    assert model.batch_first and model.bidirectional == bidirectional and model.bias == use_bias
    out, state = model(x)
    np.testing.assert_allclose(out, seq, **tolerance("float32"))
    for ours, theirs in zip(rnnext_finals(kind, state), finals):
        np.testing.assert_allclose(ours, theirs, **tolerance("float32"))
    # return_sequences=False is Keras's last output.
    last = model(x, return_sequences=False)[0]
    np.testing.assert_allclose(last, np.concatenate([seq[:, -1, :H], seq[:, 0, H:]], axis=-1)
                               if bidirectional else seq[:, -1], **tolerance("float32"))


@pytest.mark.parametrize("kind,options", CELLS, ids=IDS)
def test_float64(rng, kind, options):
    layer = make(kind, options, dtype="float64")
    x = rng.standard_normal((B, T, I))
    seq, _ = keras_run(layer, x)
    model = rx.from_keras(layer)
    assert model.dtype == np.float64
    out = model(x)[0]
    # Keras's own float64 is not exact on its torch backend (SimpleRNN and
    # GRU(reset_after=False) measured 2e-7 off plain float64 NumPy): rnnext is
    # held to the float64 reference, and to Keras as to a float32 result.
    np.testing.assert_allclose(out, stacked_reference(model, x)[0], **tolerance("float64"))
    np.testing.assert_allclose(out, seq, **tolerance("float32"))


@pytest.mark.parametrize("kind,options", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dense_head(rng, kind, options, bidirectional):
    layer = make(kind, options, bidirectional=bidirectional)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    seq, _ = keras_run(layer, x)
    head = keras.layers.Dense(3)
    y = numpy(head(seq))
    model = rx.from_keras(layer, head)
    assert model.output_size == 3
    np.testing.assert_allclose(model(x)[0], y, **tolerance("float32"))


@pytest.mark.parametrize("kind,options", CELLS, ids=IDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_masking_is_lengths(rng, kind, options, bidirectional):
    """Keras's right-padded mask is rnnext's lengths: equal valid steps and
    final states (past a length Keras repeats the last output, rnnext writes
    zeros)."""
    layer = make(kind, options, bidirectional=bidirectional)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lengths = np.array([T, 7, 1])
    mask = np.arange(T)[None, :] < lengths[:, None]
    seq, finals = keras_run(layer, x, mask=mask)
    model = rx.from_keras(layer)
    out, state = model(x, lengths=lengths)
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(out[b, :n], seq[b, :n], **tolerance("float32"))
        assert not out[b, n:].any()
    for ours, theirs in zip(rnnext_finals(kind, state), finals):
        np.testing.assert_allclose(ours, theirs, **tolerance("float32"))


@pytest.mark.parametrize("kind,options", CELLS, ids=IDS)
def test_initial_state(rng, kind, options):
    layer = make(kind, options)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    initial = [h0, c0] if kind == "LSTM" else [h0]
    seq, finals = keras_run(layer, x, initial_state=initial)
    model = rx.from_keras(layer)
    out, _ = model(x, h0=(h0[None], c0[None]) if kind == "LSTM" else h0[None])
    np.testing.assert_allclose(out, seq, **tolerance("float32"))


def built(layer, dtype="float32"):
    layer(np.zeros((1, 2, I), dtype))
    return layer


def test_refusals():
    with pytest.raises(TypeError, match="layer: expected a keras.layers.SimpleRNN, LSTM or GRU.*Dense"):
        rx.from_keras(keras.layers.Dense(3))
    with pytest.raises(ValueError, match="has no weights yet"):
        rx.from_keras(keras.layers.LSTM(H))
    with pytest.raises(ValueError, match="go_backwards=True"):
        rx.from_keras(built(keras.layers.GRU(H, go_backwards=True)))
    with pytest.raises(ValueError, match="activation='softplus'"):
        rx.from_keras(built(keras.layers.LSTM(H, activation="softplus")))
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid'"):
        rx.from_keras(built(keras.layers.GRU(H, recurrent_activation="hard_sigmoid")))
    with pytest.raises(ValueError, match="activation='elu'"):
        rx.from_keras(built(keras.layers.SimpleRNN(H, activation="elu")))
    with pytest.raises(ValueError, match="merge_mode='sum'"):
        rx.from_keras(built(keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum")))
    with pytest.raises(ValueError, match=r"differs from the forward one in \['units'\]"):
        rx.from_keras(built(keras.layers.Bidirectional(
            keras.layers.LSTM(H), backward_layer=keras.layers.LSTM(H + 1, go_backwards=True))))
    layer = built(keras.layers.LSTM(H))
    with pytest.raises(TypeError, match="head: expected a keras.layers.Dense"):
        rx.from_keras(layer, layer)
    with pytest.raises(ValueError, match="head: activation='relu'"):
        rx.from_keras(layer, built_dense(keras.layers.Dense(2, activation="relu"), H))
    with pytest.raises(ValueError, match="units \\* directions = 5 features, got 4"):
        rx.from_keras(layer, built_dense(keras.layers.Dense(2), 4))
    with pytest.raises(ValueError, match="head: Dense .* has no weights yet"):
        rx.from_keras(layer, keras.layers.Dense(2))


def built_dense(dense, features):
    dense(np.zeros((1, features), np.float32))
    return dense


def test_stateful_refused():
    layer = keras.layers.GRU(H, stateful=True)
    layer(np.zeros((2, 3, I), np.float32))
    with pytest.raises(ValueError, match="stateful=True"):
        rx.from_keras(layer)


def test_head_without_bias(rng):
    layer = make("LSTM", {})
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    seq, _ = keras_run(layer, x)
    head = keras.layers.Dense(2, use_bias=False)
    y = numpy(head(seq))
    model = rx.from_keras(layer, head)
    assert not model.params["b_o"].any()
    np.testing.assert_allclose(model(x)[0], y, **tolerance("float32"))


def test_lora_head(rng):
    """A LoRA-enabled Dense computes with kernel + lora_a @ lora_b * alpha / rank,
    which its get_weights()[0] does not include."""
    layer = make("GRU", {}, bidirectional=True)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    seq, _ = keras_run(layer, x)
    head = built_dense(keras.layers.Dense(3), 2 * H)
    head.enable_lora(2)
    for variable in (head.lora_kernel_a, head.lora_kernel_b):
        variable.assign(rng.standard_normal(variable.shape).astype(np.float32))
    y = numpy(head(seq))
    np.testing.assert_allclose(rx.from_keras(layer, head)(x)[0], y, **tolerance("float32"))


def test_quantized_head_refused():
    layer = built(keras.layers.LSTM(H))
    head = built_dense(keras.layers.Dense(2), H)
    head.quantize("int8")
    with pytest.raises(ValueError, match="head: quantization_mode='int8'"):
        rx.from_keras(layer, head)


def test_mixed_precision_refused():
    layer = built(keras.layers.LSTM(H, dtype="mixed_float16"))
    with pytest.raises(ValueError, match="dtype='mixed_float16'"):
        rx.from_keras(layer)


def test_backward_layer_differing_only_in_training_options(rng):
    """dropout and unroll do not change inference: such a pair is accepted."""
    layer = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True),
                                       backward_layer=keras.layers.GRU(H, return_sequences=True, go_backwards=True,
                                                                       dropout=0.3, unroll=True))
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    seq = numpy(layer(x))
    np.testing.assert_allclose(rx.from_keras(layer)(x)[0], seq, **tolerance("float32"))
