"""rx.callbacks (EarlyStopping, ModelCheckpoint, ReduceLROnPlateau) with
Keras' semantics, metrics in fit and evaluate, and the progress bar's
postfix."""

import os

import numpy as np
import pytest

import rnnext as rx
from rnnext.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau

os.environ.setdefault("KERAS_BACKEND", "torch")  # for the comparisons with Keras' callbacks


def parity(rng, n=32, T=6):
    x = rng.choice([-1.0, 1.0], size=(n, T, 1))
    y = (np.cumsum(x[..., 0] < 0, axis=1) % 2).astype(np.int64)
    return x, y


def scripted_fit(model, rng, values, callback, monitor="val_loss", **kwargs):
    """fit for len(values) epochs at most, ``callback`` seeing ``values[epoch]``
    as ``monitor``; returns the epochs callback saw and the params after each."""
    x, y = parity(rng, 8)
    seen, params = [], []

    def wrapped(epoch, logs):
        logs = dict(logs, **{monitor: values[epoch]})
        seen.append(epoch)
        params.append(model.state_dict())
        return callback(epoch, logs)

    wrapped.set_context = callback.set_context
    wrapped.on_train_end = callback.on_train_end
    model.fit(x, y, loss="cross_entropy", epochs=len(values), progress=False, validation_data=(x, y),
              metrics=["accuracy"], callbacks=[wrapped], **kwargs)
    return seen, params


# ---------------------------------------------------------------- EarlyStopping


@pytest.mark.parametrize("values,patience,min_delta,stops_after", [
    ([1.0, 0.9, 0.95, 0.97, 0.5, 0.4], 2, 0.0, 3),   # best at 1; 2 and 3 no better: stop after epoch 3
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], 2, 0.0, 5),  # the count restarts at 3
    ([1.0, 0.99, 0.98, 0.97, 0.5], 3, 0.05, 3),      # improvements under min_delta do not count
    ([1.0, 1.0, 0.5], 1, 0.0, 1),                    # equal is no improvement
    ([3.0, 2.0, 1.0, 0.5], 1, 0.0, None),            # always improving: never stops
])
def test_early_stopping_counts_patience_like_keras(rng, values, patience, min_delta, stops_after):
    model = rx.RNN(1, 4, 2, seed=0)
    stop = EarlyStopping(patience=patience, min_delta=min_delta)
    seen, params = scripted_fit(model, rng, values, stop)
    last = len(values) - 1 if stops_after is None else stops_after
    assert seen == list(range(last + 1))
    assert stop.stopped_epoch == stops_after
    # The best epoch: the last one better than the best before it by more than min_delta.
    best, best_value = 0, values[0]
    for i, v in enumerate(values[:last + 1]):
        if v + min_delta < best_value or i == 0:
            best, best_value = i, v
    assert stop.best_epoch == best and stop.best == best_value
    for k in model.params:  # restored bit for bit
        np.testing.assert_array_equal(model.params[k], params[best][k], err_msg=k)


def test_early_stopping_matches_keras_on_the_same_values(rng):
    keras = pytest.importorskip("keras")
    values = [1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.87, 0.7]
    for patience, min_delta in [(1, 0.0), (2, 0.0), (2, 0.06), (3, 0.0)]:
        ref = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta)

        class Model:
            stop_training = False

        ref.set_model(Model())
        ref.on_train_begin()
        keras_epochs = 0
        for epoch, v in enumerate(values):
            ref.on_epoch_end(epoch, {"val_loss": v})
            keras_epochs += 1
            if ref.model.stop_training:
                break
        stop = EarlyStopping(patience=patience, min_delta=min_delta, restore_best_weights=False)
        seen, _ = scripted_fit(rx.RNN(1, 4, 2, seed=0), rng, values, stop)
        assert len(seen) == keras_epochs, (patience, min_delta)


def test_early_stopping_without_restore_keeps_the_last_weights(rng):
    model = rx.RNN(1, 4, 2, seed=0)
    seen, params = scripted_fit(model, rng, [1.0, 2.0, 3.0], EarlyStopping(patience=1, restore_best_weights=False))
    assert seen == [0, 1]
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], params[-1][k])


def test_early_stopping_restores_at_the_end_even_without_stopping(rng):
    model = rx.RNN(1, 4, 2, seed=0)
    _, params = scripted_fit(model, rng, [1.0, 0.5, 0.7], EarlyStopping(patience=5))
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], params[1][k])


def test_early_stopping_on_accuracy_is_max_mode(rng):
    stop = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stop.mode == "max"
    seen, _ = scripted_fit(rx.RNN(1, 4, 2, seed=0), rng, [0.5, 0.6, 0.55, 0.9], stop, monitor="val_accuracy")
    assert seen == [0, 1, 2] and stop.best == 0.6
    assert EarlyStopping(monitor="loss").mode == "min"
    assert EarlyStopping(monitor="val_accuracy", mode="min").mode == "min"


