"""Throughput of two Python threads against one, each with one OpenMP thread
(set_num_threads(1)): the GIL is released during compute, so the ratio should
be about 2 on a machine with two free cores.

    python benchmarks/threads_ratio.py [cells] [calls]     # rnn,lstm,gru 100

The machine is shared and its speed drifts by tens of percent within
minutes, so the two configurations alternate and each round gives one ratio
(2 x time of one thread's calls / time of two threads' twice as many); the
median and quartiles of 21 rounds are printed. test_threads.py times the same
work under pytest-benchmark.
"""

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import rnnext as rx

ROUNDS = 21


def main(cells: str = "rnn,lstm,gru", calls: int = 100) -> None:
    rx.set_num_threads(1)
    for cell in cells.split(","):
        model = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}[cell](64, 128, seed=0)
        x = np.random.default_rng(0).standard_normal((8, 100, 64)).astype(np.float32)

        def loop(_):
            for _ in range(calls):
                model(x)

        pools = {n: ThreadPoolExecutor(n) for n in (1, 2)}
        loop(0)
        ratios, one = [], []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            list(pools[1].map(loop, range(1)))
            t1 = time.perf_counter() - start
            start = time.perf_counter()
            list(pools[2].map(loop, range(2)))
            t2 = time.perf_counter() - start
            ratios.append(2 * t1 / t2)
            one.append(t1 / calls)
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        print(f"{cell} (B, T, I, H = 8, 100, 64, 128): 2 Python threads do {statistics.median(ratios):.2f}x the "
              f"work of 1 in the same time (quartiles {q1:.2f}-{q3:.2f}); "
              f"one call {statistics.median(one) * 1e6:.0f} us")
        for pool in pools.values():
            pool.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:2], *[int(a) for a in sys.argv[2:3]])
