"""rnnext.dask on a LocalCluster: predict's throughput with 1 and 2 workers (one thread
each) against in-memory ``model.predict``, and fit's step time on 2 workers against
the in-memory step (what the parameters and gradients' round trip costs).

    python benchmarks/dask_scaling.py [rounds]      # 7 by default; a quiet machine, 2+ free cores

The data is put on the workers before anything is timed (as it would be read from
storage there), and predict's result stays there (``persist``), so the figures are
the scoring itself and the model's broadcast, not the driver's transfers. The
configurations alternate round by round (the machine's speed drifts) and the median
of each is printed, with the scaling efficiency, thr(2 workers) / (2 thr(1 worker)):
issue 15 asks for 2 workers >= 1.7x one. ``test_dask.py`` times the same under
pytest-benchmark (and, with ``--benchmark-disable``, runs each once on small sizes).
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np

import rnnext as rx

# LSTM 64 -> 128, B sequences of T steps, in blocks of `rows`; fit: mse on the last step.
PREDICT = dict(I=64, H=128, B=16384, T=100, rows=1024)
FIT = dict(I=64, H=128, B=1024, T=50, rows=256, batch_size=128)
SMOKE_PREDICT = dict(I=8, H=16, B=64, T=10, rows=16)
SMOKE_FIT = dict(I=8, H=16, B=64, T=10, rows=16, batch_size=16)


def cluster(n_workers: int) -> Tuple[Any, Any]:
    import distributed

    local = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                     dashboard_address=":0", silence_logs=40)
    return local, distributed.Client(local, set_as_default=False)


def predict_problem(sizes: Dict[str, int]) -> Tuple[rx.LSTM, np.ndarray]:
    model = rx.LSTM(sizes["I"], sizes["H"], seed=0)
    x = np.random.default_rng(0).standard_normal((sizes["B"], sizes["T"], sizes["I"]), dtype=np.float32)
    return model, x


def on_workers(client: Any, a: np.ndarray, rows: int) -> Any:
    """a as a dask array held by the client's workers, in blocks of `rows` along axis 0."""
    import dask.array as da
    import distributed

    with client.as_current():
        held = da.from_array(a, chunks=(rows,) + (-1,) * (a.ndim - 1)).persist()
        distributed.wait(held)
    return held


def predict_on(client: Any, model: rx.LSTM, X: Any) -> Callable[[], Any]:
    """One timed run: rnnext.dask.predict, the result persisted on the workers."""
    import distributed

    import rnnext.dask as rd

    def run() -> Any:
        with client.as_current():
            out = rd.predict(model, X).persist()
            distributed.wait(out)
        return out

    return run


