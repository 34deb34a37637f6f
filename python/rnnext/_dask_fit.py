"""``rnnext.dask.fit``: synchronous data-parallel training on Dask.

The data set is cut where ``X`` is chunked along the batch axis; each chunk
becomes a ``train.Batch`` (inputs, targets, lengths, checked) built and kept
by a worker (``Parts``). A training step takes the rows ``model.fit`` would
take (``train.batches_of`` with the same generator), groups them by the
worker holding their chunk, and asks each worker for one ``loss_and_grads``
over its rows, given the current parameters (scattered once per step to the
workers involved). The driver weights each worker's mean loss and gradients
by its counted elements, in float64, and hands the batch's mean to
``train.update`` (the finite checks, clipping and optimiser step
``model.fit`` uses).

Why the parts, not the model, travel: a worker rebuilds a model per task
from its class, its configuration and the step's parameters
(``declared`` + ``set_params``), so two tasks on one worker never share a
model whose parameters change under them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, cast

import numpy as np

import dask
import dask.array as da

from . import _fit_loop
from . import losses as _losses
from . import train as _train
from ._arrays import as_array
from .dask import (active_client, check_lengths_dtype, check_lengths_values, check_model, check_x, output_size,
                   task_threads)
from .models import RecurrentModel

# Parameters past this many bytes are scattered each step rather than sent inside
# the tasks: far below distributed's 10 MB large-graph warning, and above what a
# round trip of its own costs to send.
SCATTER_ABOVE = 1 << 20

# model.fit's options that rnnext.dask.fit leaves out, and why.
REFUSED = {
    "tbptt": "truncated BPTT carries each row's state from chunk to chunk of its steps, which would have to "
             "stay on its worker between updates; train with model.fit, or cut the sequences shorter",
}


# ---------------------------------------------------------------- on the workers


def make_part(cls: Type[RecurrentModel], config: Dict[str, Any], x: np.ndarray, y: np.ndarray, lengths: Optional[np.ndarray],
              loss: str) -> _train.Batch:
    """One chunk's training data, checked as ``model.fit`` checks the whole
    (class ids in range where counted, ...)."""
    return _train.Batch(cls.declared(config), x, y, loss, lengths, None)


def rebuilt(cls: Type[RecurrentModel], config: Dict[str, Any], params: Dict[str, np.ndarray]) -> RecurrentModel:
    model = cls.declared(config)
    model.set_params(params)
    return model


def merged(parts: List[_train.Batch]) -> _train.Batch:
    """Rows of several chunks as one batch (they share the model's layout, the
    loss and whether there are lengths)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    out = _train.Batch.__new__(_train.Batch)
    out.__dict__.update(first.__dict__)
    out.x = np.concatenate([p.x for p in parts], axis=first.axis)
    out.target = np.concatenate([p.target for p in parts], axis=0)
    out.lengths = None if first.lengths is None else np.concatenate([p.lengths for p in parts])
    out.B = sum(p.B for p in parts)
    return out


def worker_grads(parts: List[_train.Batch], rows: List[np.ndarray], cls: type, config: Dict[str, Any],
                 params: Dict[str, np.ndarray], loss: str, metrics: Sequence[str]
                 ) -> Tuple[float, Dict[str, np.ndarray], int, Dict[str, float]]:
    """``(loss x count, grads of the mean, count, metric sums)`` on one
    worker's rows of a batch (``rows[i]`` of ``parts[i]``): one forward and
    backward over them all."""
    model = rebuilt(cls, config, params)
    batch = merged([_train.take(part, r) for part, r in zip(parts, rows)])
    sums: Dict[str, float] = {}
    with task_threads():
        value, grads, n, _ = _train.loss_and_grads(model, batch, loss, metrics=metrics, sums=sums)
    return value * n, grads, n, sums


