"""Losses and metrics: the loss arithmetic of ``fit``, ``evaluate`` and
``loss_and_grads`` (vectorised NumPy over the model's outputs), and the
metrics computed from the same outputs (no extra forward).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ._arrays import cast, check_choice

__all__ = ["mse_loss", "cross_entropy_loss", "accuracy_count", "check_loss", "check_metrics"]

LOSSES = ("mse", "cross_entropy")
METRICS = ("accuracy",)


# ---------------------------------------------------------------- losses
# Each takes outputs y (..., O), targets, and a mask of the counted positions
# (y.shape[:-1], or None for all), and returns (loss, dy, count): the mean over
# counted elements as torch's reduction="mean", its gradient (zero where not
# counted), and the number of elements the mean divides by.


def mse_loss(y: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray]) -> Tuple[float, np.ndarray, int]:
    """Mean squared error over counted positions x outputs."""
    # C order whatever the layouts of y and target: NumPy sums in memory order,
    # and the loss must not depend on how the caller's arrays are laid out.
    with np.errstate(over="ignore", invalid="ignore"):  # Inf targets: inf - inf is NaN, quietly
        diff = np.ascontiguousarray(y - cast(target, y.dtype))
    if mask is not None:
        diff = np.where(mask[..., None], diff, 0)  # where, not *: padding may hold NaN
    count = (int(mask.sum()) if mask is not None else int(np.prod(y.shape[:-1]))) * y.shape[-1]
    if count == 0:
        return 0.0, np.zeros_like(y), 0
    with np.errstate(over="ignore", invalid="ignore"):
        loss = float(np.sum(np.square(diff, dtype=np.float64)) / count)
        dy = (diff * (2.0 / count)).astype(y.dtype, copy=False)
    return loss, dy, count


def cross_entropy_loss(y: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray]) -> Tuple[float, np.ndarray, int]:
    """Softmax cross-entropy of logits y (..., O) against class ids, mean over
    counted positions; log-sum-exp keeps it finite for any finite logits."""
    ids = np.where(mask, target, 0) if mask is not None else target
    count = int(mask.sum()) if mask is not None else int(np.prod(y.shape[:-1]))
    if count == 0:
        return 0.0, np.zeros_like(y), 0
    with np.errstate(over="ignore", invalid="ignore"):
        shifted = y.astype(np.float64) - np.max(y, axis=-1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, ids[..., None], axis=-1)[..., 0]
        nll = np.ascontiguousarray(np.log(total[..., 0]) - picked)  # C order: see mse_loss
        if mask is not None:
            nll = np.where(mask, nll, 0.0)
        loss = float(nll.sum() / count)
        dy = exp / total
        np.put_along_axis(dy, ids[..., None], np.take_along_axis(dy, ids[..., None], axis=-1) - 1, axis=-1)
        dy /= count
        if mask is not None:
            dy = np.where(mask[..., None], dy, 0.0)
    return loss, dy.astype(y.dtype), count


LOSS_FUNCTIONS: Dict[str, Callable[..., Any]] = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


def check_loss(loss: Any) -> str:
    return check_choice("loss", loss, LOSSES)


# ---------------------------------------------------------------- metrics
# Each takes the same (y, target, mask) as the losses and returns the sum the
# metric's mean divides by the loss's count: for accuracy, the counted
# positions whose arg-max class is the target.


def accuracy_count(y: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray]) -> int:
    """Counted positions (valid steps, or sequences) whose arg-max class
    equals the target id."""
    hit = np.argmax(y, axis=-1) == target
    if mask is not None:
        hit &= mask
    return int(np.count_nonzero(hit))


METRIC_FUNCTIONS: Dict[str, Callable[..., Any]] = {"accuracy": accuracy_count}


def check_metrics(metrics: Any, loss: str) -> List[str]:
    """The metric names, checked against the loss (accuracy reads class ids,
    so it needs cross_entropy); duplicates dropped, order kept."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not isinstance(metrics, Iterable):
        raise TypeError(f"metrics: expected a list of names such as ['accuracy'], got {type(metrics).__name__}")
    names: List[str] = []
    for name in metrics:
        if not isinstance(name, str):
            raise TypeError(f"metrics: expected names (str), got {type(name).__name__}")
        if name not in METRICS:
            raise ValueError(f"metrics: unknown metric {name!r}; expected one of {list(METRICS)}")
        if name == "accuracy" and loss != "cross_entropy":
            raise ValueError(f"metrics: 'accuracy' compares arg-max classes with class ids, so it needs "
                             f"loss='cross_entropy', got loss={loss!r}")
        if name not in names:
            names.append(name)
    return names


def tally(metrics: List[str], y: np.ndarray, target: np.ndarray, mask: Optional[np.ndarray],
          into: Dict[str, float]) -> None:
    """Adds each metric's sum over a batch to ``into``."""
    for name in metrics:
        into[name] = into.get(name, 0) + METRIC_FUNCTIONS[name](y, target, mask)
