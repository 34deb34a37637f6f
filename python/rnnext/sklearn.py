"""scikit-learn estimators: ``rnnext.sklearn.RNNClassifier`` and
``RNNRegressor`` (API.md section 8).

Each wraps one rnnext model trained many-to-one: a sequence in, one label
(or one row of targets) out, read from the last layer's state after the last
step (and the backward direction's after step 0). They follow scikit-learn's
estimator rules, so ``Pipeline``, ``GridSearchCV``, ``cross_val_score``,
``clone`` and pickling work as for any estimator.

``X`` is ``(n_samples, n_steps, n_features)``, or ``(n_samples, n_steps)``
read as ``n_steps`` steps of one feature each. The 2-D form is what the rest
of scikit-learn produces (scalers, imputers, ``check_estimator``'s data), so
it is held to scikit-learn's column rules: its columns (steps) are counted
in ``n_features_in_`` and named in ``feature_names_in_`` (from a DataFrame),
and ``predict`` wants the same columns. 3-D ``X`` may change its number of
steps between ``fit`` and ``predict`` (the model is recurrent); only the
features per step are fixed.

Needs ``pip install "rnnext[sklearn]"``; ``import rnnext`` never imports
this module, and this is the only module of rnnext that imports sklearn.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, Dict, Optional, Type

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import assert_all_finite, check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # pragma: no cover (the test extra installs it)
    raise ImportError('rnnext.sklearn needs scikit-learn: pip install "rnnext[sklearn]"') from error

from ._arrays import as_array, is_foreign
from .models import GRU, LSTM, RNN, RecurrentModel

__all__ = ["RNNClassifier", "RNNRegressor"]

CELLS: Dict[str, Type[RecurrentModel]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
# Sequences per forward call in predict: bounds the hidden states held at once
# (chunk x T x D*H per layer) without changing a bit (the forward is batch invariant).
PREDICT_CHUNK = 1024

PARAMETERS_DOC = """
    Parameters
    ----------
    cell : {"lstm", "gru", "rnn"}
        The model: ``rnnext.LSTM``, ``rnnext.GRU`` or ``rnnext.RNN``.
    hidden_size : int
        H, the state size of every layer.
    num_layers : int
        Stacked layers.
    bidirectional : bool
        Each layer also reads the sequence backwards.
    activation : {"tanh", "relu", "sigmoid"}
        The RNN cell's nonlinearity; only ``"tanh"`` with ``"lstm"``/``"gru"``.
    dropout : float
        Dropout between stacked layers during training (``num_layers > 1``).
    epochs, batch_size : int
        Passes over the training data, and sequences per update.
    lr : float or callable, optional
        The learning rate (or what ``rnnext``'s ``fit`` accepts for it);
        None (the default) means an optimizer object's own rate, and 1e-3
        for an optimizer name.
    optimizer : str or optimizer object
        ``"adam"``, ``"sgd"``, or anything ``rnnext``'s ``fit`` accepts. An
        optimizer object is copied by every ``fit``, so each ``fit`` starts
        afresh as scikit-learn expects and the parameter is never modified.
    clip_norm : float, optional
        Clips the global gradient norm of each update.
    dtype : {"float32", "float64"}
        The model's parameters and computation.
    seed : int, optional
        Seeds the model's initialisation and the shuffling: the estimator
        trains exactly as ``rnnext.LSTM(I, H, O, ..., seed=seed)`` (or
        ``GRU``, ``RNN``) then its ``fit(..., seed=seed)`` would. None: a
        seed drawn from NumPy's global random state (what scikit-learn
        means by ``random_state=None``).
    random_state : int, RandomState or None
        scikit-learn's name for ``seed``, the one its tools set (for example
        ``check_estimator``, through ``set_random_state``); give one of the
        two, or the same int in both. A RandomState gives a seed drawn from it.
    progress : bool
        Show rnnext's progress bar while training.
"""

FITTED_DOC = """
    Attributes
    ----------
    model_ : rnnext.RNN, LSTM or GRU
        The trained model (input I, output {output}), ``batch_first``.
    history_ : dict
        What the model's ``fit`` returned: per-epoch lists, ``"loss"``, ...
    n_features_in_ : int
        For 2-D ``X``, its columns (the steps, one feature each); for 3-D
        ``X``, the features per step.
    feature_names_in_ : ndarray of str
        The columns' names, when ``X`` was a DataFrame with string column names.
