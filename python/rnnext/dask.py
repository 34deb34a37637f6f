"""Scale-out on Dask: ``rnnext.dask.predict`` and ``rnnext.dask.fit`` (API.md section 7).

``predict`` scores a chunked dask array block by block, on whatever scheduler
is active: a ``distributed.Client`` (a local process pool or a cluster) or
Dask's local threads. The model travels once: with a client it is scattered
to every worker (``broadcast=True``) and the graph holds only its future, so
a 100 MB model never makes a 100 MB graph. rnnext's forward is batch
invariant and thread-count invariant (API.md), so the blocks put together
equal ``model.predict`` on the whole array bit for bit.

``fit`` (``_dask_fit.py``) trains data-parallel: the data stays on the
workers, one part per chunk of the batch axis; each step sends the
parameters out and takes the gradients back.

Every task runs with its worker's thread count (``rx.threads``): Dask's
workers run ``nthreads`` tasks at a time, and a count set on the driver, or
read from ``OMP_NUM_THREADS`` when rnnext was imported, is not theirs.

Needs ``pip install "rnnext[dask]"`` (``dask[array]`` and ``distributed``);
``import rnnext`` never imports this module.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as error:  # pragma: no cover (the extra is installed wherever the tests run)
    raise ImportError('rnnext.dask needs dask: pip install "rnnext[dask]" (dask[array] and distributed)') from error

from ._arrays import as_array, is_half_float
from ._threads import threads
from .models import RecurrentModel

if TYPE_CHECKING:  # pragma: no cover
    import distributed

__all__ = ["predict", "fit"]


# ---------------------------------------------------------------- the scheduler and the workers


def active_client() -> Optional["distributed.Client"]:
    """The ``distributed.Client`` that would run a ``compute`` now, or None
    (no distributed installed, no client, or ``dask.config`` chose another
    scheduler)."""
    try:
        import distributed
    except ImportError:
        return None
    try:
        client = distributed.default_client()
    except ValueError:  # no client
        return None
    # dask.config.set(scheduler="threads") beside a client means local threads.
    scheduler = dask.base.get_scheduler()
    return client if getattr(scheduler, "__self__", None) is client else None


def worker_threads() -> Optional[int]:
    """The thread count of the Dask worker running the current task, or None
    outside a worker. Read per task: a worker's ``nthreads`` is what it was
    started with (``--nthreads``, ``threads_per_worker``)."""
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        worker = get_worker()
    except ValueError:  # not in a worker: the local schedulers, the driver
        return None
    return int(worker.state.nthreads)


@contextlib.contextmanager
def task_threads() -> Iterator[Optional[int]]:
    """rnnext's thread count for the calls of one task: the worker's
    (``rx.threads``, this Python thread only), or the process's own setting
    outside a worker."""
    n = worker_threads()
    if n is None:
        yield None
        return
    with threads(max(n, 1)):
        yield n


def send_model(model: RecurrentModel, client: Optional["distributed.Client"]) -> Any:
    """What the tasks take as their model: with a client, a future of the
    model scattered to every worker once (``hash=False``: two equal models
    are two sends, never one shared key another call may release); else the
    model itself, shared by the local scheduler's threads."""
    if client is None:
        return model
    return client.scatter(model, broadcast=True, hash=False)


# ---------------------------------------------------------------- arguments


def check_model(model: Any, what: str) -> RecurrentModel:
    if not isinstance(model, RecurrentModel):
        raise TypeError(f"model: {what} expects an rnnext RNN, LSTM or GRU (quantized too), "
                        f"got {type(model).__name__}")
    return model


def output_size(model: RecurrentModel) -> int:
    """The output's last axis: the head's width, or D times the state width
    (``proj_size`` for an LSTM with projections)."""
    return model.output_size if model.output_size is not None else model.num_directions * model.spec.state_size