def test_early_stopping_in_a_real_fit(rng):
    x, y = parity(rng, 64)
    model = rx.RNN(1, 8, 2, seed=0)
    stop = EarlyStopping(monitor="loss", patience=2, min_delta=10.0)  # nothing improves by 10
    history = model.fit(x, y, loss="cross_entropy", epochs=20, progress=False, callbacks=[stop])
    assert len(history["loss"]) == 3 and stop.stopped_epoch == 2


# ---------------------------------------------------------------- monitor checks


@pytest.mark.parametrize("make", [lambda: EarlyStopping(), lambda: ModelCheckpoint("m.safetensors"),
                                  lambda: ReduceLROnPlateau(), lambda: EarlyStopping(monitor="accuracy")])
def test_a_monitor_fit_does_not_log_is_refused_before_training(rng, make):
    x, y = parity(rng, 8)
    model = rx.RNN(1, 4, 2, seed=0)
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"monitor: \w+ monitors '(val_loss|accuracy)', which fit does not log.*"
                                         r"the logs have \['loss'\]"):
        model.fit(x, y, loss="cross_entropy", callbacks=[make()], progress=False)
    for k in before:
        np.testing.assert_array_equal(model.params[k], before[k])


@pytest.mark.parametrize("make,error,match", [
    (lambda: EarlyStopping(patience=-1), ValueError, "patience"),
    (lambda: EarlyStopping(patience=1.5), TypeError, "patience"),
    (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
    (lambda: EarlyStopping(monitor=3), TypeError, "monitor"),
    (lambda: EarlyStopping(mode="up"), ValueError, "mode"),
    (lambda: EarlyStopping(restore_best_weights="yes"), TypeError, "restore_best_weights"),
    (lambda: ReduceLROnPlateau(factor=1.0), ValueError, r"factor: expected a number in \(0, 1\)"),
    (lambda: ReduceLROnPlateau(min_lr=-1.0), ValueError, "min_lr"),
    (lambda: ModelCheckpoint(3), TypeError, "filepath"),
    (lambda: ModelCheckpoint("m", save_best_only=None), TypeError, "save_best_only"),
])
def test_callback_argument_checks(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---------------------------------------------------------------- ModelCheckpoint


def test_checkpoint_writes_only_on_improvement_and_loads(rng, tmp_path):
    model = rx.GRU(1, 4, 2, seed=0)
    check = ModelCheckpoint(tmp_path / "best-{epoch:02d}-{val_loss:.2f}.safetensors")
    _, params = scripted_fit(model, rng, [1.0, 0.5, 0.7, 0.4, 0.6], check)
    assert [p.split("/")[-1] for p in check.saved] == ["best-01-1.00.safetensors", "best-02-0.50.safetensors",
                                                        "best-04-0.40.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.split("/")[-1] for p in check.saved)
    loaded = rx.load(check.saved[-1])
    assert loaded.config == model.config
    for k in model.params:
        np.testing.assert_array_equal(loaded.params[k], params[3][k])


def test_checkpoint_every_epoch_and_on_one_file(rng, tmp_path):
    every = ModelCheckpoint(tmp_path / "e{epoch}.safetensors", save_best_only=False)
    scripted_fit(rx.RNN(1, 4, 2, seed=0), rng, [1.0, 2.0, 3.0], every)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e1.safetensors", "e2.safetensors", "e3.safetensors"]
    one = tmp_path / "best.safetensors"
    model = rx.RNN(1, 4, 2, seed=0)
    check = ModelCheckpoint(str(one), monitor="val_accuracy")
    _, params = scripted_fit(model, rng, [0.5, 0.8, 0.7], check, monitor="val_accuracy")
    assert len(check.saved) == 2
    np.testing.assert_array_equal(rx.load(one).params["W_h_l0"], params[1]["W_h_l0"])


def test_checkpoint_format_fields_are_checked_before_training(rng, tmp_path):
    x, y = parity(rng, 8)
    with pytest.raises(ValueError, match=r"filepath: cannot fill .*\{val_acc\}.* from the epoch and the logs"):
        rx.RNN(1, 4, 2).fit(x, y, loss="cross_entropy", progress=False, validation_data=(x, y),
                            callbacks=[ModelCheckpoint(str(tmp_path / "m-{val_acc}.safetensors"))])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- ReduceLROnPlateau


def test_reduce_lr_on_plateau_like_keras(rng):
    keras = pytest.importorskip("keras")
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.8, 0.85, 0.86, 0.87, 0.88, 0.89]
    opt = rx.optim.SGD(1.0)
    reduce = ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.2)
    rates = []
    model = rx.RNN(1, 4, 2, seed=0)

    def record(epoch, logs):
        rates.append(opt.lr)

    x, y = parity(rng, 8)

    def scripted(epoch, logs):
        return reduce(epoch, dict(logs, val_loss=values[epoch]))

    scripted.set_context = reduce.set_context
    model.fit(x, y, loss="cross_entropy", epochs=len(values), optimizer=opt, progress=False,
              validation_data=(x, y), callbacks=[scripted, record])
    # Keras' callback on the same values.
    ref = keras.callbacks.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.2)
    class Model:
        class optimizer:
            pass

    m = Model()
    m.optimizer.learning_rate = np.float64(1.0)  # what Keras reads and writes, without a backend variable
    ref.set_model(m)
    ref.on_train_begin()
    expected = []
    for epoch, v in enumerate(values):
        ref.on_epoch_end(epoch, {"val_loss": v})
        expected.append(float(m.optimizer.learning_rate))
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    assert rates[-1] == 0.2  # min_lr bounds it


