"""One-to-many generation: a model's outputs fed back as its next inputs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ._arrays import count_str, require_memory

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

MODES = ("continuous", "greedy", "sample")


def one_hot(ids: np.ndarray, size: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros(ids.shape + (size,), dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return out


def generate(model: "RecurrentModel", x0: Any, steps: int, *, h0: Any = None, mode: str = "continuous",
             temperature: float = 1.0, seed: Optional[int] = None) -> np.ndarray:
    """One-to-many: runs the prompt ``x0``, then feeds each output back as
    the next input for ``steps`` steps (built on ``step``).

    Parameters
    ----------
    x0 : array_like
        The prompt, laid out like ``x``: (B, T0, I), (T0, B, I) when not
        batch first, or (T0, I). In the token modes an integer ``x0`` with
        one axis fewer holds class ids, (B, T0) ((T0, B)) or (T0,).
    steps : int
        Items to generate; the first is the output after the prompt's
        last step.
    h0 : array_like, optional
        The state before the prompt, shaped like ``h_n``.
    mode : {"continuous", "greedy", "sample"}
        ``continuous`` feeds each output back as it is and returns them,
        (B, steps, O). ``greedy`` and ``sample`` read each output as logits
        over O classes, feed the chosen class back one-hot and return the
        int64 ids, (B, steps). Either way O must equal ``input_size``.
        Results are laid out like ``x`` ((steps, B, ...) when not batch
        first; no batch axis for an unbatched prompt).
    temperature : float
        ``sample`` draws from softmax(logits / temperature).
    seed : int, optional
        Seeds ``sample``.

    Raises
    ------
    ValueError
        For a bidirectional model, and for arguments out of range.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps: expected an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {count_str(steps)}")
    steps = int(steps)  # np.int64 products below would wrap
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)):
        raise TypeError(f"temperature: expected a number, got {type(temperature).__name__}")
    if not 0 < temperature <= sys.float_info.max:  # NaN, Inf and ints past float's range fail
        raise ValueError(f"temperature: expected a number > 0, got {temperature}")
    if model.bidirectional:
        raise ValueError(f"generate: {model!r} is bidirectional; its backward direction needs the whole "
                         "sequence, so it cannot generate one step at a time")
    I = model.input_size
    O = model.output_size if model.output_size is not None else model.spec.state_size
    if O != I:
        raise ValueError(f"generate feeds each output back as the next input, so it needs output size {O} "
                         f"== input_size {I}")
    x0 = np.asarray(x0)
    if mode != "continuous" and x0.dtype.kind in "iu" and x0.ndim in (1, 2):
        require_memory(x0.size * I * model.dtype.itemsize, f"x0: the one-hot prompt, {x0.shape + (I,)},")
        if x0.size and (x0.min() < 0 or x0.max() >= I):
            raise ValueError(f"x0: class ids must be in [0, {I}), got {x0[(x0 < 0) | (x0 >= I)].flat[0]}")
        x0 = one_hot(x0, I, model.dtype)
    if x0.ndim not in (2, 3) or x0.shape[-1] != I:
        raise ValueError(f"x0: expected a prompt shaped like x, (B, T0, {I}) or (T0, {I}), "
                         f"or class ids (B, T0) / (T0,) in the token modes; got {x0.shape}")
    unbatched = x0.ndim == 2
    time_axis = 0 if unbatched or not model.batch_first else 1
    if x0.shape[time_axis] < 1:
        raise ValueError("x0: the prompt needs at least one step")
    batch = 1 if unbatched else x0.shape[1 - time_axis]
    per_item = O * model.dtype.itemsize if mode == "continuous" else 8
    # The items, then the one array they are stacked into.
    require_memory(2 * steps * batch * per_item, f"generate: {count_str(steps)} steps of {batch} sequences")
    rng = np.random.default_rng(seed)

    out, state = model(x0, h0)
    if steps == 0 or batch == 0:  # nothing to compute, however many steps
        shape = (steps,) if unbatched else ((batch, steps) if model.batch_first else (steps, batch))
        if mode == "continuous":
            return np.zeros(shape + (O,), model.dtype)
        return np.zeros(shape, np.int64)
    y = np.take(out, -1, axis=time_axis)  # the output after the prompt's last step
    items = []
    for k in range(steps):
        if mode == "continuous":
            item = y
            feed = y
        else:
            if mode == "greedy":
                item = np.argmax(y, axis=-1)
            else:
                with np.errstate(all="ignore"):  # Inf logits, tiny temperatures: NaN or Inf quietly (API.md)
                    logits = y.astype(np.float64) / temperature
                    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
                    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
                u = rng.random(cdf.shape[:-1] + (1,))
                item = np.minimum((cdf < u).sum(axis=-1), O - 1)
            item = np.asarray(item, np.int64)
            feed = one_hot(item, I, model.dtype)
        items.append(item)
        if k + 1 < steps:
            y, state = model.step(feed, state)
    return np.stack(items, axis=time_axis)