def worker_loss(parts: List[_train.Batch], rows: List[None], cls: type, config: Dict[str, Any],
                params: Dict[str, np.ndarray], loss: str, metrics: Sequence[str]
                ) -> Tuple[float, None, int, Dict[str, float]]:
    """``(loss x count, None, count, metric sums)`` over whole chunks,
    forward only (validation)."""
    model = rebuilt(cls, config, params)
    total, count = 0.0, 0
    sums: Dict[str, float] = {}
    for part in parts:
        with task_threads():
            out, _ = model(part.x, lengths=part.lengths, return_sequences=part.per_step)
        y, mask = (part.bf(out), part.mask()) if part.per_step else (out, None)
        value, _, n = _losses.LOSS_FUNCTIONS[loss](y, part.target, mask)
        _losses.tally(list(metrics), y, part.target, mask, sums)
        total += value * n
        count += n
    return total, None, count, sums


# ---------------------------------------------------------------- the driver


def read_targets(model: RecurrentModel, y: Any, X: Any, loss: str, axis: int, name: str) -> Tuple[Any, int]:
    """``(y, its batch axis)``: y's dtype and shape checked by
    ``train.read_target`` (the words ``model.fit`` uses) on a zero-strided
    stand-in, so no memory is taken and no value is read."""
    if not isinstance(y, da.Array):
        y = as_array(y, name, model.dtype)
    B, T = X.shape[axis], X.shape[1 - axis]
    stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=y.dtype), shape=y.shape, strides=(0,) * y.ndim)
    try:
        _, per_step = _train.read_target(model, stand_in, loss, None, False, B, T, output_size(model))
    except (TypeError, ValueError) as error:
        raise type(error)(str(error).replace("target:", f"{name}:", 1)) from None
    return y, (axis if per_step else 0)


def host_lengths(lengths: Any, X: Any, axis: int) -> Optional[np.ndarray]:
    """The lengths on the driver (B integers), checked as ``model.fit`` does."""
    if lengths is None:
        return None
    if isinstance(lengths, da.Array):
        check_lengths_dtype(lengths)  # before the compute
        lengths = np.asarray(lengths.compute())
    lengths = as_array(lengths, "lengths")
    check_lengths_dtype(lengths)
    B, T = X.shape[axis], X.shape[1 - axis]
    if lengths.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence), got {lengths.shape}")
    check_lengths_values(lengths, T)
    return cast(np.ndarray, lengths)


def chunks_of(a: Any, a_axis: int, bounds: np.ndarray, client: Any) -> List[Any]:
    """a cut like X's batch axis, one piece per chunk: delayed pieces of a
    dask array, scattered pieces (futures) of a NumPy one, so that it is never
    embedded in a graph."""
    if isinstance(a, da.Array):
        sizes = tuple(int(s) for s in np.diff(bounds))
        a = a.rechunk({i: (sizes if i == a_axis else -1) for i in range(a.ndim)})
        return list(a.to_delayed().ravel())
    pieces = [np.take(a, np.arange(s, e), axis=a_axis) for s, e in zip(bounds[:-1], bounds[1:])]
    return client.scatter(pieces, hash=False) if client is not None else pieces


