"""``fit``'s options and its loop over epochs, shared by ``model.fit``,
``rnnext.dask.fit`` and ``Seq2Seq.fit`` so that the three read the same
arguments with the same words and run epochs, schedules, metrics,
callbacks and the progress bar alike; each supplies only how one batch is
trained (``train_batch``) and how the validation data is scored.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, Union, cast, overload

import numpy as np

from . import callbacks as _callbacks
from . import optim as _optim

OPTIMIZERS = ("sgd", "adam", "adamw")


@overload
def positive_int(name: str, value: Any, allow_none: Literal[False] = False) -> int: ...
@overload
def positive_int(name: str, value: Any, allow_none: bool) -> Optional[int]: ...
def positive_int(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


@overload
def positive_float(name: str, value: Any, allow_none: Literal[False] = False) -> float: ...
@overload
def positive_float(name: str, value: Any, allow_none: bool) -> Optional[float]: ...
def positive_float(name: str, value: Any, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not 0 < value <= sys.float_info.max:  # NaN, Inf and ints past float's range fail
        raise ValueError(f"{name}: expected a positive number, got {value}")
    return float(value)


def check_lr(lr: Any) -> Union[None, float, Callable[[int], Any]]:
    """None, a positive float, or a schedule (a callable epoch -> lr)."""
    if lr is None or callable(lr):
        return cast(Optional[Callable[[int], Any]], lr)
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)):
        raise TypeError(f"lr: expected a positive number or a callable epoch -> lr, got {type(lr).__name__}")
    return positive_float("lr", lr)


def make_optimizer(optimizer: Any, lr: Union[None, float, Callable[[int], Any]]) -> _optim.Optimizer:
    """The optimiser ``fit`` steps with: a fresh one for a name (``lr`` or
    1e-3; SGD with momentum 0.9), or the object given (``run_epochs`` sets
    a float ``lr`` on it, once every argument has passed its checks)."""
    if isinstance(optimizer, _optim.Optimizer):
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError(f"optimizer: expected 'sgd', 'adam', 'adamw' or an rnnext.optim optimiser, "
                        f"got {type(optimizer).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected 'sgd', 'adam', 'adamw' or an rnnext.optim optimiser, "
                         f"got {optimizer!r}")
    rate = lr if isinstance(lr, float) else 1e-3  # a schedule sets it before the first step
    if optimizer == "sgd":
        return _optim.SGD(rate, momentum=0.9)
    return _optim.Adam(rate) if optimizer == "adam" else _optim.AdamW(rate)


def scheduled_lr(schedule: Callable[[int], Any], epoch: int) -> float:
    """The schedule's rate for ``epoch``, checked."""
    value = schedule(epoch)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"lr: the schedule returned {type(value).__name__} for epoch {epoch}; "
                        "expected a positive finite number")
    if not 0 < value <= sys.float_info.max:
        raise ValueError(f"lr: the schedule returned {value} for epoch {epoch}; expected a positive finite number")
    return float(value)


def check_callbacks(callbacks: Any, lr: Any) -> List[Callable[..., Any]]:
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks: expected callables, got {type(cb).__name__}")
        if callable(lr) and isinstance(cb, _callbacks.ReduceLROnPlateau):
            raise ValueError("callbacks: ReduceLROnPlateau and a callable lr (a schedule) both set the learning "
                             "rate every epoch; use one of them")
    return cast(List[Callable[..., Any]], callbacks)


def check_fit_arguments(loss: Any, epochs: Any, batch_size: Any, optimizer: Any, lr: Any, clip_norm: Any,
                        tbptt: Any) -> Tuple[str, int, int, _optim.Optimizer, Any, Optional[float], Optional[int]]:
    """``fit``'s scalar arguments checked, in its order: ``(loss, epochs,
    batch_size, optimizer object, lr (None, float or schedule), clip_norm,
    tbptt)``."""
    from .losses import check_loss

    loss = check_loss(loss)
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    lr = check_lr(lr)
    clip_norm = positive_float("clip_norm", clip_norm, allow_none=True)
    tbptt = positive_int("tbptt", tbptt, allow_none=True)
    opt = make_optimizer(optimizer, lr)
    return loss, epochs, batch_size, opt, lr, clip_norm, tbptt


