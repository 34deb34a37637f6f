"""Errors and warnings on the training path that point at the cause
(issue 16): non-finite data named with its first bad position, shapes
quoted as the user gave them, cross-entropy without a head, dropout with
one layer."""

import warnings

import numpy as np
import pytest

import rnnext as rx


def data(rng, B=4, T=5, I=3, O=2):
    return rng.standard_normal((B, T, I)), rng.standard_normal((B, T, O))


# ---------------------------------------------------------------- non-finite data


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_named_with_its_position_before_training(rng, bad):
    x, y = data(rng)
    x[2, 3, 1] = bad
    model = rx.RNN(3, 4, 2, seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError, match=rf"x: {bad} at x\[2, 3, 1\] \(sequence 2, step 3\); fit needs finite"):
        model.fit(x, y, loss="mse", progress=False)
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])


def test_the_first_bad_position_in_the_users_layout(rng):
    x, y = data(rng)
    x[3, 1, 0] = x[1, 4, 2] = np.nan
    with pytest.raises(ValueError, match=r"x: nan at x\[1, 4, 2\] \(sequence 1, step 4\)"):
        rx.GRU(3, 4, 2).fit(x, y, loss="mse", progress=False)
    # Time first: the index is (t, b, i), the first in that order.
    xt, yt = np.swapaxes(x, 0, 1), np.swapaxes(y, 0, 1)
    with pytest.raises(ValueError, match=r"x: nan at x\[1, 3, 0\] \(sequence 3, step 1\)"):
        rx.GRU(3, 4, 2, batch_first=False).fit(xt, yt, loss="mse", progress=False)
    # Unbatched: no batch index.
    with pytest.raises(ValueError, match=r"x: nan at x\[4, 2\] \(step 4\)"):
        rx.GRU(3, 4, 2).fit(x[1], y[1], loss="mse", progress=False)


def test_padding_past_lengths_may_hold_anything(rng):
    x, y = data(rng)
    lengths = np.array([5, 2, 3, 1])
    x[1, 2:] = np.nan
    y[3, 1:] = np.inf
    model = rx.LSTM(3, 4, 2, seed=0)
    history = model.fit(x, y, loss="mse", lengths=lengths, progress=False, validation_data=(x, y, lengths))
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_loss"][0])
    x[1, 1, 0] = np.nan  # a valid step
    with pytest.raises(ValueError, match=r"x: nan at x\[1, 1, 0\]"):
        model.fit(x, y, loss="mse", lengths=lengths, progress=False)


def test_non_finite_targets_and_validation_data(rng):
    x, y = data(rng)
    y[0, 4, 1] = np.nan
    with pytest.raises(ValueError, match=r"y: nan at y\[0, 4, 1\]; fit needs finite targets"):
        rx.RNN(3, 4, 2).fit(x, y, loss="mse", progress=False)
    yt = np.swapaxes(y, 0, 1)
    with pytest.raises(ValueError, match=r"y: nan at y\[4, 0, 1\]"):
        rx.RNN(3, 4, 2, batch_first=False).fit(np.swapaxes(x, 0, 1), yt, loss="mse", progress=False)
    last = rng.standard_normal((4, 2))
    last[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"y: inf at y\[3, 0\]"):
        rx.RNN(3, 4, 2).fit(x, last, loss="mse", progress=False)
    good = rng.standard_normal((4, 5, 2))
    vx = x.copy()
    vx[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"validation_data\[0\]: nan at validation_data\[0\]\[1, 0, 0\]"):
        rx.RNN(3, 4, 2).fit(x, good, loss="mse", progress=False, validation_data=(vx, good))
    with pytest.raises(ValueError, match=r"validation_data\[1\]: nan at validation_data\[1\]\[0, 4, 1\]"):
        rx.RNN(3, 4, 2).fit(x, good, loss="mse", progress=False, validation_data=(x, y))


def test_evaluate_and_loss_and_grads_still_propagate_nan(rng):
    """API.md section 1: NaN in the data is not an error outside fit."""
    x, y = data(rng)
    x[0, 0, 0] = np.nan
    model = rx.RNN(3, 4, 2, seed=0)
    assert np.isnan(model.evaluate(x, y, loss="mse"))
    assert np.isnan(model.loss_and_grads(x, y)[0])


def test_a_diverging_model_still_names_lr(rng):
    x = rng.standard_normal((4, 60, 2)) * 10
    y = rng.standard_normal((4, 60, 1))
    model = rx.RNN(2, 16, 1, activation="relu", seed=0)
    model.W_h = np.eye(16) * 3.0
    with pytest.raises(FloatingPointError, match="at epoch 1, batch 1.*lower lr, or clip gradients"):
        model.fit(x, y, loss="mse", lr=0.1, progress=False)


