"""Python threads: the GIL is released during compute, so two Python threads
with one OpenMP thread each run about twice the work of one in the same time.

    pytest benchmarks/test_threads.py --benchmark-group-by=param:cell

Compare the two groups' means: "2 threads" does twice the calls of "1 thread";
a ratio of mean times near 1.0 means twice the throughput (the acceptance mark
is about 2x; it cannot show on a machine with one core). On a noisy machine,
threads_ratio.py alternates the two and reports the median of paired ratios.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import rnnext as rx

CALLS = 8


@pytest.fixture(autouse=True)
def one_thread():
    before = rx.get_num_threads()
    rx.set_num_threads(1)
    yield
    rx.set_num_threads(before)


def model_and_input(cell):
    model = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}[cell](64, 128, seed=0)
    x = np.random.default_rng(0).standard_normal((8, 100, 64)).astype(np.float32)
    return model, x


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("python_threads", [1, 2])
def test_python_threads(benchmark, cell, python_threads):
    model, x = model_and_input(cell)
    pool = ThreadPoolExecutor(max_workers=python_threads)

    def work():
        list(pool.map(lambda _: [model(x) for _ in range(CALLS)], range(python_threads)))

    benchmark.group = f"{cell}: {CALLS} calls per Python thread"
    benchmark.extra_info["calls"] = CALLS * python_threads
    benchmark(work)
    pool.shutdown()
