"""Training: gradients of a model, ``fit`` and ``evaluate``.

The recurrent and head gradients come from the model's ``forward_cache`` /
``backward_cache`` (the C++ core's backpropagation through time, driven over
the layers by ``layers.py``); the loss arithmetic and the metrics are in
``losses.py``, the optimisers in ``optim.py``, the epochs, schedules,
callbacks and progress bar that ``fit`` shares with ``rnnext.dask.fit`` and
``Seq2Seq.fit`` in ``_fit_loop.py``. This module reads and checks the data
(``Batch``) and trains on it. It reaches the model only through its public
methods and the package interface listed in ``models.py``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union, overload

import numpy as np

# batches_of, update, _positive_float, LOSSES, global_norm: imported from here by
# seq2seq.py, the tests and the benchmarks, as before the split.
from ._arrays import as_array
from ._fit_loop import batches_of, check_callbacks, check_fit_arguments, run_epochs, update  # noqa: F401
from ._fit_loop import positive_float as _positive_float  # noqa: F401
from ._fit_loop import positive_int as _positive_int
from ._states import read_state, state_out
from ._tokens import sequence_input
from .layers import map_state
from .losses import LOSS_FUNCTIONS, LOSSES, check_loss, check_metrics, cross_entropy_loss, mse_loss, tally  # noqa: F401
from .optim import SGD, Adam, AdamW, clip_grad_norm, global_norm  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

__all__ = ["mse_loss", "cross_entropy_loss", "SGD", "Adam", "AdamW", "clip_grad_norm", "fit", "evaluate"]


# ---------------------------------------------------------------- arguments


class Batch:
    """x, targets and lengths of a batch, batched (an unbatched sequence gets a
    batch axis of 1) and in the model's layout, with batch-first views for the
    loss arithmetic."""

    def __init__(self, model: "RecurrentModel", x: Any, target: Any, loss: str, lengths: Any,
                 return_sequences: Optional[bool]):
        x, self.unbatched = sequence_input(model.spec, x, lengths)  # ids (B, T) with vocab_size, else (B, T, I)
        self.batch_first = model.batch_first
        check_features(model, x)
        self.axis = 0 if self.batch_first else 1  # the batch axis of x
        if self.unbatched:
            x = np.expand_dims(x, self.axis)
        self.x = x
        B, T = self.bf(x).shape[:2]
        self.B, self.T = B, T
        if lengths is not None:
            lengths = as_array(lengths, "lengths")
            if lengths.dtype.kind not in "iu":
                raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
            lengths = lengths.reshape(-1) if self.unbatched else lengths
            if lengths.shape != (B,):
                raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {lengths.shape}")
            if B and (lengths.min() < 1 or lengths.max() > T):
                first = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
                raise ValueError(f"lengths[{first}] = {lengths[first]} is outside [1, T] with T = {T}")
        self.lengths = lengths
        O = model.output_size if model.output_size is not None else model.num_directions * model.spec.state_size
        target = as_array(target, "target", model.spec.dtype)
        self.target, self.per_step = read_target(model, target, loss, return_sequences, self.unbatched, B, T, O)
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
        mask: np.ndarray = np.arange(self.T)[None, :] < self.lengths[:, None]
        return mask


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
        expected: Tuple[int, ...] = (T,) if unbatched else ((B, T) if model.batch_first else (T, B))
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


# ---------------------------------------------------------------- data checks


def check_features(model: "RecurrentModel", x: np.ndarray) -> None:
    """x's feature axis against input_size, quoted as the caller gave x:
    after ``Batch`` adds a batch axis or takes a mini-batch, the forward
    would quote the shape it was handed, not the caller's (issue 16)."""
    if model.config.get("vocab_size") is not None:  # token ids: no feature axis
        return
    size = model.input_size
    if x.shape[-1] != size:
        layout = "(B, T, " if model.batch_first else "(T, B, "
        raise ValueError(f"x: expected shape {layout}{size}) or unbatched (T, {size}) (input_size {size}), "
                         f"got {x.shape}")