"""


def _checked_seed(name: str, value: Any) -> Any:
    if value is None or isinstance(value, np.random.RandomState):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int or None, got {type(value).__name__}")
    if not 0 <= value < 2**32:  # type: ignore[operator]  # NumPy's RandomState range; typeshed's Integral has no <
        raise ValueError(f"{name}: expected an int in [0, 2**32), got {value}")
    return int(value)


class _RNNEstimator(BaseEstimator):
    """What the classifier and the regressor share: the parameters, the
    model, reading ``X``, and the many-to-one forward."""

    def __init__(self, cell: str = "lstm", *, hidden_size: int = 64, num_layers: int = 1,
                 bidirectional: bool = False, activation: str = "tanh", dropout: float = 0.0, epochs: int = 20,
                 batch_size: int = 32, lr: Any = None, optimizer: Any = "adam", clip_norm: Optional[float] = None,
                 dtype: str = "float32", seed: Optional[int] = None, random_state: Any = None,
                 progress: bool = False) -> None:
        # scikit-learn's rule: __init__ only stores; fit checks (set_params may change anything later).
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.activation = activation
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.dtype = dtype
        self.seed = seed
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # (n, T, I); 2-D (n, T) stays accepted too
        return tags

    # ------------------------------------------------------------ parameters

    def _model_class(self) -> Type[RecurrentModel]:
        if not isinstance(self.cell, str) or self.cell.lower() not in CELLS:
            raise ValueError(f"cell: expected 'lstm', 'gru' or 'rnn', got {self.cell!r}")
        if self.cell.lower() != "rnn" and self.activation != "tanh":
            raise ValueError(f"activation: only the 'rnn' cell takes an activation (got {self.activation!r} "
                             f"with cell={self.cell!r}); LSTM and GRU use their own gates")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"progress: expected a bool, got {type(self.progress).__name__}")
        return CELLS[self.cell.lower()]

    def _seed(self) -> int:
        """The one int seeding both the initialisation and the shuffling."""
        seed = _checked_seed("seed", self.seed)
        random_state = _checked_seed("random_state", self.random_state)
        if isinstance(seed, np.random.RandomState):
            raise TypeError("seed: expected an int or None, got RandomState (pass it as random_state)")
        if seed is not None and random_state is not None and seed != random_state:
            raise ValueError(f"seed, random_state: two different seeds ({seed!r} and {random_state!r}); they are "
                             f"the same setting under rnnext's and scikit-learn's names, so give one")
        source = seed if seed is not None else random_state
        return int(check_random_state(source).randint(2**31)) if not isinstance(source, int) else source

    def _new_model(self, input_size: int, output_size: int, seed: int) -> RecurrentModel:
        model_class = self._model_class()
        options: Dict[str, Any] = dict(num_layers=self.num_layers, bidirectional=self.bidirectional,
                                       dropout=self.dropout, dtype=self.dtype, seed=seed)
        if model_class is RNN:
            options["activation"] = self.activation
        return model_class(input_size, self.hidden_size, output_size, **options)

    def _train(self, x: np.ndarray, target: np.ndarray, loss: str, output_size: int) -> None:
        seed = self._seed()
        model = self._new_model(x.shape[2], output_size, seed)
        # A stateful optimiser object would carry its moments from one fit (or
        # one clone's fit) into the next; scikit-learn's fit starts afresh.
        optimizer = self.optimizer if isinstance(self.optimizer, str) else copy.deepcopy(self.optimizer)
        self.history_ = model.fit(x, target, loss=loss, epochs=self.epochs, batch_size=self.batch_size,
                                  optimizer=optimizer, lr=self.lr, clip_norm=self.clip_norm, seed=seed,
                                  progress=bool(self.progress))
        self.model_ = model

    # ------------------------------------------------------------ data

    def _validated_X(self, X: Any, reset: bool) -> np.ndarray:
        """X as (n, T, I) floats, checked by scikit-learn's rules (``reset``
        in fit: record what predict will need)."""
        if is_foreign(X):  # a torch tensor, bfloat16...: read as rnnext reads arrays
            X = as_array(X, "X")
        array: np.ndarray = check_array(X, allow_nd=True, dtype=(np.float64, np.float32), input_name="X", estimator=self)
        if array.ndim > 3:
            raise ValueError(f"X: expected (n_samples, n_steps, n_features) or (n_samples, n_steps), "
                             f"got shape {array.shape}")
        if reset:
            self._x_ndim = array.ndim
            if array.ndim == 3:
                self.__dict__.pop("feature_names_in_", None)  # what validate_data would do for an array
                self.n_features_in_ = array.shape[2]
        elif array.ndim == 3 and array.shape[2] != self.model_.input_size:
            raise ValueError(f"X: has {array.shape[2]} features per step, but {type(self).__name__} was fitted "
                             f"on {self.model_.input_size}")
        if array.ndim == 3:
            if 0 in array.shape[1:]:
                raise ValueError(f"X: expected at least one step and one feature, got shape {array.shape}")
            return array
        if not reset and self.model_.input_size != 1:
            raise ValueError(f"X: 2-D X is read as (n_samples, n_steps), one feature per step, but "
                             f"{type(self).__name__} was fitted on {self.model_.input_size} features per step; "
                             f"pass X of shape (n_samples, n_steps, {self.model_.input_size})")
        if reset or self._x_ndim == 2:
            # The columns' count and names, with scikit-learn's own messages.
            validate_data(self, X, reset=reset, skip_check_array=True)
        return array[:, :, None]

    def _check_y_length(self, x: np.ndarray, y: np.ndarray) -> None:
        if len(y) != len(x):
            raise ValueError(f"y: expected {len(x)} targets (one per sequence of X), got {len(y)}")

    def _require_y(self, y: Any) -> None:
        if y is None:
            raise ValueError(f"y: {type(self).__name__} requires y to be passed, but the target y is None")

    def _last_outputs(self, X: Any) -> np.ndarray:
        """The model's many-to-one outputs for X, (n, O) float64."""
        check_is_fitted(self)
        x = self._validated_X(X, reset=False)
        parts = [self.model_(x[start:start + PREDICT_CHUNK], return_sequences=False)[0]
                 for start in range(0, len(x), PREDICT_CHUNK)]
        return np.concatenate(parts).astype(np.float64)