# ---------------------------------------------------------------- shapes as given


@pytest.mark.parametrize("kind", ["RNN", "GRU"])
def test_an_unbatched_state_is_quoted_as_given(rng, kind):
    model = getattr(rx, kind)(3, 64, 3, num_layers=2, seed=0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    wrong = np.zeros((2, 32))
    pattern = r"h0: expected shape \(num_layers, H\) = \(2, 64\), got \(2, 32\)"
    with pytest.raises(ValueError, match=pattern):
        model.loss_and_grads(x, y, h0=wrong)
    with pytest.raises(ValueError, match=pattern):
        model(x, wrong)
    with pytest.raises(ValueError, match=pattern):
        model.generate(x, 2, h0=wrong)


def test_an_unbatched_lstm_state_is_quoted_as_given(rng):
    model = rx.LSTM(3, 64, 2, seed=0)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 2))
    with pytest.raises(ValueError, match=r"h0\[1\]: expected shape \(num_layers, H\) = \(1, 64\), got \(2, 64\)"):
        model.loss_and_grads(x, y, h0=(np.zeros((1, 64)), np.zeros((2, 64))))


# ---------------------------------------------------------------- warnings


def test_cross_entropy_without_a_head_warns_once_per_call(rng):
    x = rng.standard_normal((6, 4, 3))
    y = rng.integers(0, 5, (6, 4))
    model = rx.RNN(3, 5, seed=0)
    with pytest.warns(UserWarning, match=r"loss: cross_entropy on a model without a head .*\(5 features.*"
                                         r"pass output_size=<number of classes>") as caught:
        model.fit(x, y, loss="cross_entropy", epochs=3, batch_size=2, progress=False)
    assert len(caught) == 1
    assert caught[0].filename == __file__  # points at the caller
    with pytest.warns(UserWarning, match="without a head") as caught:
        model.loss_and_grads(x, y, loss="cross_entropy")
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rx.RNN(3, 5, 5, seed=0).fit(x, y, loss="cross_entropy", progress=False)  # a head: silent
        model.fit(x, rng.standard_normal((6, 4, 5)), loss="mse", progress=False)  # mse: silent
        model.evaluate(x, y, loss="cross_entropy")  # scoring trains nothing: silent


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_dropout_with_one_layer_warns_like_torch(kind):
    torch = pytest.importorskip("torch")
    with pytest.warns(UserWarning, match="dropout option adds dropout after all but last recurrent layer") as ours:
        model = getattr(rx, kind)(3, 4, dropout=0.5)
    assert ours[0].filename == __file__
    with pytest.warns(UserWarning) as theirs:
        getattr(torch.nn, kind)(3, 4, dropout=0.5)
    assert str(ours[0].message).startswith(str(theirs[0].message).split(", but got")[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(rx, kind)(3, 4, num_layers=2, dropout=0.5)
        getattr(rx, kind)(3, 4, dropout=0.0)
        rx.from_bytes(model.to_bytes())  # a file read back does not warn again


@pytest.mark.parametrize("batch_first", [True, False])
def test_wrong_features_are_quoted_as_given(rng, batch_first):
    """The issue's "(1, 2, 64) for a user's (2, 64)": the forward used to see x
    after a batch axis was added (or a mini-batch taken) and quoted that."""
    model = rx.LSTM(80, 16, 3, batch_first=batch_first, seed=0)
    layout = r"\(B, T, 80\)" if batch_first else r"\(T, B, 80\)"
    unbatched, y = rng.standard_normal((2, 64)), rng.standard_normal((2, 3))
    pattern = rf"x: expected shape {layout} or unbatched \(T, 80\) \(input_size 80\), got \(2, 64\)$"
    calls = [lambda: model(unbatched), lambda: model.loss_and_grads(unbatched, y),
             lambda: model.evaluate(unbatched, y, loss="mse"),
             lambda: model.evaluate(unbatched, y, loss="mse", batch_size=1),
             lambda: model.fit(unbatched, y, loss="mse", progress=False),
             lambda: model.fit(unbatched, y, loss="mse", tbptt=1, progress=False)]
    for call in calls:
        with pytest.raises(ValueError, match=pattern):
            call()
    batched = rng.standard_normal((4, 2, 64))
    targets = rng.standard_normal((4, 2, 3))
    with pytest.raises(ValueError, match=r"got \(4, 2, 64\)$"):  # not the first mini-batch's (3, 2, 64)
        model.fit(batched, targets, loss="mse", batch_size=3, progress=False)
    with pytest.raises(ValueError, match=r"got \(2, 64\)$"):
        model.fit(rng.standard_normal((2, 80)), y, loss="mse", validation_data=(unbatched, y), progress=False)
