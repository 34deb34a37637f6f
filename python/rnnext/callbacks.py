"""Callbacks for ``fit``: ``EarlyStopping``, ``ModelCheckpoint`` and
``ReduceLROnPlateau`` (API.md section 8), with Keras' semantics.

The protocol ``fit`` follows (plain callables ``callback(epoch, logs)``
keep working, and stop training by returning True):

- ``set_context(model, optimizer, keys)`` before the first epoch, when the
  callback has it: the model trained, the optimiser object (its ``lr`` is
  the learning rate of the next step) and the keys the logs will have, so
  a monitor that will never be logged is refused before any compute;
- ``callback(epoch, logs)`` after every epoch (``epoch`` counts the
  optimiser's epochs from 0, across ``fit`` calls that share it; ``logs``
  the epoch's ``loss``, ``val_loss`` and metrics); True stops training;
- ``on_train_end(logs)`` when training ends, stopped or not, when present.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, cast

import numpy as np

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"]


class Callback:
    """The base of rnnext's callbacks: stores the context, does nothing."""

    model: Any = None
    optimizer: Any = None

    def set_context(self, model: Any, optimizer: Any, keys: Sequence[str]) -> None:
        self.model, self.optimizer, self.keys = model, optimizer, list(keys)

    def __call__(self, epoch: int, logs: Dict[str, float]) -> Optional[bool]:
        return None

    def on_train_end(self, logs: Dict[str, float]) -> None:
        pass


def _mode(name: str, mode: Any, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":  # Keras' rule: accuracies rise, everything else (losses) falls
        return "max" if monitor.endswith("accuracy") else "min"
    return cast(str, mode)


def _non_negative(name: str, value: Any, integer: bool = False) -> Any:
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name}: expected a non-negative {'int' if integer else 'number'}, "
                        f"got {type(value).__name__}")
    if not 0 <= value < math.inf:
        raise ValueError(f"{name}: expected a non-negative {'int' if integer else 'number'}, got {value}")
    return int(value) if integer else float(value)