def _position(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def check_finite(batch: Batch, x_name: str, y_name: str) -> None:
    """ValueError naming the argument and the first non-finite value where
    it counts (padding past the lengths may hold anything): ``fit`` cannot
    train on NaN or Inf, and would otherwise report a non-finite loss as if
    the learning rate were to blame."""
    mask = batch.mask()  # (B, T), batch first
    x = batch.x
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        if mask is not None:
            bad &= (mask if batch.batch_first else mask.T)[..., None]
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            b, t = (first[0], first[1]) if batch.batch_first else (first[1], first[0])
            where = f"step {t}" if batch.unbatched else f"sequence {b}, step {t}"
            index = first[:batch.axis] + first[batch.axis + 1:] if batch.unbatched else first
            raise ValueError(f"{x_name}: {x[first]} at {x_name}{_position(index)} ({where}); "
                             "fit needs finite inputs where they count (padding past lengths is not read)")
    target = batch.target  # batch first
    if target.dtype.kind == "f" and not np.isfinite(target).all():
        bad = ~np.isfinite(target)
        if mask is not None and batch.per_step:
            bad &= mask.reshape(mask.shape + (1,) * (bad.ndim - 2))
        if bad.any():
            index = tuple(np.argwhere(bad)[0])
            value = target[index]
            if batch.unbatched:
                index = index[1:]
            elif batch.per_step and not batch.batch_first:
                index = (index[1], index[0]) + index[2:]
            raise ValueError(f"{y_name}: {value} at {y_name}{_position(index)}; fit needs finite targets where "
                             "they count (padding past lengths is not read)")


def warn_no_head(model: "RecurrentModel", loss: str, stacklevel: int) -> None:
    """torch would not train hidden states as logits without a word either."""
    if loss == "cross_entropy" and model.output_size is None:
        width = model.num_directions * model.spec.state_size
        warnings.warn(f"loss: cross_entropy on a model without a head reads its raw hidden states "
                      f"({width} features, bounded by the activation) as the logits of {width} classes; pass "
                      "output_size=<number of classes> to the constructor to train a head", UserWarning,
                      stacklevel=stacklevel)


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
    return state_out(model.spec, h, c)  # type: ignore[arg-type]  # h is read from h0, which is not None


def loss_and_grads(model: "RecurrentModel", batch: Batch, loss: str, h0: Any = None,
                   dropout_rng: Optional[np.random.Generator] = None, metrics: Sequence[str] = (),
                   sums: Optional[Dict[str, float]] = None) -> Tuple[float, Dict[str, np.ndarray], int, Any]:
    """(loss, grads keyed like model.params, counted elements, h_n batched and
    structured like the model's states). ``dropout_rng`` turns the model's
    dropout on (``fit`` only); each of ``metrics`` adds its sum over the
    batch to ``sums``, from the same outputs."""
    out, h_n, cache = model.forward_cache(batch.x, h0, lengths=batch.lengths, return_sequences=batch.per_step,
                                          dropout_rng=dropout_rng)
    loss_fn = LOSS_FUNCTIONS[loss]
    if batch.per_step:
        y, mask = batch.bf(out), batch.mask()
        value, dy, count = loss_fn(y, batch.target, mask)
        dy = batch.bf(dy)
    else:
        y, mask = out, None
        value, dy, count = loss_fn(out, batch.target, None)
    if metrics:
        tally(list(metrics), y, batch.target, mask, sums if sums is not None else {})
    return value, model.backward_cache(cache, dy).params, count, h_n


def model_loss_and_grads(model: "RecurrentModel", x: Any, target: Any, *, loss: str, h0: Any, lengths: Any,
                         return_sequences: Optional[bool]) -> Tuple[float, Dict[str, np.ndarray]]:
    """(loss, grads) on one batch, without dropout; see ``RNN.loss_and_grads``."""
    loss = check_loss(loss)
    batch = Batch(model, x, target, loss, lengths, return_sequences)
    state = batched_state(model, h0, batch)
    warn_no_head(model, loss, stacklevel=4)
    value, grads, _, _ = loss_and_grads(model, batch, loss, state)
    return value, grads


def score(model: "RecurrentModel", batch: Batch, loss: str, size: int, metrics: Sequence[str]) -> Dict[str, float]:
    """The loss and metrics over a checked data set, ``size`` sequences per forward."""
    total, count = 0.0, 0
    sums: Dict[str, float] = {}
    for idx in batches_of(batch.B, size, None):
        part = take(batch, idx)
        out, _ = model(part.x, lengths=part.lengths, return_sequences=part.per_step)
        y, mask = (part.bf(out), part.mask()) if part.per_step else (out, None)
        value, _, n = LOSS_FUNCTIONS[loss](y, part.target, mask)
        tally(list(metrics), y, part.target, mask, sums)
        total += value * n
        count += n
    logs = {"loss": total / count if count else 0.0}
    logs.update({k: sums.get(k, 0) / count if count else 0.0 for k in metrics})
    return logs


@overload
def evaluate(model: "RecurrentModel", x: Any, y: Any, *, loss: str, lengths: Any = None,
             batch_size: Optional[int] = None, metrics: None = None) -> float: ...
@overload
def evaluate(model: "RecurrentModel", x: Any, y: Any, *, loss: str, lengths: Any = None,
             batch_size: Optional[int] = None, metrics: Iterable[str]) -> Dict[str, float]: ...
@overload
def evaluate(model: "RecurrentModel", x: Any, y: Any, *, loss: str, lengths: Any = None,
             batch_size: Optional[int] = None, metrics: Optional[Iterable[str]] = None
             ) -> Union[float, Dict[str, float]]: ...
def evaluate(model: "RecurrentModel", x: Any, y: Any, *, loss: str, lengths: Any = None,
             batch_size: Optional[int] = None, metrics: Optional[Iterable[str]] = None
             ) -> Union[float, Dict[str, float]]:
    """The loss over a data set (the mean over every counted element), forward only.

    Parameters
    ----------
    x, y, loss, lengths
        As in ``fit``.
    batch_size : int, optional
        Sequences per forward (all at once by default).
    metrics : list of str, optional
        ``["accuracy"]`` (cross_entropy only): the share of counted steps,
        or sequences when many-to-one, whose arg-max class is the target.

    Returns
    -------
    float or dict
        The loss; with ``metrics``, a dict of ``"loss"`` and each metric.
    """
    loss = check_loss(loss)
    names = check_metrics(metrics, loss)
    batch = Batch(model, x, y, loss, lengths, None)
    size = max(batch.B, 1) if batch_size is None else _positive_int("batch_size", batch_size)
    logs = score(model, batch, loss, size, names)
    return logs if metrics is not None else logs["loss"]


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


def take_live(part: Batch, live: np.ndarray) -> Batch:
    """The sequences of a chunk that still have steps in it."""
    idx = np.flatnonzero(live)
    out = take(part, idx)
    out.T = part.T
    return out


# ---------------------------------------------------------------- fit


def fit_streams(model: "RecurrentModel", seed: Optional[int]
                ) -> Tuple[np.random.Generator, Optional[np.random.Generator]]:
    """The shuffling stream seeded by ``seed`` and, when the model's dropout
    is active, the dropout masks' stream."""
    rng = np.random.default_rng(seed)
    # Dropout masks from a stream of their own, so the shuffling does not depend on them.
    dropout_rng = None
    if model.dropout > 0 and model.num_layers > 1:
        # numpy's stubs type seed_seq as ISeedSequence; default_rng's is a SeedSequence, which spawns
        dropout_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])  # type: ignore[attr-defined]
    return rng, dropout_rng