class Parts:
    """The data set as chunks kept by the workers (or in this process
    without a client), and the per-step computations over them."""

    def __init__(self, model: RecurrentModel, X: Any, y: Any, lengths: Any, loss: str, name: str = "X",
                 metrics: Sequence[str] = ()) -> None:
        X, axis = check_x(model, X, name)
        y_name = "y" if name == "X" else "validation_data[1]"
        y, y_axis = read_targets(model, y, X, loss, axis, y_name)
        lengths = host_lengths(lengths, X, axis)
        self.client = active_client()
        self.cls, self.config, self.loss, self.metrics = type(model), model.config, loss, list(metrics)
        self.dtype = model.dtype
        bounds = np.concatenate([[0], np.cumsum(X.chunks[axis])]).astype(np.int64)
        self.starts, self.sizes = bounds[:-1], np.diff(bounds)
        self.B = int(bounds[-1])
        xs = list(X.to_delayed().ravel())
        ys = chunks_of(y, y_axis, bounds, self.client)
        ls = [None if lengths is None else lengths[s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        make = dask.delayed(make_part, pure=False)
        parts = [make(self.cls, self.config, x, t, l, loss) for x, t, l in zip(xs, ys, ls)]
        if self.client is None:
            self.parts = list(dask.compute(*parts))
            self.holders: List[Optional[List[str]]] = [None] * len(parts)
            return
        import distributed

        self.parts = self.client.compute(parts)
        distributed.wait(self.parts)
        for part in self.parts:  # the first chunk that fails a check raises its error here
            if part.status == "error":
                part.result()
        who = self.client.who_has(self.parts)
        self.holders = [list(who.get(p.key, ())) or None for p in self.parts]

    def close(self) -> None:
        """Lets the workers drop the chunks now, not when the futures are collected."""
        if self.client is not None:
            self.client.cancel(self.parts)
        self.parts = []

    def groups(self, chunks: Sequence[int]) -> List[List[int]]:
        """The chunks grouped by the worker holding them (one group without a
        client), in chunk order: the order the driver sums in."""
        by_worker: Dict[Optional[str], List[int]] = {}
        for c in chunks:
            by_worker.setdefault(holder[0] if (holder := self.holders[c]) else None, []).append(c)
        return list(by_worker.values())

    def run(self, fn: Callable[..., Tuple[float, Any, int, Dict[str, float]]], params: Dict[str, np.ndarray], jobs: List[Tuple[int, Any]]
            ) -> List[Tuple[float, Any, int, Dict[str, float]]]:
        """fn(parts, rows, ...) once per worker, over its chunks' (chunk, rows) jobs."""
        rows = dict(jobs)
        groups = self.groups([c for c, _ in jobs])
        if self.client is None:
            return [fn([self.parts[c] for c in g], [rows[c] for c in g], self.cls, self.config, params, self.loss,
                       self.metrics) for g in groups]
        workers = [self.holders[g[0]] for g in groups]
        sent: Any = params  # small: inside the (one per worker) tasks, no round trip of their own
        if sum(v.nbytes for v in params.values()) > SCATTER_ABOVE:
            # Large: scattered once to each worker involved, the tasks holding its
            # future (a list of one: scatter sends a dict's values as separate futures).
            targets = sorted({w for ws in workers if ws for w in ws}) or None
            sent = self.client.scatter([params], workers=targets, broadcast=True, hash=False)[0]
        futures = [self.client.submit(fn, [self.parts[c] for c in g], [rows[c] for c in g], self.cls, self.config,
                                      sent, self.loss, self.metrics, workers=w, allow_other_workers=True,
                                      pure=False)
                   for g, w in zip(groups, workers)]
        results: List[Tuple[float, Any, int, Dict[str, float]]] = self.client.gather(futures)
        return results

    def loss_and_grads(self, params: Dict[str, np.ndarray], idx: np.ndarray
                       ) -> Tuple[float, Dict[str, np.ndarray], int]:
        """The batch idx's mean loss, mean gradients and counted elements."""
        return self.loss_grads_and_sums(params, idx)[:3]

    def loss_grads_and_sums(self, params: Dict[str, np.ndarray], idx: np.ndarray
                            ) -> Tuple[float, Dict[str, np.ndarray], int, Dict[str, float]]:
        """``loss_and_grads`` and the metric sums."""
        chunk = np.searchsorted(self.starts, idx, side="right") - 1
        jobs = [(int(c), idx[chunk == c] - self.starts[c]) for c in np.unique(chunk)]
        results = self.run(worker_grads, params, jobs)
        count = sum(r[2] for r in results)
        sums = {k: sum(r[3].get(k, 0) for r in results) for k in self.metrics}
        if count == 0:
            return 0.0, {k: np.zeros_like(v) for k, v in params.items()}, 0, sums
        value = sum(r[0] for r in results) / count
        # Each worker's mean weighted by its counted elements, summed in float64.
        grads = {k: (sum(r[1][k].astype(np.float64) * r[2] for r in results) / count).astype(self.dtype)
                 for k in params}
        return value, grads, count, sums

    def scores(self, params: Dict[str, np.ndarray]) -> Dict[str, float]:
        """The loss and metrics over the whole data set (``model.evaluate``'s)."""
        results = self.run(worker_loss, params, [(c, None) for c in range(len(self.parts)) if self.sizes[c] > 0])
        count = sum(r[2] for r in results)
        logs = {"loss": sum(r[0] for r in results) / count if count else 0.0}
        logs.update({k: sum(r[3].get(k, 0) for r in results) / count if count else 0.0 for k in self.metrics})
        return logs


def fit(model: RecurrentModel, X: Any, y: Any, *, loss: str, epochs: int, batch_size: int, optimizer: Any,
        lr: Any, clip_norm: Optional[float], lengths: Any, validation_data: Optional[Sequence[Any]], shuffle: bool,
        callbacks: Optional[Iterable[Callable[..., Any]]], seed: Optional[int], metrics: Optional[Iterable[str]],
        progress: bool, unsupported: Dict[str, Any]) -> Dict[str, List[float]]:
    """``rnnext.dask.fit`` (documented there), ``train.fit``'s loop over ``Parts``."""
    check_model(model, "rnnext.dask.fit")
    for key in unsupported:
        if key in REFUSED:
            raise TypeError(f"rnnext.dask.fit: {key} is not supported ({REFUSED[key]})")
        raise TypeError(f"rnnext.dask.fit() got an unexpected keyword argument {key!r}")
    if model.quantized_tensors() is not None:
        raise ValueError(f"model: this model is quantized ({model.precision}) and is for inference only; "
                         "train the float model and quantize it again")
    loss, epochs, batch_size, opt, lr, clip_norm, _ = _fit_loop.check_fit_arguments(loss, epochs, batch_size,
                                                                                  optimizer, lr, clip_norm, None)
    names = _losses.check_metrics(metrics, loss)
    callbacks = _fit_loop.check_callbacks(callbacks, lr)
    if model.dropout > 0 and model.num_layers > 1:
        raise ValueError(f"model: dropout={model.dropout} is not supported by rnnext.dask.fit (a batch split over "
                         "workers cannot draw the masks model.fit draws for the whole batch); train with "
                         "model.fit, or set dropout to 0")
    validation = _train.check_validation_data(validation_data, (2, 3), "(X, y) or (X, y, lengths)")
    _train.warn_no_head(model, loss, stacklevel=4)
    parts = Parts(model, X, y, lengths, loss, metrics=names)
    held_out: Optional[Parts] = None
    try:
        if validation is not None:
            held_out = Parts(model, validation[0], validation[1], validation[2], loss, name="validation_data[0]",
                             metrics=names)
        return train_loop(model, parts, held_out, epochs, batch_size, opt, lr, clip_norm, shuffle, callbacks,
                          seed, names, progress)
    finally:
        for held in (parts, held_out):
            if held is not None:
                held.close()


def train_loop(model: RecurrentModel, parts: Parts, validation: Optional[Parts], epochs: int, batch_size: int,
               opt: Any, lr: Any, clip_norm: Optional[float], shuffle: bool, callbacks: List[Callable[..., Any]],
               seed: Optional[int], metrics: List[str], progress: bool) -> Dict[str, List[float]]:
    """``train.fit``'s epochs and batches, each batch's gradient from ``parts``."""
    rng, _ = _train.fit_streams(model, seed)

    def current() -> Dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in model.params.items()}

    def train_batch(idx: np.ndarray, epoch: int, number: int, running: Any) -> None:
        value, grads, n, sums = parts.loss_grads_and_sums(current(), idx)
        _fit_loop.update(model, opt, value, grads, clip_norm, epoch, number)
        running.add(value, n, sums)

    validate = None if validation is None else (lambda: validation.scores(current()))
    return _fit_loop.run_epochs(model, opt, lr, callbacks, epochs=epochs, rows=parts.B, batch_size=batch_size,
                             rng=rng, shuffle=shuffle, progress=progress, metrics=metrics,
                             train_batch=train_batch, validate=validate)