def _docs(cls: type, output: str) -> type:
    cls.__doc__ = (cls.__doc__ or "") + PARAMETERS_DOC + FITTED_DOC.format(output=output)
    return cls


class RNNClassifier(ClassifierMixin, _RNNEstimator):
    """Classifies whole sequences: a recurrent model with a linear head on
    its last step, trained with cross-entropy, one logit per class.

    Labels may be of any type ``numpy.unique`` orders (ints, strings, ...):
    they are mapped to class ids as ``LabelEncoder`` does, and ``predict``
    maps back.
    """

    def fit(self, X: Any, y: Any) -> "RNNClassifier":
        """Trains a new model on ``X`` (n, T, I) or (n, T) and labels ``y`` (n,).

        Returns
        -------
        self
        """
        self._require_y(y)
        x = self._validated_X(X, reset=True)
        if is_foreign(y):
            y = as_array(y, "y")
        y = column_or_1d(y, warn=True)
        if y.dtype.kind == "f":  # Inf would reach LabelEncoder's float-to-int cast unnoticed
            assert_all_finite(y, input_name="y", estimator_name=type(self).__name__)
        self._check_y_length(x, y)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self._train(x, encoder.transform(y), "cross_entropy", len(encoder.classes_))
        self.classes_ = encoder.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n, n_classes), columns ordered as ``classes_``:
        the softmax of the model's logits (in float64, so rows sum to 1)."""
        logits = self._last_outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        normalised: np.ndarray = probabilities / probabilities.sum(axis=1, keepdims=True)
        return normalised

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The log of ``predict_proba``, computed stably from the logits."""
        logits = self._last_outputs(X)
        logits -= logits.max(axis=1, keepdims=True)
        log_probabilities: np.ndarray = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return log_probabilities

    def predict(self, X: Any) -> np.ndarray:
        """The most likely label of every sequence, (n,), from ``classes_``."""
        logits = self._last_outputs(X)  # checks that self is fitted, before classes_ is read
        labels: np.ndarray = self.classes_[np.argmax(logits, axis=1)]
        return labels


class RNNRegressor(RegressorMixin, _RNNEstimator):
    """Regresses a sequence onto one row of targets: a recurrent model with a
    linear head on its last step, trained with mean squared error.

    ``y`` is (n,) or (n, n_outputs); ``predict`` returns the same shape.
    Targets are used as given: a neural network trains best on targets of
    unit scale, so scale large ones (``TransformedTargetRegressor`` with a
    ``StandardScaler``).
    """

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one head row per target
        return tags

    def fit(self, X: Any, y: Any) -> "RNNRegressor":
        """Trains a new model on ``X`` (n, T, I) or (n, T) and targets ``y``
        (n,) or (n, n_outputs).

        Returns
        -------
        self
        """
        self._require_y(y)
        x = self._validated_X(X, reset=True)
        if is_foreign(y):
            y = as_array(y, "y")
        # allow_nd, so that a 3-D y meets the message below, which names y.
        y = check_array(y, ensure_2d=False, allow_nd=True, dtype=(np.float64, np.float32), input_name="y",
                        estimator=self)
        if y.ndim > 2:
            raise ValueError(f"y: expected (n_samples,) or (n_samples, n_outputs), got shape {y.shape}")
        self._check_y_length(x, y)
        target = y.reshape(len(y), -1)
        self._train(x, target, "mse", target.shape[1])
        self._y_ndim = y.ndim
        self.n_outputs_ = target.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, float64, (n,) or (n, n_outputs) like the ``y`` of ``fit``."""
        out = self._last_outputs(X)
        return out[:, 0] if self._y_ndim == 1 else out


_docs(RNNClassifier, "n_classes (logits)")
_docs(RNNRegressor, "n_outputs")
RNNClassifier.__doc__ = (RNNClassifier.__doc__ or "") + """    classes_ : ndarray
        The labels, sorted; column ``k`` of ``predict_proba`` is ``classes_[k]``.
"""
RNNRegressor.__doc__ = (RNNRegressor.__doc__ or "") + """    n_outputs_ : int
        Targets per sequence.
"""