def check_validation_data(validation_data: Any, sizes: Tuple[int, ...], form: str) -> Optional[Tuple[Any, ...]]:
    """``validation_data`` as a tuple padded with None to the longest of ``sizes``."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in sizes:
        raise ValueError(f"validation_data: expected {form}")
    return tuple(validation_data) + (None,) * (max(sizes) - len(validation_data))


def fit(model: "RecurrentModel", x: Any, y: Any, *, loss: str, epochs: int = 1, batch_size: int = 32,
        optimizer: Any = "adam", lr: Any = None, clip_norm: Optional[float] = None,
        tbptt: Optional[int] = None, lengths: Any = None, validation_data: Optional[Sequence[Any]] = None,
        shuffle: bool = True, callbacks: Optional[Iterable[Callable[..., Any]]] = None, seed: Optional[int] = None,
        metrics: Optional[Iterable[str]] = None, progress: bool = True) -> Dict[str, List[float]]:
    """Trains the model in place on mini-batches of sequences.

    Parameters
    ----------
    x, y : array_like
        Inputs and targets, read as in ``loss_and_grads``; NaN or Inf where
        they count is a ValueError naming the first one.
    loss : {"mse", "cross_entropy"}
    epochs, batch_size : int
    optimizer : {"adam", "sgd", "adamw"} or rnnext.optim optimiser
        A name makes a fresh optimiser for this call (Adam and AdamW with
        torch's defaults, SGD with momentum 0.9). An object
        (``rx.optim.Adam(...)``) keeps its state: passing it to another
        ``fit`` continues training where this one stopped.
    lr : float or callable, optional
        The learning rate. None: the optimiser object's ``lr``, or 1e-3 with
        a name. A float replaces the object's ``lr`` (it stays set after
        the call). A callable ``epoch -> lr`` is a schedule, called before
        every epoch; epochs count from 0 over every ``fit`` that shares the
        optimiser object (``optimizer.epochs``), so a resumed run follows
        the schedule it would have in one call.
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
        Its loss (and metrics) are computed after every epoch.
    shuffle : bool
        Shuffle the sequences every epoch (seeded by ``seed``).
    callbacks : iterable of callables, optional
        ``rx.callbacks`` objects (``EarlyStopping``, ``ModelCheckpoint``,
        ``ReduceLROnPlateau``) or plain callables, each called as
        ``callback(epoch, logs)`` after every epoch (``epoch`` as the
        schedule counts it); returning True stops training.
    seed : int, optional
        Seeds the shuffling and the dropout masks.
    metrics : list of str, optional
        ``["accuracy"]`` (cross_entropy only): the share of counted steps
        (or sequences, many-to-one) whose arg-max class is the target,
        from the training forward (no extra pass).
    progress : bool
        Show a tqdm progress bar with the running loss and metrics, and
        the validation ones at the end of each epoch.

    Returns
    -------
    dict
        ``"loss"`` (each epoch's mean over counted elements), each metric,
        and with validation data ``"val_loss"`` and ``"val_<metric>"``: one
        value per epoch.

    Raises
    ------
    FloatingPointError
        When the loss or a gradient stops being finite, naming the epoch
        and batch, before the update that would spread it.

    Warns
    -----
    UserWarning
        For cross_entropy on a model without a head (its hidden states
        would be the logits).

    Notes
    -----
    The model's ``dropout`` applies here only: inverted dropout on the
    input of every layer above the first, fresh masks for every batch
    (and every ``tbptt`` chunk), the gradients masked alike.
    """
    loss, epochs, batch_size, opt, lr, clip_norm, tbptt = check_fit_arguments(loss, epochs, batch_size, optimizer,
                                                                               lr, clip_norm, tbptt)
    names = check_metrics(metrics, loss)
    callbacks = check_callbacks(callbacks, lr)
    batch = Batch(model, x, y, loss, lengths, None)
    if tbptt is not None and not batch.per_step:
        raise ValueError("tbptt: truncated BPTT needs per-step targets ((B, T) ids or (B, T, O) values)")
    validation = check_validation_data(validation_data, (2, 3), "(x, y) or (x, y, lengths)")
    held_out = None
    if validation is not None:  # checked now, not after an epoch
        held_out = Batch(model, validation[0], validation[1], loss, validation[2], None)
    check_finite(batch, "x", "y")
    if held_out is not None:
        check_finite(held_out, "validation_data[0]", "validation_data[1]")
    warn_no_head(model, loss, stacklevel=4)

    rng, dropout_rng = fit_streams(model, seed)
    chunks = [slice(s, min(s + tbptt, batch.T)) for s in range(0, batch.T, tbptt)] if tbptt else [None]

    def train_batch(idx: np.ndarray, epoch: int, number: int, running: Any) -> None:
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
            sums: Dict[str, float] = {}
            value, grads, n, h_n = loss_and_grads(model, part, loss, h0, dropout_rng, names, sums)
            update(model, opt, value, grads, clip_norm, epoch, number)
            running.add(value, n, sums)
            if steps is not None:  # carry the state, not the gradient, into the next chunk
                if state is None:
                    state = model.initial_state(len(idx))
                if part.lengths is not None and part.B != len(idx):
                    map_state(lambda s, h: s.__setitem__((slice(None), live), h), state, h_n)
                else:
                    state = h_n

    validate = None
    if held_out is not None:
        validate = lambda: score(model, held_out, loss, batch_size, names)  # noqa: E731
    return run_epochs(model, opt, lr, callbacks, epochs=epochs, rows=batch.B, batch_size=batch_size, rng=rng,
                      shuffle=shuffle, progress=progress, metrics=names, train_batch=train_batch, validate=validate)