def fit_problem(sizes: Dict[str, int]) -> Tuple[rx.LSTM, np.ndarray, np.ndarray]:
    model = rx.LSTM(sizes["I"], sizes["H"], 1, seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((sizes["B"], sizes["T"], sizes["I"]), dtype=np.float32)
    return model, x, rng.standard_normal((sizes["B"], 1), dtype=np.float32)


def fit_steps(model: rx.LSTM, grads_of: Callable, batch_size: int, B: int) -> Callable[[], int]:
    """One timed run: an epoch of fit's steps (Adam, shuffled), gradients from
    grads_of(params, rows); returns the steps taken."""
    from rnnext import train

    def run() -> int:
        opt = train.Adam(1e-3)
        batches = train.batches_of(B, batch_size, np.random.default_rng(0))
        for number, idx in enumerate(batches):
            value, grads, _ = grads_of({k: np.asarray(v) for k, v in model.params.items()}, idx)
            train.update(model, opt, value, grads, None, 0, number)
        return len(batches)

    return run


def fit_in_memory(model: rx.LSTM, x: np.ndarray, y: np.ndarray) -> Callable:
    from rnnext import train

    batch = train.Batch(model, x, y, "mse", None, None)

    def grads_of(params: Dict[str, np.ndarray], idx: np.ndarray) -> Tuple[float, Dict, int]:
        value, grads, n, _ = train.loss_and_grads(model, train.take(batch, idx), "mse")
        return value, grads, n

    return grads_of


def train_loss_and_grads(model: rx.LSTM, x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> Tuple:
    """model.fit's loss and gradients on the rows idx, in memory (to check fit_on's)."""
    from rnnext import train

    return train.loss_and_grads(model, train.take(train.Batch(model, x, y, "mse", None, None), idx), "mse")


def fit_on(client: Any, model: rx.LSTM, X: Any, y: np.ndarray) -> Tuple[Callable, Any]:
    """The distributed gradients of rnnext.dask.fit (its Parts), data on the workers."""
    from rnnext import _dask_fit

    with client.as_current():
        parts = _dask_fit.Parts(model, X, y, None, "mse")
    return parts.loss_and_grads, parts


def in_threads(fn: Callable[[], Any], threads: int) -> Callable[[], Any]:
    def run() -> Any:
        with rx.threads(threads):
            return fn()

    return run


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def in_memory(model: rx.LSTM, x: np.ndarray, threads: int, rows: int) -> Callable[[], Any]:
    # In the workers' blocks (batch_size): the same products, the same cache footprint.
    def run() -> Any:
        with rx.threads(threads):
            return model.predict(x, batch_size=rows)

    return run


def main(rounds: int = 7) -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)  # the clusters' start and close, unprinted
    p, f = PREDICT, FIT
    model, x = predict_problem(p)
    fmodel, fx, fy = fit_problem(f)
    batch_size, steps_per_epoch = f["batch_size"], -(-f["B"] // f["batch_size"])
    clusters = {n: cluster(n) for n in (1, 2)}
    try:
        runs: Dict[str, Callable[[], Any]] = {"predict in memory, 1 thread": in_memory(model, x, 1, p["rows"]),
                                              "predict in memory, 2 threads": in_memory(model, x, 2, p["rows"])}
        for n, (_, client) in clusters.items():
            X = on_workers(client, x, p["rows"])
            runs[f"rnnext.dask.predict, {n} worker{'s' * (n > 1)}"] = predict_on(client, model, X)
        client = clusters[2][1]
        grads, parts = fit_on(client, fmodel, on_workers(client, fx, f["rows"]), fy)
        steps = {"fit step in memory, 1 thread": (fit_in_memory(fmodel, fx, fy), 1),
                 "fit step in memory, 2 threads": (fit_in_memory(fmodel, fx, fy), 2),
                 "rnnext.dask.fit step, 2 workers": (grads, 1)}
        for name, (grads_of, threads) in steps.items():
            runs[name] = in_threads(fit_steps(fmodel, grads_of, batch_size, f["B"]), threads)
        for fn in runs.values():  # warm up: imports, broadcasts, page faults
            fn()
        times: Dict[str, List[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, fn in runs.items():
                times[name].append(timed(fn) / (steps_per_epoch if name in steps else 1))
        parts.close()
    finally:
        for local, c in clusters.values():
            c.close()
            local.close()
    print(f"predict: LSTM {p['I']} -> {p['H']}, B, T = {p['B']}, {p['T']} in blocks of {p['rows']}; "
          f"median of {rounds} rounds")
    print("| configuration | time (s) | sequences/s |")
    print("|---|---|---|")
    median = {name: statistics.median(ts) for name, ts in times.items()}
    for name in runs:
        if name not in steps:
            print(f"| {name} | {median[name]:.3f} | {p['B'] / median[name]:,.0f} |")
    one, two = median["rnnext.dask.predict, 1 worker"], median["rnnext.dask.predict, 2 workers"]
    print(f"2 workers: {one / two:.2f}x the throughput of 1 (scaling efficiency {one / two / 2:.0%}); "
          f"1 worker against in-memory 1 thread: {median['predict in memory, 1 thread'] / one:.0%}")
    print(f"\nfit: LSTM {f['I']} -> {f['H']} -> 1, mse, B, T = {f['B']}, {f['T']}, batch_size {f['batch_size']}, "
          f"blocks of {f['rows']}")
    print("| configuration | ms per step |")
    print("|---|---|")
    for name in steps:
        print(f"| {name} | {median[name] * 1e3:.1f} |")


if __name__ == "__main__":
    main(*[int(a) for a in sys.argv[1:2]])