def check_x(model: RecurrentModel, X: Any, name: str = "X") -> Tuple[Any, int]:
    """``(X, batch axis)``: a 3-D dask array in the model's layout, chunked
    along the batch axis only, with the model's input width (2-D integer
    token ids for a model with ``vocab_size``)."""
    if not isinstance(X, da.Array):
        raise TypeError(f"{name}: expected a dask array (dask.array.from_array(x, chunks=(rows, -1, -1)); "
                        f"a NumPy array goes to model.predict / model.fit), got {type(X).__name__}")
    axis = 0 if model.batch_first else 1
    V = model.config.get("vocab_size")
    if V is not None:  # token ids: (B, T) or (T, B), checked against V by each block's model
        layout = "(B, T) (batch_first)" if model.batch_first else "(T, B) (batch_first=False)"
        if X.dtype.kind not in "iu":
            raise TypeError(f"{name}: {model!r} reads integer token ids {layout}, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name}: {model!r} reads a 2-D dask array of token ids {layout}, got shape {X.shape}")
    else:
        layout = "(B, T, I) (batch_first)" if model.batch_first else "(T, B, I) (batch_first=False)"
        if X.ndim != 3:
            ids = " (token ids need a model with vocab_size)" if X.ndim == 2 and X.dtype.kind in "iu" else ""
            raise ValueError(f"{name}: expected a 3-D dask array {layout}, got shape {X.shape}{ids}")
        if X.dtype.kind not in "fiub" and not is_half_float(X.dtype):  # blocks of bfloat16 are read as floats
            raise TypeError(f"{name}: expected an array of real numbers, got dtype {X.dtype}")
        I = model.input_size
        if X.shape[2] != I:
            raise ValueError(f"{name}: expected {I} features (input_size) on the last axis of {layout}, "
                             f"got shape {X.shape}")
    for a, what in ((1 - axis, "time"), (2, "feature"))[:X.ndim - 1]:
        if len(X.chunks[a]) != 1:
            rows = "(rows, -1, -1)" if axis == 0 else "(-1, rows, -1)"
            rows = rows if X.ndim == 3 else rows.replace(", -1)", ")", 1)
            raise ValueError(f"{name}: must be chunked along the batch axis (axis {axis}) only, but its {what} "
                             f"axis {a} has {len(X.chunks[a])} chunks {X.chunks[a]}; "
                             f"use {name}.rechunk({rows})")
    if any(np.isnan(c) for c in X.chunks[axis]):
        raise ValueError(f"{name}: its chunk sizes along the batch axis are unknown; "
                         f"call {name}.compute_chunk_sizes() first")
    return X, axis


def check_lengths_dtype(lengths: Any) -> None:
    if np.dtype(lengths.dtype).kind not in "iu":
        raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")


def check_lengths_values(lengths: np.ndarray, steps: int, start: int = 0) -> None:
    """ValueError naming the first length outside [1, T], by its index in the
    whole data set (``start``: the index of ``lengths[0]``)."""
    bad = np.flatnonzero((lengths < 1) | (lengths > steps))
    if bad.size:
        raise ValueError(f"lengths[{start + bad[0]}] = {lengths[bad[0]]} is outside [1, T] with T = {steps}")


def batch_lengths(lengths: Any, X: Any, axis: int) -> Any:
    """lengths as a dask array with X's batch chunks: NumPy lengths checked
    now, dask lengths when each block is computed."""
    B, T = X.shape[axis], X.shape[1 - axis]
    if isinstance(lengths, da.Array):
        check_lengths_dtype(lengths)
        if lengths.shape != (B,):
            raise ValueError(f"lengths: expected shape ({B},) (one length per sequence of X), got {lengths.shape}")
        return lengths.rechunk((X.chunks[axis],))
    if not hasattr(lengths, "__array__") and not isinstance(lengths, (list, tuple)):
        raise TypeError(f"lengths: expected a dask or NumPy integer array, got {type(lengths).__name__}")
    lengths = as_array(lengths, "lengths")
    check_lengths_dtype(lengths)
    if lengths.shape != (B,):
        raise ValueError(f"lengths: expected shape ({B},) (one length per sequence of X), got {lengths.shape}")
    check_lengths_values(lengths, T)
    return da.from_array(lengths, chunks=(X.chunks[axis],))


def check_batch_size(batch_size: Any) -> Optional[int]:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size: expected a positive int or None, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int or None, got {batch_size}")
    return int(batch_size)


# ---------------------------------------------------------------- predict


