"""rnnext.sklearn (API.md section 8): RNNClassifier and RNNRegressor pass scikit-learn's
check_estimator, train exactly as the rnnext model they wrap, and work in Pipeline,
GridSearchCV, cross_val_score, clone and pickle; string labels, probabilities, a sine
regression, 3-D X of other lengths, and the refusals (each naming its argument)."""

import pickle

import numpy as np
import pytest
from helpers import run_python

import rnnext as rx

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402 (after the skip)
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from rnnext.sklearn import RNNClassifier, RNNRegressor  # noqa: E402

# Small and quick, yet enough to pass the checks that demand a fair score
# (check_classifiers_train: accuracy > 0.83 on 3 blobs; check_regressors_train: R^2 > 0.5).
CHECKED = dict(hidden_size=8, epochs=30, batch_size=16, lr=2e-2)

# No check is expected to fail: a 2-D X (n, T) is valid input (T steps of one feature), so
# every check scikit-learn runs on 2-D data applies as it is.
EXPECTED_FAILED_CHECKS = {}


@parametrize_with_checks([RNNClassifier(**CHECKED), RNNRegressor(**CHECKED)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_check_estimator(estimator, check):
    check(estimator)


def sequences(n=120, T=6, I=3, seed=0):
    """Labels 0/1/2 from the sign pattern of the first feature's sum: needs the whole sequence."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, I))
    total = x[:, :, 0].sum(axis=1)
    y = np.digitize(total, [-1.0, 1.0])
    return x, y


def test_trains_exactly_as_the_model_it_wraps():
    x, y = sequences()
    for cell, model_class in [("lstm", rx.LSTM), ("gru", rx.GRU), ("rnn", rx.RNN)]:
        est = RNNClassifier(cell, hidden_size=5, epochs=2, batch_size=16, lr=1e-2, seed=3).fit(x, y)
        model = model_class(3, 5, 3, seed=3)
        history = model.fit(x, y, loss="cross_entropy", epochs=2, batch_size=16, lr=1e-2, seed=3, progress=False)
        assert type(est.model_) is model_class
        for key, value in model.params.items():
            np.testing.assert_array_equal(est.model_.params[key], value, err_msg=f"{cell} {key}")
        assert est.history_ == history


def test_random_state_is_seed():
    x, y = sequences()
    by_seed = RNNClassifier(hidden_size=5, epochs=1, seed=7).fit(x, y)
    by_random_state = RNNClassifier(hidden_size=5, epochs=1, random_state=7).fit(x, y)
    both = RNNClassifier(hidden_size=5, epochs=1, seed=7, random_state=7).fit(x, y)
    for est in (by_random_state, both):
        np.testing.assert_array_equal(est.predict_proba(x), by_seed.predict_proba(x))
    # A RandomState instance gives one seed drawn from it, as scikit-learn's estimators do.
    a = RNNClassifier(hidden_size=5, epochs=1, random_state=np.random.RandomState(1)).fit(x, y)
    b = RNNClassifier(hidden_size=5, epochs=1, random_state=np.random.RandomState(1)).fit(x, y)
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    with pytest.raises(ValueError, match="seed, random_state: two different seeds"):
        RNNClassifier(seed=1, random_state=2).fit(x, y)


def test_string_labels_and_probabilities():
    x, y = sequences(n=150)
    names = np.array(["low", "mid", "high"], dtype=object)[y]
    est = RNNClassifier(hidden_size=12, epochs=40, lr=1e-2, seed=0).fit(x, names)
    assert list(est.classes_) == ["high", "low", "mid"]
    predicted = est.predict(x)
    assert predicted.dtype == object and set(predicted) <= {"low", "mid", "high"}
    assert est.score(x, names) > 0.8
    proba = est.predict_proba(x)
    assert proba.shape == (150, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(est.classes_[proba.argmax(axis=1)], predicted)
    np.testing.assert_allclose(est.predict_log_proba(x), np.log(proba), rtol=1e-10, atol=1e-12)


def sine_windows(n, T=20, seed=0):
    """Windows of sines of random frequency and phase; the target is the next value."""
    rng = np.random.default_rng(seed)
    omega = rng.uniform(0.2, 0.6, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(omega * np.arange(T + 1) + phase)
    return wave[:, :T], wave[:, T]


def test_regressor_fits_a_sine():
    X, y = sine_windows(400)
    X_test, y_test = sine_windows(200, seed=1)
    est = RNNRegressor(hidden_size=16, epochs=15, lr=1e-2, seed=0).fit(X, y)  # 2-D X: 20 steps of 1 feature
    assert est.predict(X_test).shape == (200,)
    assert est.score(X_test, y_test) > 0.98


def test_regressor_targets_keep_their_shape():
    x, _ = sequences(n=40)
    Y = np.stack([x[:, :, 0].sum(1), x[:, -1, 1]], axis=1)
    two = RNNRegressor(hidden_size=4, epochs=1, seed=0).fit(x, Y)
    assert two.predict(x).shape == (40, 2) and two.n_outputs_ == 2 and two.model_.output_size == 2
    column = RNNRegressor(hidden_size=4, epochs=1, seed=0).fit(x, Y[:, :1])
    flat = RNNRegressor(hidden_size=4, epochs=1, seed=0).fit(x, Y[:, 0])
    assert column.predict(x).shape == (40, 1) and flat.predict(x).shape == (40,)
    np.testing.assert_array_equal(column.predict(x)[:, 0], flat.predict(x))
    assert flat.predict(x).dtype == np.float64


def test_3d_X_may_change_its_length_2d_X_may_not():
    x, y = sequences(T=6)
    est = RNNClassifier(hidden_size=4, epochs=1, seed=0).fit(x, y)
    assert est.n_features_in_ == 3 and not hasattr(est, "feature_names_in_")
    longer = np.concatenate([x, x], axis=1)
    np.testing.assert_allclose(est.predict_proba(longer), _softmax(est.model_(longer, return_sequences=False)[0]),
                               rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="X: has 2 features per step, but RNNClassifier was fitted on 3"):
        est.predict(x[:, :, :2])
    with pytest.raises(ValueError, match=r"X: 2-D X is read as \(n_samples, n_steps\)"):
        est.predict(x[:, :, 0])
    flat = RNNClassifier(hidden_size=4, epochs=1, seed=0).fit(x[:, :, 0], y)
    assert flat.n_features_in_ == 6 and flat.model_.input_size == 1
    with pytest.raises(ValueError, match="X has 5 features, but RNNClassifier is expecting 6 features"):
        flat.predict(x[:, :5, 0])
    # The same sequences as (n, T, 1) are accepted at any length.
    assert flat.predict(longer[:, :, :1]).shape == (120,)
    one = RNNClassifier(hidden_size=4, epochs=1, seed=0).fit(x[:, :, :1], y)
    assert one.predict(longer[:, :, 0]).shape == (120,)  # 2-D after (n, T, 1): one feature per step


def _softmax(logits):
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def test_predict_in_chunks_equals_one_call(monkeypatch):
    import rnnext.sklearn as rs

    x, y = sequences(n=50)
    est = RNNRegressor(hidden_size=4, epochs=1, seed=0).fit(x, x[:, :, 0].sum(1))
    whole = est.predict(x)
    monkeypatch.setattr(rs, "PREDICT_CHUNK", 7)
    np.testing.assert_array_equal(est.predict(x), whole)


def digits_rows(n):
    """scikit-learn's digits, the 8x8 images flattened (n, 64), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data[:n], digits.target[:n]


def as_rows(X):
    """(n, 64) pixels -> (n, 8, 8): each image read row by row, 8 steps of 8 features."""
    return X.reshape(len(X), 8, 8)


def test_pipeline_with_a_scaler_and_a_reshape():
    X, y = digits_rows(1200)
    pipe = make_pipeline(StandardScaler(), FunctionTransformer(as_rows),
                         RNNClassifier(hidden_size=32, epochs=8, lr=1e-2, seed=0))
    pipe.fit(X[:900], y[:900])
    assert pipe[-1].model_.input_size == 8 and pipe[-1].n_features_in_ == 8
    assert pipe.score(X[900:], y[900:]) > 0.8  # chance is 0.1
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict_proba(X[900:]), pipe.predict_proba(X[900:]))


def test_pipeline_on_2d_X():
    X, y = sine_windows(300)
    pipe = make_pipeline(StandardScaler(), RNNRegressor(hidden_size=8, epochs=5, lr=1e-2, seed=0)).fit(X, y)
    assert pipe.predict(X).shape == (300,) and pipe.score(X, y) > 0.5


def test_grid_search_and_cross_val_score():
    x, y = sequences(n=90)
    search = GridSearchCV(RNNClassifier(epochs=3, seed=0), {"hidden_size": [4, 8], "lr": [1e-3, 1e-2]}, cv=2)
    search.fit(x, y)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_["hidden_size"] in (4, 8) and search.best_params_["lr"] in (1e-3, 1e-2)
    assert search.best_estimator_.model_.hidden_size == search.best_params_["hidden_size"]
    scores = cross_val_score(RNNRegressor(hidden_size=4, epochs=2, seed=0), x, x[:, :, 0].sum(1), cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_clone_get_set_params_and_pickle():
    x, y = sequences()
    est = RNNClassifier("gru", hidden_size=6, num_layers=2, dropout=0.25, bidirectional=True, epochs=2,
                        dtype="float64", seed=4).fit(x, y)
    assert est.model_.dtype == np.float64 and est.model_.num_layers == 2 and est.model_.bidirectional
    assert len(est.history_["loss"]) == 2
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")
    np.testing.assert_array_equal(copy.fit(x, y).predict_proba(x), est.predict_proba(x))  # dropout seeded too
    assert est.set_params(hidden_size=3) is est and est.get_params()["hidden_size"] == 3
    restored = pickle.loads(pickle.dumps(copy))
    np.testing.assert_array_equal(restored.predict_proba(x), copy.predict_proba(x))
    assert "RNNClassifier('gru'" in repr(copy) or "RNNClassifier(bidirectional=True" in repr(copy)


def test_an_optimizer_object_is_copied_by_fit():
    optim = getattr(rx, "optim", None)
    if optim is None:
        pytest.skip("rx.optim (issue 16's optimiser objects) is not in this build")
    x, y = sequences()
    adam = optim.Adam(lr=1e-2)
    before = pickle.dumps(adam)
    est = RNNClassifier(hidden_size=4, epochs=2, lr=1e-2, optimizer=adam, seed=0)
    first = est.fit(x, y).predict_proba(x)
    assert pickle.dumps(adam) == before  # the parameter is never trained on
    np.testing.assert_array_equal(est.fit(x, y).predict_proba(x), first)  # each fit starts afresh


@pytest.mark.parametrize("params, error, match", [
    (dict(cell="transformer"), ValueError, "cell: expected 'lstm', 'gru' or 'rnn'"),
    (dict(cell="lstm", activation="relu"), ValueError, "activation: only the 'rnn' cell"),
    (dict(cell="rnn", activation="swish"), ValueError, "activation"),
    (dict(hidden_size=0), ValueError, "hidden_size"),
    (dict(num_layers=1.5), TypeError, "num_layers"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size="32"), TypeError, "batch_size"),
    (dict(lr=-1.0), ValueError, "lr"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer"),
    (dict(clip_norm=0.0), ValueError, "clip_norm"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(seed="0"), TypeError, "seed: expected an int or None"),
    (dict(random_state=-1), ValueError, r"random_state: expected an int in \[0, 2\*\*32\)"),
    (dict(progress="yes"), TypeError, "progress: expected a bool"),
])
def test_bad_parameters_are_refused_at_fit_naming_them(params, error, match, monkeypatch):
    x, y = sequences(n=20)
    est = RNNClassifier(**params)  # __init__ only stores
    monkeypatch.setattr(rx.LSTM, "loss_and_grads", lambda *a, **k: pytest.fail("computed before refusing"))
    with pytest.raises(error, match=match):
        est.fit(x, y)
    assert not hasattr(est, "model_")


@pytest.mark.parametrize("make, match", [
    (lambda x, y: (x[None], y), r"X: expected \(n_samples, n_steps, n_features\) or \(n_samples, n_steps\)"),
    (lambda x, y: (x[:, :0], y), "X: expected at least one step and one feature"),
    (lambda x, y: (x, y[:-1]), r"y: expected 20 targets \(one per sequence of X\), got 19"),
    (lambda x, y: (np.where(x > 1, np.nan, x), y), "Input X contains NaN"),
    (lambda x, y: (x, None), "y: RNNClassifier requires y to be passed"),
    (lambda x, y: (x, y + 0.5), "Unknown label type"),
])
def test_bad_data_is_refused_naming_it(make, match):
    x, y = sequences(n=20)
    with pytest.raises(ValueError, match=match):
        RNNClassifier(hidden_size=4, epochs=1).fit(*make(x, y))


def test_regressor_refusals_and_unfitted():
    x, _ = sequences(n=20)
    with pytest.raises(ValueError, match="Input y contains NaN"):
        RNNRegressor(epochs=1).fit(x, np.full(20, np.nan))
    with pytest.raises(ValueError, match=r"y: expected \(n_samples,\) or \(n_samples, n_outputs\)"):
        RNNRegressor(epochs=1).fit(x, np.zeros((20, 2, 2)))
    with pytest.raises(NotFittedError):
        RNNRegressor().predict(x)
    with pytest.raises(NotFittedError):
        RNNClassifier().predict_proba(x)


def test_import_rnnext_does_not_import_sklearn():
    result = run_python("import sys, rnnext; print('sklearn' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "False"


def test_without_sklearn_the_import_error_says_what_to_install():
    result = run_python("""
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import rnnext.sklearn
    """)
    assert result.returncode != 0
    assert 'rnnext.sklearn needs scikit-learn: pip install "rnnext[sklearn]"' in result.stderr
