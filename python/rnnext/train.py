"""Training: losses, gradients of a model, optimisers, ``fit`` and ``evaluate``.

The recurrent and head gradients come from the model's ``forward_cache`` /
``backward_cache`` (the C++ core's backpropagation through time, driven over
the layers by ``layers.py``); this module does the loss arithmetic,
vectorised NumPy, and the bookkeeping around it. It reaches the model only
through its public methods and the package interface listed in ``models.py``.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ._arrays import cast, check_choice
from ._states import read_state, state_out
from ._tokens import sequence_input
from .layers import map_state

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

__all__ = ["mse_loss", "cross_entropy_loss", "SGD", "Adam", "clip_grad_norm"]

LOSSES = ("mse", "cross_entropy")


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


LOSS_FUNCTIONS: Dict[str, Callable] = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}


# ---------------------------------------------------------------- optimisers


class SGD:
    """SGD with momentum, as torch.optim.SGD(momentum=0.9): v = m v + g; p -= lr v."""

    def __init__(self, lr: float, momentum: float = 0.9):
        self.lr, self.momentum = lr, momentum
        self.velocity: Dict[str, np.ndarray] = {}

    @np.errstate(over="ignore", invalid="ignore")  # huge gradients give Inf quietly, as in torch (API.md)
    def step(self, params: Dict[str, np.ndarray], grads: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        out = {}
        for k, p in params.items():
            v = self.velocity.get(k)
            v = grads[k].copy() if v is None else self.momentum * v + grads[k]
            self.velocity[k] = v
            out[k] = p - self.lr * v
        return out


class Adam:
    """Adam with torch's defaults (betas 0.9, 0.999; eps 1e-8), bias-corrected."""

    def __init__(self, lr: float, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m: Dict[str, np.ndarray] = {}
        self.v: Dict[str, np.ndarray] = {}

    @np.errstate(over="ignore", invalid="ignore")  # g * g of a gradient past 1.8e19 is Inf in float32, quietly
    def step(self, params: Dict[str, np.ndarray], grads: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.t += 1
        b1, b2 = self.betas
        out = {}
        for k, p in params.items():
            g = grads[k]
            m = b1 * self.m.get(k, 0) + (1 - b1) * g
            v = b2 * self.v.get(k, 0) + (1 - b2) * g * g
            self.m[k], self.v[k] = m, v
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            out[k] = p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return out


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def global_norm(grads: Dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_grad_norm(grads: Dict[str, np.ndarray], max_norm: float) -> Tuple[Dict[str, np.ndarray], float]:
    """Scales all gradients together so their global norm is at most max_norm
    (torch.nn.utils.clip_grad_norm_); returns them and the norm before clipping."""
    norm = global_norm(grads)
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN, quietly: fit reports non-finite losses
            grads = {k: (g * scale).astype(g.dtype, copy=False) for k, g in grads.items()}
    return grads, norm


# ---------------------------------------------------------------- arguments


def check_loss(loss: Any) -> str:
    return check_choice("loss", loss, LOSSES)


class Batch:
    """x, targets and lengths of a batch, batched (an unbatched sequence gets a
    batch axis of 1) and in the model's layout, with batch-first views for the
    loss arithmetic."""

    def __init__(self, model: "RecurrentModel", x: Any, target: Any, loss: str, lengths: Any,
                 return_sequences: Optional[bool]):
        x, self.unbatched = sequence_input(model.spec, x, lengths)  # ids (B, T) with vocab_size, else (B, T, I)
        self.batch_first = model.batch_first
        self.axis = 0 if self.batch_first else 1  # the batch axis of x
        if self.unbatched:
            x = np.expand_dims(x, self.axis)
        self.x = x
        B, T = self.bf(x).shape[:2]
        self.B, self.T = B, T
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.dtype.kind not in "iu":
                raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
            lengths = lengths.reshape(-1) if self.unbatched else lengths
            if lengths.shape != (B,):
                raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {lengths.shape}")
            if B and (lengths.min() < 1 or lengths.max() > T):
                bad = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
                raise ValueError(f"lengths[{bad}] = {lengths[bad]} is outside [1, T] with T = {T}")
        self.lengths = lengths
        O = model.output_size if model.output_size is not None else model.num_directions * model.spec.state_size
        self.target, self.per_step = read_target(model, np.asarray(target), loss, return_sequences,
                                                 self.unbatched, B, T, O)
        if loss == "cross_entropy":  # ids are checked where they count: padding may hold anything
            counted = self.mask() if self.per_step else None
            bad = (self.target < 0) | (self.target >= O)
            if counted is not None:
                bad &= counted
            if bad.any():
                raise ValueError(f"target: class ids must be in [0, {O}), got {self.target[bad].flat[0]}")

    def bf(self, a: np.ndarray) -> np.ndarray:
        """A (B, T, ...) view of a per-step array in the model's layout."""
        return a if self.batch_first else np.swapaxes(a, 0, 1)

    def mask(self) -> Optional[np.ndarray]:
        if self.lengths is None:
            return None
        return np.arange(self.T)[None, :] < self.lengths[:, None]


def read_target(model: "RecurrentModel", target: np.ndarray, loss: str, return_sequences: Optional[bool],
                unbatched: bool, B: int, T: int, O: int) -> Tuple[np.ndarray, bool]:
    """Checks the targets and reads whether they are per step (inferred from
    their rank unless return_sequences says); returns them batched, batch first."""
    if loss == "cross_entropy" and target.dtype.kind not in "iu":
        raise TypeError(f"target: cross_entropy expects integer class ids, got dtype {target.dtype}")
    if loss == "mse" and target.dtype.kind not in "fiub":
        raise TypeError(f"target: mse expects real numbers, got dtype {target.dtype}")
    features = (O,) if loss == "mse" else ()
    per_step_rank = (1 if unbatched else 2) + len(features)
    per_step = target.ndim == per_step_rank if return_sequences is None else bool(return_sequences)
    if per_step:
        expected = (T,) if unbatched else ((B, T) if model.batch_first else (T, B))
    else:
        expected = () if unbatched else (B,)
    expected = expected + features
    if target.shape != expected:
        where = "at every step" if per_step else "at the last valid step"
        raise ValueError(f"target: expected shape {expected} for {loss} {where}, got {target.shape}")
    if unbatched:
        target = target[None]
    elif per_step and not model.batch_first:
        target = np.swapaxes(target, 0, 1)
    return target, per_step


# ---------------------------------------------------------------- gradients


def batched_state(model: "RecurrentModel", h0: Any, batch: Batch) -> Any:
    """A model state checked against the batch, with a batch axis of 1 added
    for an unbatched sequence: (num_layers*D, B, H) (an (h, c) pair for LSTM)."""
    if h0 is None:
        return None
    h, c = read_state(model.spec, h0, "h0", None if batch.unbatched else batch.B)
    if batch.unbatched:
        h = None if h is None else h[:, None]
        c = None if c is None else c[:, None]
    return state_out(model.spec, h, c)


def loss_and_grads(model: "RecurrentModel", batch: Batch, loss: str, h0: Any = None,
                   dropout_rng: Optional[np.random.Generator] = None
                   ) -> Tuple[float, Dict[str, np.ndarray], int, Any]:
    """(loss, grads keyed like model.params, counted elements, h_n batched and
    structured like the model's states). ``dropout_rng`` turns the model's
    dropout on (``fit`` only)."""
    out, h_n, cache = model.forward_cache(batch.x, h0, lengths=batch.lengths, return_sequences=batch.per_step,
                                          dropout_rng=dropout_rng)
    loss_fn = LOSS_FUNCTIONS[loss]
    if batch.per_step:
        value, dy, count = loss_fn(batch.bf(out), batch.target, batch.mask())
        dy = batch.bf(dy)
    else:
        value, dy, count = loss_fn(out, batch.target, None)
    return value, model.backward_cache(cache, dy).params, count, h_n


def model_loss_and_grads(model: "RecurrentModel", x: Any, target: Any, *, loss: str, h0: Any, lengths: Any,
                         return_sequences: Optional[bool]) -> Tuple[float, Dict[str, np.ndarray]]:
    """(loss, grads) on one batch, without dropout; see ``RNN.loss_and_grads``."""
    loss = check_loss(loss)
    batch = Batch(model, x, target, loss, lengths, return_sequences)
    value, grads, _, _ = loss_and_grads(model, batch, loss, batched_state(model, h0, batch))
    return value, grads


def evaluate(model: "RecurrentModel", x: Any, y: Any, *, loss: str, lengths: Any = None,
             batch_size: Optional[int] = None) -> float:
    """The loss over a data set (the mean over every counted element), forward only."""
    loss = check_loss(loss)
    batch = Batch(model, x, y, loss, lengths, None)
    size = max(batch.B, 1) if batch_size is None else _positive_int("batch_size", batch_size)
    total, count = 0.0, 0
    for idx in batches_of(batch.B, size, None):
        part = take(batch, idx)
        out, _ = model(part.x, lengths=part.lengths, return_sequences=part.per_step)
        value, _, n = LOSS_FUNCTIONS[loss](part.bf(out) if part.per_step else out, part.target,
                                           part.mask() if part.per_step else None)
        total += value * n
        count += n
    return total / count if count else 0.0


def batches_of(n: int, size: int, rng: Optional[np.random.Generator]) -> List[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i:i + size] for i in range(0, n, size)] or [order]


def take(batch: Batch, idx: np.ndarray, steps: Optional[slice] = None) -> Batch:
    """The sequences idx of a batch (and, optionally, a slice of its steps)."""
    part = Batch.__new__(Batch)
    part.__dict__.update(batch.__dict__)
    part.unbatched = False
    x = np.take(batch.x, idx, axis=batch.axis)
    target = batch.target[idx]
    lengths = None if batch.lengths is None else batch.lengths[idx]
    if steps is not None:
        x = x[:, steps] if batch.batch_first else x[steps]
        target = target[:, steps]
        start, stop = steps.start, steps.stop
        full = np.full(len(idx), batch.T) if lengths is None else lengths
        chunk = np.clip(full - start, 0, stop - start)
        lengths = None if np.all(chunk == stop - start) else chunk
        part.T = stop - start
    part.x, part.target, part.lengths, part.B = x, target, lengths, len(idx)
    return part


# ---------------------------------------------------------------- fit


def _positive_int(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def _positive_float(name: str, value: Any, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a positive number, got {type(value).__name__}")
    if not 0 < value <= sys.float_info.max:  # NaN, Inf and ints past float's range fail
        raise ValueError(f"{name}: expected a positive number, got {value}")
    return float(value)


def check_fit_arguments(loss: Any, epochs: Any, batch_size: Any, optimizer: Any, lr: Any, clip_norm: Any,
                        tbptt: Any) -> Tuple[str, int, int, float, Optional[float], Optional[int]]:
    """``fit``'s scalar arguments checked, in its order (shared with
    ``rnnext.dask.fit``, so both refuse the same values with the same words):
    ``(loss, epochs, batch_size, lr, clip_norm, tbptt)``."""
    loss = check_loss(loss)
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    lr = _positive_float("lr", lr)
    clip_norm = _positive_float("clip_norm", clip_norm, allow_none=True)
    tbptt = _positive_int("tbptt", tbptt, allow_none=True)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected 'sgd' or 'adam', got {optimizer!r}")
    return loss, epochs, batch_size, lr, clip_norm, tbptt  # type: ignore[return-value]


def fit_streams(model: "RecurrentModel", seed: Optional[int]
                ) -> Tuple[np.random.Generator, Optional[np.random.Generator]]:
    """The shuffling stream seeded by ``seed`` and, when the model's dropout
    is active, the dropout masks' stream."""
    rng = np.random.default_rng(seed)
    # Dropout masks from a stream of their own, so the shuffling does not depend on them.
    dropout_rng = None
    if model.dropout > 0 and model.num_layers > 1:
        dropout_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
    return rng, dropout_rng


def update(model: "RecurrentModel", opt: Any, value: float, grads: Dict[str, np.ndarray],
           clip_norm: Optional[float], epoch: int, number: int) -> None:
    """One optimiser step from a batch's mean loss and gradients: the finite
    checks (naming epoch and batch, counted from 0 here, from 1 in the
    message), clipping, then the update (shared with ``rnnext.dask.fit``)."""
    if not math.isfinite(value):
        raise FloatingPointError(
            f"fit: the loss is {value} at epoch {epoch + 1}, batch {number + 1}; "
            "lower lr, or clip gradients with clip_norm")
    if clip_norm is not None:
        grads, _ = clip_grad_norm(grads, clip_norm)
    if not all(np.all(np.isfinite(g)) for g in grads.values()):
        raise FloatingPointError(
            f"fit: non-finite gradients at epoch {epoch + 1}, batch {number + 1} "
            f"(the loss was {value}); lower lr, or clip gradients with clip_norm")
    model.set_params(opt.step(model.params, grads))


def fit(model: "RecurrentModel", x: Any, y: Any, *, loss: str, epochs: int = 1, batch_size: int = 32,
        optimizer: str = "adam", lr: float = 1e-3, clip_norm: Optional[float] = None,
        tbptt: Optional[int] = None, lengths: Any = None, validation_data: Optional[Sequence] = None,
        shuffle: bool = True, callbacks: Optional[Iterable[Callable]] = None, seed: Optional[int] = None,
        progress: bool = True) -> Dict[str, List[float]]:
    """Trains the model in place on mini-batches of sequences.

    Parameters
    ----------
    x, y : array_like
        Inputs and targets, read as in ``loss_and_grads``.
    loss : {"mse", "cross_entropy"}
    epochs, batch_size : int
    optimizer : {"adam", "sgd"}
        Adam with torch's defaults, or SGD with momentum 0.9; a fresh
        optimizer state for every call.
    lr : float
    clip_norm : float, optional
        Scales the gradients of each update so their global norm is at
        most ``clip_norm`` (the cure for exploding gradients).
    tbptt : int, optional
        Truncated backpropagation through time: each batch is cut into
        chunks of ``tbptt`` steps, one update per chunk; the state is
        carried from chunk to chunk, the gradient is not. Per-step
        targets only.
    lengths : array_like of int, (B,), optional
    validation_data : (x, y) or (x, y, lengths), optional
        Its loss is computed after every epoch.
    shuffle : bool
        Shuffle the sequences every epoch (seeded by ``seed``).
    callbacks : iterable of callables, optional
        Each called as ``callback(epoch, logs)`` after every epoch;
        returning True stops training.
    seed : int, optional
        Seeds the shuffling and the dropout masks.
    progress : bool
        Show a tqdm progress bar with the running loss.

    Returns
    -------
    dict
        ``"loss"`` (each epoch's mean over counted elements) and, with
        validation data, ``"val_loss"``: one value per epoch.

    Raises
    ------
    FloatingPointError
        When the loss or a gradient stops being finite, naming the epoch
        and batch, before the update that would spread it.

    Notes
    -----
    The model's ``dropout`` applies here only: inverted dropout on the
    input of every layer above the first, fresh masks for every batch
    (and every ``tbptt`` chunk), the gradients masked alike.
    """
    loss, epochs, batch_size, lr, clip_norm, tbptt = check_fit_arguments(loss, epochs, batch_size, optimizer, lr,
                                                                          clip_norm, tbptt)
    callbacks = list(callbacks or [])
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks: expected callables, got {type(cb).__name__}")
    batch = Batch(model, x, y, loss, lengths, None)
    if tbptt is not None and not batch.per_step:
        raise ValueError("tbptt: truncated BPTT needs per-step targets ((B, T) ids or (B, T, O) values)")
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data: expected (x, y) or (x, y, lengths)")
        validation = tuple(validation_data) + (None,) * (3 - len(validation_data))
        Batch(model, validation[0], validation[1], loss, validation[2], None)  # check it now, not after an epoch
    from tqdm.auto import tqdm

    rng, dropout_rng = fit_streams(model, seed)
    opt = OPTIMIZERS[optimizer](lr)
    history: Dict[str, List[float]] = {"loss": []}
    if validation is not None:
        history["val_loss"] = []
    chunks = [slice(s, min(s + tbptt, batch.T)) for s in range(0, batch.T, tbptt)] if tbptt else [None]
    for epoch in range(epochs):
        total, count = 0.0, 0
        parts = batches_of(batch.B, batch_size, rng if shuffle else None)
        with tqdm(total=len(parts), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress, leave=False) as bar:
            for number, idx in enumerate(parts):
                state = None
                for steps in chunks:
                    part = take(batch, idx, steps)
                    h0 = state
                    if steps is not None and part.lengths is not None:
                        # Sequences that ended before this chunk have nothing left to learn.
                        live = part.lengths > 0
                        if not live.any():
                            continue
                        part = take_live(part, live)
                        h0 = None if state is None else map_state(lambda s: s[:, live], state)
                    value, grads, n, h_n = loss_and_grads(model, part, loss, h0, dropout_rng)
                    update(model, opt, value, grads, clip_norm, epoch, number)
                    total += value * n
                    count += n
                    if steps is not None:  # carry the state, not the gradient, into the next chunk
                        if state is None:
                            state = model.initial_state(len(idx))
                        if part.lengths is not None and part.B != len(idx):
                            map_state(lambda s, h: s.__setitem__((slice(None), live), h), state, h_n)
                        else:
                            state = h_n
                bar.update()
                bar.set_postfix(loss=f"{total / max(count, 1):.4g}")
        history["loss"].append(total / count if count else 0.0)
        if validation is not None:
            history["val_loss"].append(evaluate(model, validation[0], validation[1], loss=loss,
                                                lengths=validation[2], batch_size=batch_size))
        logs = {key: values[-1] for key, values in history.items()}
        if any([cb(epoch, logs) is True for cb in callbacks]):
            break
    return history


def take_live(part: Batch, live: np.ndarray) -> Batch:
    """The sequences of a chunk that still have steps in it."""
    idx = np.flatnonzero(live)
    out = take(part, idx)
    out.T = part.T
    return out