def predict_block(x: np.ndarray, lengths: Optional[np.ndarray], model: RecurrentModel, return_sequences: bool,
                  batch_size: Optional[int], batch_axis: int, block_info: Optional[Dict[Any, Any]] = None) -> np.ndarray:
    """One block of ``predict``: ``model.predict`` (or the many-to-one forward)
    on the block's sequences, with the worker's thread count."""
    axis = 0 if model.batch_first else 1  # x's batch axis; batch_axis is the output's
    if lengths is not None:
        lengths = lengths.reshape(-1)
        # Checked here, by the index in the whole array, before the forward would
        # name an index in this block.
        start = block_info[None]["array-location"][batch_axis][0] if block_info else 0
        check_lengths_values(lengths, x.shape[1 - axis], int(start))
    with task_threads():
        if return_sequences:
            return model.predict(x, lengths=lengths, batch_size=batch_size)
        # Many-to-one, batch_size sequences at a time (the forward is batch
        # invariant, so the cut changes no bit).
        B = x.shape[axis]
        size = max(B, 1) if batch_size is None else batch_size
        parts = []
        for s in range(0, max(B, 1), size):
            rows = slice(s, s + size)
            xs = x[rows] if axis == 0 else x[:, rows]
            parts.append(model(xs, lengths=None if lengths is None else lengths[rows], return_sequences=False)[0])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def predict(model: RecurrentModel, X: Any, *, lengths: Any = None, return_sequences: bool = True,
            batch_size: Optional[int] = None) -> da.Array:
    """``model.predict`` over a dask array, lazily, block by block.

    Parameters
    ----------
    model : RNN, LSTM or GRU
        Any model, stacked, bidirectional, with a head, quantized.
    X : dask.array.Array, (B, T, I), or (T, B, I) when not ``batch_first``
        Chunked along the batch axis only (time and features one chunk each).
    lengths : dask or NumPy array of int, (B,), optional
        Valid steps per sequence; rechunked like ``X``'s batch axis. NumPy
        lengths are checked now, dask lengths as each block is computed.
    return_sequences : bool
        True: ``(B, T, O)`` (the model's layout), as ``model.predict``.
        False: ``(B, O)``, as ``model(x, return_sequences=False)[0]``.
    batch_size : int, optional
        Sequences per forward call inside each block (bounds a task's
        memory below its block's); the results do not depend on it.

    Returns
    -------
    dask.array.Array
        Of the model's dtype, chunked like ``X`` along the batch axis (and
        time, with ``return_sequences``), one chunk of ``O`` features
        (``output_size``, else D times the state width). Nothing is
        computed until you ask (``.compute()``, ``.to_zarr()``, ...); bit for
        bit ``model.predict(X.compute(), lengths=...)``.

    Raises
    ------
    TypeError
        ``model`` not an rnnext model, ``X`` not a dask array or not real
        numbers, ``lengths`` not integers, ``batch_size`` not an int.
    ValueError
        ``X`` not 3-D, of the wrong width, or chunked along time or
        features (its message names ``X`` and the rechunk that fixes it);
        ``lengths`` of the wrong shape or outside [1, T].

    Notes
    -----
    With a ``distributed.Client`` the model is scattered to every worker
    once per call (``client.scatter(model, broadcast=True)``) and the
    graph holds its future, never its bytes. Each task runs with its
    worker's thread count (``nthreads``).
    """
    check_model(model, "rnnext.dask.predict")
    X, axis = check_x(model, X)
    if not isinstance(return_sequences, (bool, np.bool_)):
        raise TypeError(f"return_sequences: expected a bool, got {type(return_sequences).__name__}")
    batch_size = check_batch_size(batch_size)
    L = None if lengths is None else batch_lengths(lengths, X, axis)
    O = output_size(model)
    meta = np.empty((0,) * (3 if return_sequences else 2), dtype=model.dtype)  # never the model on data
    ids = X.ndim == 2  # token ids: the blocks gain the feature axis
    if return_sequences:
        chunks: Tuple[Tuple[float, ...], ...] = (X.chunks[0], X.chunks[1], (O,))
        drop: List[int] = []
        new: List[int] = [2] if ids else []
        out_axis = axis
    else:
        chunks, drop, out_axis = (X.chunks[axis], (O,)), [1 - axis], 0
        new = [1] if ids else []
    # map_blocks lines arrays up from the right: lengths broadcast along X's batch axis.
    if L is None:
        L3 = None
    elif ids:
        L3 = L[:, None] if axis == 0 else L[None, :]
    else:
        L3 = L[:, None, None] if axis == 0 else L[None, :, None]
    name = f"rnnext-predict-{uuid.uuid4().hex}"  # no hashing of the model's bytes to name the keys
    out: da.Array = da.map_blocks(predict_block, X, L3, send_model(model, active_client()), bool(return_sequences),
                                  batch_size, out_axis, dtype=model.dtype, chunks=chunks, drop_axis=drop,
                                  new_axis=new, meta=meta, name=name)
    return out