# ---------------------------------------------------------------- metrics


def test_accuracy_in_history_and_evaluate(rng):
    x, y = parity(rng, 40)
    lengths = rng.integers(1, 7, 40)
    model = rx.LSTM(1, 8, 2, seed=0)
    history = model.fit(x[:32], y[:32], loss="cross_entropy", epochs=3, lengths=lengths[:32], metrics=["accuracy"],
                        validation_data=(x[32:], y[32:], lengths[32:]), batch_size=8, progress=False)
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in history.values())
    logs = model.evaluate(x[32:], y[32:], loss="cross_entropy", lengths=lengths[32:], metrics=["accuracy"])
    assert logs["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-12)
    assert logs["accuracy"] == pytest.approx(history["val_accuracy"][-1], rel=1e-12)
    # The definition: valid steps whose arg-max is the target.
    out = model.predict(x[32:], lengths=lengths[32:])
    valid = np.arange(6)[None] < lengths[32:, None]
    assert logs["accuracy"] == pytest.approx(np.mean((out.argmax(-1) == y[32:])[valid]), rel=1e-12)
    assert model.evaluate(x[32:], y[32:], loss="cross_entropy", lengths=lengths[32:], batch_size=3,
                          metrics=["accuracy"]) == pytest.approx(logs, rel=1e-12)
    # Without metrics evaluate still returns a float.
    assert isinstance(model.evaluate(x, y, loss="cross_entropy"), float)


def test_training_accuracy_is_from_the_training_forward(rng):
    """With lr tiny, the epoch's accuracy is that of the model before it."""
    x, y = parity(rng, 16)
    model = rx.GRU(1, 8, 2, dtype="float64", seed=0)
    before = model.evaluate(x, y, loss="cross_entropy", metrics=["accuracy"])
    history = model.fit(x, y, loss="cross_entropy", optimizer=rx.optim.SGD(1e-12), batch_size=16,
                        metrics=["accuracy"], progress=False)
    assert history["accuracy"] == [before["accuracy"]]
    assert history["loss"][0] == pytest.approx(before["loss"], rel=1e-12)


def test_many_to_one_accuracy_counts_sequences(rng):
    x, y = parity(rng, 20)
    last = y[:, -1]
    model = rx.RNN(1, 6, 2, seed=0)
    logs = model.evaluate(x, last, loss="cross_entropy", metrics=["accuracy"])
    out, _ = model(x, return_sequences=False)
    assert logs["accuracy"] == np.mean(out.argmax(-1) == last)


@pytest.mark.parametrize("metrics,loss,error,match", [
    (["accuracy"], "mse", ValueError, "metrics: 'accuracy' .* needs loss='cross_entropy'"),
    (["f1"], "cross_entropy", ValueError, r"metrics: unknown metric 'f1'; expected one of \['accuracy'\]"),
    ("accuracy", "cross_entropy", TypeError, "metrics: expected a list of names"),
    ([1], "cross_entropy", TypeError, "metrics: expected names"),
])
def test_metric_errors(rng, metrics, loss, error, match):
    x, y = parity(rng, 8)
    target = y if loss == "cross_entropy" else y[..., None].astype(float)
    model = rx.RNN(1, 4, 2 if loss == "cross_entropy" else 1, seed=0)
    with pytest.raises(error, match=match):
        model.fit(x, target, loss=loss, metrics=metrics, progress=False)
    with pytest.raises(error, match=match):
        model.evaluate(x, target, loss=loss, metrics=metrics)


# ---------------------------------------------------------------- progress bar


def test_progress_bar_shows_val_loss_and_metrics(rng, capsys):
    x, y = parity(rng, 16)
    rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", epochs=2, batch_size=8, metrics=["accuracy"],
                                validation_data=(x, y), progress=True)
    err = capsys.readouterr().err
    for key in ("loss=", "accuracy=", "val_loss=", "val_accuracy="):
        assert key in err, key
    assert "epoch 2/2" in err


def test_progress_postfix_values(rng, monkeypatch):
    """The postfix at the end of each epoch holds the epoch's logs."""
    import tqdm.auto

    postfixes = []
    real = tqdm.auto.tqdm

    class Recording(real):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            postfixes.append(dict(ordered_dict or {}, **kwargs))
            return super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recording)
    x, y = parity(rng, 16)
    history = rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", epochs=1, batch_size=8, metrics=["accuracy"],
                                          validation_data=(x, y), progress=True)
    final = postfixes[-1]
    assert final == {k: f"{v[-1]:.4g}" for k, v in history.items()}
    assert set(postfixes[0]) == {"loss", "accuracy"}  # during the epoch: the running training logs
