"""One-to-many generation: a model's outputs fed back as its next inputs,
with the sampling controls of language models (``temperature``, ``top_k``,
``top_p``) and a stop token (``eos``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional, cast

import numpy as np

from ._arrays import as_array, count_str, require_memory
from ._tokens import is_token_model, read_ids

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

MODES = ("continuous", "greedy", "sample")


def one_hot(ids: np.ndarray, size: int, dtype: np.dtype) -> np.ndarray:
    out = np.zeros(ids.shape + (size,), dtype)
    np.put_along_axis(out, ids[..., None], 1, axis=-1)
    return out


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")


def _check_controls(mode: str, top_k: Any, top_p: Any, eos: Any) -> None:
    """The sampling controls' types and ranges (``eos``'s range needs the
    model: checked by ``generate``), and the modes they mean something in."""
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
            raise TypeError(f"top_k: expected an int or None, got {type(top_k).__name__}")
        if top_k < 1:
            raise ValueError(f"top_k: expected an int >= 1 (the classes kept), got {count_str(top_k)}")
    if top_p is not None:
        _check_number("top_p", top_p)
        if not 0 < top_p <= 1:  # NaN fails too
            raise ValueError(f"top_p: expected a probability in (0, 1], got {top_p}")
    if eos is not None and (isinstance(eos, bool) or not isinstance(eos, (int, np.integer))):
        raise TypeError(f"eos: expected a class id (int) or None, got {type(eos).__name__}")
    for name, value in (("top_k", top_k), ("top_p", top_p)):
        if value is not None and mode != "sample":
            raise ValueError(f"{name}: restricts what mode='sample' draws from; mode={mode!r} "
                             + ("picks the most likely class anyway" if mode == "greedy"
                                else "feeds outputs back as they are"))
    if eos is not None and mode == "continuous":
        raise ValueError("eos: a stop class exists in the token modes ('greedy', 'sample') only; "
                         "mode='continuous' feeds outputs back as they are")


def sample(y: np.ndarray, temperature: float, top_k: Optional[int], top_p: Optional[float],
           rng: np.random.Generator) -> np.ndarray:
    """Class ids drawn from softmax(y / temperature) over the last axis,
    restricted as Hugging Face's ``TopKLogitsWarper`` then
    ``TopPLogitsWarper`` restrict it (after the temperature): the ``top_k``
    most likely classes (ties with the k-th kept), then the smallest set of
    the most likely whose probability (renormalised) is >= ``top_p``, the
    most likely class always kept. One uniform draw per row."""
    O = y.shape[-1]
    with np.errstate(all="ignore"):  # Inf logits, tiny temperatures: NaN or Inf quietly (API.md)
        logits = y.astype(np.float64) / temperature
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        if top_k is None and top_p is None:  # the draw of every rnnext before top_k/top_p: seeds keep their results
            cdf = np.cumsum(p, axis=-1)
            u = rng.random(cdf.shape[:-1] + (1,))
            return cast(np.ndarray, np.minimum((cdf < u).sum(axis=-1), O - 1))
        if top_k is not None and top_k < O:
            kth = np.partition(p, O - top_k, axis=-1)[..., O - top_k:O - top_k + 1]
            p = np.where(p >= kth, p, 0.0)
            p /= p.sum(axis=-1, keepdims=True)
        if top_p is not None and top_p < 1:
            order = np.argsort(-p, axis=-1, kind="stable")
            ranked = np.take_along_axis(p, order, axis=-1)
            before = np.cumsum(ranked, axis=-1) - ranked  # the probability of the more likely classes
            before[..., 0] = 0.0
            keep = np.empty(p.shape, bool)
            np.put_along_axis(keep, order, before < top_p, axis=-1)
            p = np.where(keep, p, 0.0)
        cdf = np.cumsum(p, axis=-1)
        # u scaled to the kept mass and compared with <=: a class of probability 0
        # owns an empty interval, so no rounding draws one.
        u = rng.random(cdf.shape[:-1] + (1,)) * cdf[..., -1:]
        return cast(np.ndarray, np.minimum((cdf <= u).sum(axis=-1), O - 1))


def generate(model: "RecurrentModel", x0: Any, steps: int, *, h0: Any = None, mode: str = "continuous",
             temperature: float = 1.0, top_k: Optional[int] = None, top_p: Optional[float] = None,
             eos: Optional[int] = None, seed: Optional[int] = None) -> np.ndarray:
    """One-to-many: runs the prompt ``x0``, then feeds each output back as
    the next input for ``steps`` steps (built on ``step``).

    Parameters
    ----------
    x0 : array_like
        The prompt, laid out like ``x``: (B, T0, I), (T0, B, I) when not
        batch first, or (T0, I). In the token modes an integer ``x0`` with
        one axis fewer holds class ids, (B, T0) ((T0, B)) or (T0,); a model
        with ``vocab_size`` takes its ids (its ``x``) and nothing else.
    steps : int
        Items to generate; the first is the output after the prompt's
        last step.
    h0 : array_like, optional
        The state before the prompt, shaped like ``h_n``.
    mode : {"continuous", "greedy", "sample"}
        ``continuous`` feeds each output back as it is and returns them,
        (B, steps, O); O must equal ``input_size``. ``greedy`` and
        ``sample`` read each output as logits over O classes and return
        the chosen int64 ids, (B, steps): a model with ``vocab_size`` reads
        the chosen ids back directly (O must equal ``vocab_size``), any
        other is fed them one-hot (O must equal ``input_size``). Results are
        laid out like ``x`` ((steps, B, ...) when not batch first; no batch
        axis for an unbatched prompt).
    temperature : float
        ``sample`` draws from softmax(logits / temperature).
    top_k : int, optional
        ``sample`` only: draw among the ``top_k`` most likely classes (those
        tied with the k-th too); ``top_k >= O`` restricts nothing.
    top_p : float in (0, 1], optional
        ``sample`` only (nucleus sampling): draw among the smallest set of
        the most likely classes whose probability is at least ``top_p``
        (the most likely class always). Applied after the temperature and
        ``top_k``, as Hugging Face's ``generate`` does.
    eos : int, optional
        A class id in the token modes: each sequence stops at its first
        ``eos`` (kept in the result) and the rest of its row is ``eos``;
        generation stops computing once every sequence has stopped. The
        result keeps its ``steps`` items.
    seed : int, optional
        Seeds ``sample``.

    Raises
    ------
    TypeError
        For arguments of the wrong type (``x0`` floats for a model with
        ``vocab_size``).
    ValueError
        For a bidirectional model, sizes that do not fit (naming them),
        arguments out of range, ``top_k``/``top_p`` in another mode than
        ``"sample"``, ``eos`` in ``"continuous"`` and ``"continuous"`` for
        a model with ``vocab_size``.
    """
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps: expected an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {count_str(steps)}")
    steps = int(steps)  # np.int64 products below would wrap
    _check_number("temperature", temperature)
    if not 0 < temperature <= sys.float_info.max:  # NaN, Inf and ints past float's range fail
        raise ValueError(f"temperature: expected a number > 0, got {temperature}")
    _check_controls(mode, top_k, top_p, eos)
    if model.bidirectional:
        raise ValueError(f"generate: {model!r} is bidirectional; its backward direction needs the whole "
                         "sequence, so it cannot generate one step at a time")
    spec = model.spec
    tokens = is_token_model(spec)
    I = model.input_size
    O = model.output_size if model.output_size is not None else model.spec.state_size
    if tokens:
        V = spec.config["vocab_size"]
        if mode == "continuous":
            raise ValueError(f"mode: {model!r} reads token ids, so it generates in the token modes 'greedy' or "
                             "'sample'; 'continuous' would feed its outputs back as features")
        if O != V:
            raise ValueError(f"generate feeds each chosen id back as the next input, so it needs output size {O} "
                             f"== vocab_size {V}")
    elif O != I:
        raise ValueError(f"generate feeds each output back as the next input, so it needs output size {O} "
                         f"== input_size {I}")
    if eos is not None and not 0 <= eos < O:
        raise ValueError(f"eos: expected a class id in [0, {O}), got {eos}")
    if tokens:
        x0, _ = read_ids(spec, x0, name="x0")
        unbatched = x0.ndim == 1
    else:
        x0 = as_array(x0, "x0", model.dtype)
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
    stopped = None if eos is None else np.zeros(y.shape[:-1], bool)
    for k in range(steps):
        if mode == "continuous":
            item = feed = y
        else:
            item = np.argmax(y, axis=-1) if mode == "greedy" else sample(y, temperature, top_k, top_p, rng)
            item = np.asarray(item, np.int64)
            if stopped is not None:  # a stopped sequence is padded with eos
                item = np.where(stopped, cast(int, eos), item)  # eos is set when stopped is
                stopped = stopped | (item == eos)
            feed = item if tokens else one_hot(item, I, model.dtype)
        items.append(item)
        if stopped is not None and stopped.all():
            items.extend([np.full(stopped.shape, eos, np.int64)] * (steps - k - 1))
            break
        if k + 1 < steps:
            y, state = model.step(feed, state)
    return np.stack(items, axis=time_axis)