# ---------------------------------------------------------------- fit


def fit(model: RecurrentModel, X: Any, y: Any, *, loss: str, epochs: int = 1, batch_size: int = 32,
        optimizer: Any = "adam", lr: Any = None, clip_norm: Optional[float] = None, lengths: Any = None,
        validation_data: Optional[Sequence[Any]] = None, shuffle: bool = True,
        callbacks: Optional[Iterable[Callable[..., Any]]] = None, seed: Optional[int] = None,
        metrics: Optional[Iterable[str]] = None, progress: bool = True, **unsupported: Any) -> Dict[str, List[float]]:
    """``model.fit`` on data held by Dask workers: synchronous data-parallel
    training, the model updated in place.

    Parameters
    ----------
    model : RNN, LSTM or GRU
        A float model (not quantized) without active dropout.
    X : dask.array.Array
        As in ``predict``: the model's layout, chunked along the batch axis only.
    y : dask or NumPy array
        Targets as ``model.fit`` reads them (per step or per sequence, in
        X's layout); rechunked to X's batch chunks.
    loss, epochs, batch_size, optimizer, lr, clip_norm, shuffle, seed, metrics, progress
        As in ``model.fit``: the same checks, the same shuffling draws, the
        same batches, optimiser (names or ``rx.optim`` objects, whose state
        carries over between calls), schedules, clipping, metrics (summed
        on the workers from the training forward) and errors. The data are
        not scanned for NaN on the driver, so NaN in them shows as a
        non-finite loss.
    lengths : dask or NumPy array of int, (B,), optional
        Brought to the driver (B integers) and checked there.
    validation_data : (X, y) or (X, y, lengths), optional
        Dask (or NumPy targets and lengths), scored on the workers after
        every epoch: ``history["val_loss"]`` (and ``"val_<metric>"``).
    callbacks : iterable of callables, optional
        As in ``model.fit`` (``rx.callbacks`` included), on the driver;
        returning True stops training.

    Returns
    -------
    dict
        ``"loss"`` (and ``"val_loss"``): one value per epoch, as ``model.fit``.

    Raises
    ------
    TypeError, ValueError
        As ``model.fit`` for the same arguments, and as ``predict`` for
        ``X``; ``ValueError`` for a quantized model or active dropout
        (the masks of a batch split over workers cannot be the masks of
        the whole batch); ``TypeError`` for ``tbptt`` (each row's state
        would have to be carried from step to step on its worker) and
        for unknown keywords.
    FloatingPointError
        As ``model.fit``, before the update that would spread it.

    Notes
    -----
    Each global batch (the rows ``model.fit`` would draw) is split by the
    chunk that holds each row; the worker holding the chunk computes
    ``loss_and_grads`` on its rows, and the driver weights each part's
    mean loss and gradients by its counted elements (float64 sums), so
    the update is ``model.fit``'s within rounding: weights within rtol
    1e-5 (float32) / 1e-10 (float64). Per step, only the parameters go
    out (scattered once to the workers involved) and only gradients come
    back. Without a distributed client the parts run in this process.
    """
    from . import _dask_fit

    return _dask_fit.fit(model, X, y, loss=loss, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                         clip_norm=clip_norm, lengths=lengths, validation_data=validation_data, shuffle=shuffle,
                         callbacks=callbacks, seed=seed, metrics=metrics, progress=progress,
                         unsupported=unsupported)