def log_keys(metrics: Sequence[str], validation: bool) -> List[str]:
    """The keys of the history and of every epoch's logs, in Keras' order."""
    keys = ["loss"] + list(metrics)
    return keys + ["val_" + k for k in keys] if validation else keys


class Running:
    """An epoch's sums: loss x counted elements, counted elements, metric sums."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0
        self.sums: Dict[str, float] = {}

    def add(self, value: float, count: int, sums: Optional[Dict[str, float]] = None) -> None:
        self.total += value * count
        self.count += count
        for k, v in (sums or {}).items():
            self.sums[k] = self.sums.get(k, 0) + v

    def logs(self, metrics: Sequence[str]) -> Dict[str, float]:
        out = {"loss": self.total / self.count if self.count else 0.0}
        for k in metrics:
            out[k] = self.sums.get(k, 0) / self.count if self.count else 0.0
        return out


def postfix(logs: Dict[str, float]) -> Dict[str, str]:
    return {k: f"{v:.4g}" for k, v in logs.items()}


def run_epochs(context: Any, opt: _optim.Optimizer, lr: Any, callbacks: List[Callable[..., Any]], *, epochs: int, rows: int,
               batch_size: int, rng: np.random.Generator, shuffle: bool, progress: bool, metrics: Sequence[str],
               train_batch: Callable[[np.ndarray, int, int, Running], None],
               validate: Optional[Callable[[], Dict[str, float]]]) -> Dict[str, List[float]]:
    """The epochs of a ``fit``: each draws its batches (``rng`` when
    ``shuffle``), has ``train_batch(rows, epoch, number, running)`` train
    on each (``epoch`` and ``number`` counted from 0 in this call, for
    messages), scores the validation data, logs, and asks the callbacks
    whether to go on. ``lr`` a schedule sets ``opt.lr`` before each epoch
    from ``opt.epochs``, which counts epochs across calls."""
    from tqdm.auto import tqdm

    keys = log_keys(metrics, validate is not None)
    if isinstance(lr, float):
        opt.lr = lr
    _callbacks.start(callbacks, context, opt, keys)
    history: Dict[str, List[float]] = {k: [] for k in keys}
    logs: Dict[str, float] = {}
    for local in range(epochs):
        epoch = opt.epochs
        if callable(lr):
            opt.lr = scheduled_lr(lr, epoch)
        parts = batches_of(rows, batch_size, rng if shuffle else None)
        running = Running()
        with tqdm(total=len(parts), desc=f"epoch {local + 1}/{epochs}", disable=not progress, leave=False) as bar:
            for number, idx in enumerate(parts):
                train_batch(idx, local, number, running)
                bar.update()
                bar.set_postfix(postfix(running.logs(metrics)))
            logs = running.logs(metrics)
            if validate is not None:
                logs.update({"val_" + k: v for k, v in validate().items()})
            bar.set_postfix(postfix(logs))
        for k in keys:
            history[k].append(logs[k])
        opt.epochs += 1
        if _callbacks.epoch_end(callbacks, epoch, logs):
            break
    _callbacks.finish(callbacks, logs)
    return history


def batches_of(n: int, size: int, rng: Optional[np.random.Generator]) -> List[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)] or [order]


def update(model: Any, opt: _optim.Optimizer, value: float, grads: Dict[str, np.ndarray],
           clip_norm: Optional[float], epoch: int, number: int) -> None:
    """One optimiser step from a batch's mean loss and gradients: the finite
    checks, clipping, then the update of ``model`` (anything with ``params``
    and ``set_params``)."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"fit: the loss is {value} at epoch {epoch + 1}, batch {number + 1}; "
            "lower lr, or clip gradients with clip_norm")
    if clip_norm is not None:
        grads, _ = _optim.clip_grad_norm(grads, clip_norm)
    if not all(np.all(np.isfinite(g)) for g in grads.values()):
        raise FloatingPointError(
            f"fit: non-finite gradients at epoch {epoch + 1}, batch {number + 1} "
            f"(the loss was {value}); lower lr, or clip gradients with clip_norm")
    model.set_params(opt.step(model.params, grads))

