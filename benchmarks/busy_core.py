"""rnnext on a busy machine: one core kept busy by another process.

Services share their machines. With one of two cores busy, the two threads
of a hidden-sliced time loop share the other core for part of the time, and
their per-step meeting must not turn into a wait for a descheduled partner.
This times each small-batch row forward with rnnext on 1 and 2 threads (and
onnxruntime on 2, when installed), quiet and then with a busy child process,
interleaved: the median over ``--rounds`` rounds of each round's median (a
busy machine is noisy; the best round would hide the collapses)::

    python benchmarks/busy_core.py [--rounds 5]

Run it on an otherwise quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import numpy as np

import rnnext as rx

ROWS = [(1, 100, 64, 64), (1, 100, 256, 256), (1, 1000, 128, 128), (8, 100, 128, 128)]
CELLS = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}


@contextlib.contextmanager
def using_threads(n: int):
    """rx.threads(n), or set_num_threads for a build from before 0.6 (to compare builds)."""
    if hasattr(rx, "threads"):
        with rx.threads(n):
            yield
        return
    before = rx.get_num_threads()
    rx.set_num_threads(n)
    try:
        yield
    finally:
        rx.set_num_threads(before)


def median_time(fn, repeats: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2]


def onnxruntime_forward(cell: str, case):
    """onnxruntime's fused operator on the same problem, or None without it."""
    try:
        from rnnext import _bench_peers

        return _bench_peers.onnxruntime_forward(_bench_peers.Problem(*case, cell=cell))
    except ImportError:  # no onnxruntime (or a build from before 0.6)
        return None


def measure(rounds: int) -> dict:
    results = {}
    for cell, cls in CELLS.items():
        for B, T, I, H in ROWS:
            model = cls(I, H, seed=0)
            x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)

            def run(n, model=model, x=x):
                with using_threads(n):
                    model(x)

            fns = {"rnnext 1 thread": lambda run=run: run(1), "rnnext 2 threads": lambda run=run: run(2)}
            ort = onnxruntime_forward(cell, (B, T, I, H))
            if ort is not None:
                fns["onnxruntime"] = ort
            medians = {name: [] for name in fns}
            for _ in range(rounds):
                for name, fn in fns.items():
                    medians[name].append(median_time(fn))
                    time.sleep(0.05)
            results[(cell, (B, T, I, H))] = {name: float(np.median(m)) for name, m in medians.items()}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rx.set_num_threads(2)
    quiet = measure(args.rounds)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        loaded = measure(args.rounds)
    finally:
        busy.kill()
        busy.wait()
    print(f"rnnext {rx.__version__}, {rx.build_info()['isa']}; ms per forward, median of {args.rounds} medians")
    print("| cell | B, T, I, H | implementation | quiet | one core busy |")
    print("|---|---|---|---|---|")
    for key, row in quiet.items():
        for name, value in row.items():
            print(f"| {key[0]} | {', '.join(map(str, key[1]))} | {name} | {value * 1e3:.3f} | "
                  f"{loaded[key][name] * 1e3:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