class _Monitoring(Callback):
    """A callback that follows one value of the logs, lower or higher better."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a log key such as 'val_loss', got {type(monitor).__name__}")
        self.monitor = monitor
        self.mode = _mode("mode", mode, monitor)
        self.min_delta: float = _non_negative("min_delta", min_delta)
        self.best = math.inf if self.mode == "min" else -math.inf

    def set_context(self, model: Any, optimizer: Any, keys: Sequence[str]) -> None:
        super().set_context(model, optimizer, keys)
        if self.monitor not in keys:
            self._missing(keys)

    def _missing(self, keys: Iterable[str]) -> None:
        hint = " (pass validation_data to fit)" if self.monitor.startswith("val_") else ""
        raise ValueError(f"monitor: {type(self).__name__} monitors {self.monitor!r}, which fit does not log{hint}; "
                         f"the logs have {sorted(keys)}")

    def current(self, logs: Dict[str, float]) -> float:
        if self.monitor not in logs:
            self._missing(logs)
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """Better than the best so far by more than ``min_delta``."""
        if self.mode == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best


class EarlyStopping(_Monitoring):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the logs: ``"val_loss"``, ``"loss"``, ``"val_accuracy"``, ...
    patience : int
        Epochs without improvement after which training stops.
    min_delta : float
        A change smaller than this is no improvement.
    restore_best_weights : bool
        When training ends (stopped or not), load the parameters of the best
        epoch back into the model (bit for bit).
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; "auto": higher for accuracies.

    Attributes
    ----------
    best : float
        The best value seen; ``best_epoch`` its epoch, ``stopped_epoch`` the
        epoch training stopped at (None if it did not).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best_weights: bool = True, *, mode: str = "auto") -> None:
        super().__init__(monitor, mode, min_delta)
        self.patience = _non_negative("patience", patience, integer=True)
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError(f"restore_best_weights: expected a bool, got {type(restore_best_weights).__name__}")
        self.restore_best_weights = bool(restore_best_weights)
        self.wait = 0
        self.best_epoch: Optional[int] = None
        self.best_weights: Optional[Dict[str, np.ndarray]] = None
        self.stopped_epoch: Optional[int] = None

    def set_context(self, model: Any, optimizer: Any, keys: Sequence[str]) -> None:
        super().set_context(model, optimizer, keys)
        # Each fit starts afresh, as Keras' on_train_begin.
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait, self.best_epoch, self.best_weights, self.stopped_epoch = 0, None, None, None

    def __call__(self, epoch: int, logs: Dict[str, float]) -> Optional[bool]:
        value = self.current(logs)
        self.wait += 1
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return None
        if self.wait >= self.patience and epoch > 0:  # Keras' rule: never stop after the first epoch
            self.stopped_epoch = epoch
            return True
        return None

    def on_train_end(self, logs: Dict[str, float]) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(_Monitoring):
    """Saves the model (``model.save``, safetensors) after epochs.

    Parameters
    ----------
    filepath : str or os.PathLike
        Where to write; may hold ``str.format`` fields filled from the
        epoch (counted from 1, as Keras) and the logs, such as
        ``"ckpt-{epoch:03d}-{val_loss:.3f}.safetensors"``.
    monitor : str
        The log key compared between epochs (with ``save_best_only``).
    save_best_only : bool
        Save only when ``monitor`` improves on every earlier epoch; else after
        every epoch.
    mode : {"auto", "min", "max"}
        As in ``EarlyStopping``.

    Attributes
    ----------
    saved : list of str
        The files written, in order.
    """

    def __init__(self, filepath: Any, monitor: str = "val_loss", save_best_only: bool = True, *,
                 mode: str = "auto") -> None:
        super().__init__(monitor, mode, 0.0)
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath: expected a path (str or os.PathLike), got {type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        if not isinstance(save_best_only, (bool, np.bool_)):
            raise TypeError(f"save_best_only: expected a bool, got {type(save_best_only).__name__}")
        self.save_best_only = bool(save_best_only)
        self.saved: List[str] = []

    def set_context(self, model: Any, optimizer: Any, keys: Sequence[str]) -> None:
        if not hasattr(model, "save"):
            raise TypeError(f"callbacks: ModelCheckpoint saves RNN, LSTM and GRU models, not {type(model).__name__}")
        if self.save_best_only:
            super().set_context(model, optimizer, keys)
        else:
            Callback.set_context(self, model, optimizer, keys)
        try:  # a bad format field is an error now, not after an epoch of training
            self.filepath.format(epoch=1, **{k: 0.0 for k in keys})
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"filepath: cannot fill {self.filepath!r} from the epoch and the logs {sorted(keys)} "
                             f"({type(error).__name__}: {error})") from None

    def __call__(self, epoch: int, logs: Dict[str, float]) -> Optional[bool]:
        if self.save_best_only:
            value = self.current(logs)
            if not self.improved(value):
                return None
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **logs)
        self.model.save(path)
        self.saved.append(path)
        return None


class ReduceLROnPlateau(_Monitoring):
    """Multiplies the optimiser's learning rate by ``factor`` when ``monitor``
    has not improved for ``patience`` epochs (Keras' and torch's rule).

    Parameters
    ----------
    monitor : str
        A key of the logs.
    factor : float
        In (0, 1): the new learning rate is ``max(lr * factor, min_lr)``.
    patience : int
        Epochs without improvement before a reduction; the count restarts
        after each reduction.
    min_lr : float
        The learning rate is never reduced below it.
    min_delta : float
        A change smaller than this is no improvement (Keras' default 1e-4).
    mode : {"auto", "min", "max"}
        As in ``EarlyStopping``.

    Notes
    -----
    It changes ``optimizer.lr``, so with an optimiser object the reduced
    rate carries into the next ``fit``. A callable ``lr`` (a schedule)
    sets the rate every epoch, so ``fit`` refuses the two together.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 3, min_lr: float = 0.0, *,
                 min_delta: float = 1e-4, mode: str = "auto") -> None:
        super().__init__(monitor, mode, min_delta)
        if isinstance(factor, bool) or not isinstance(factor, (int, float, np.integer, np.floating)):
            raise TypeError(f"factor: expected a number in (0, 1), got {type(factor).__name__}")
        if not 0 < factor < 1:
            raise ValueError(f"factor: expected a number in (0, 1), got {factor}")
        self.factor = float(factor)
        self.patience = _non_negative("patience", patience, integer=True)
        self.min_lr = _non_negative("min_lr", min_lr)
        self.wait = 0

    def __call__(self, epoch: int, logs: Dict[str, float]) -> Optional[bool]:
        value = self.current(logs)
        if self.improved(value):
            self.best, self.wait = value, 0
            return None
        self.wait += 1
        if self.wait >= self.patience:
            if self.optimizer.lr > self.min_lr:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.wait = 0
        return None


def start(callbacks: List[Callable[..., Any]], model: Any, optimizer: Any, keys: Sequence[str]) -> None:
    """Hands each callback that takes one its context (``fit``'s first step)."""
    for cb in callbacks:
        set_context = getattr(cb, "set_context", None)
        if set_context is not None:
            set_context(model, optimizer, keys)


def epoch_end(callbacks: List[Callable[..., Any]], epoch: int, logs: Dict[str, float]) -> bool:
    """Calls every callback (each sees the epoch even when an earlier one
    stops training); True when one of them asks to stop."""
    return any([cb(epoch, dict(logs)) is True for cb in callbacks])


def finish(callbacks: List[Callable[..., Any]], logs: Dict[str, float]) -> None:
    for cb in callbacks:
        end = getattr(cb, "on_train_end", None)
        if end is not None:
            end(dict(logs))
