"""Production hardening: impossible sizes, many Python threads, fork(), extreme numbers.

Each test would catch a failure class that has hit other RNN libraries: 32-bit size
overflow and allocation crashes, GIL deadlocks and races on shared models, OpenMP
hanging after fork(), and garbage (or warnings) from extreme inputs.
"""

import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import tolerance, weights

import rnnext as rx
from rnnext import functional as F
from rnnext import reference

CELLS = {"rnn": (1, F.rnn, reference.rnn), "lstm": (4, F.lstm, reference.lstm), "gru": (3, F.gru, reference.gru)}
MODELS = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}


def weight_list(rng, cell, I, H, dtype=np.float32):
    """[W_x, W_h, b_x, b_h] (helpers.weights), the functional kernels' positional arguments."""
    return list(weights(rng, cell, I, H, dtype).values())


# ---------------------------------------------------------------- sizes


@pytest.mark.parametrize("cell", CELLS)
def test_buffers_past_memory_raise_memory_error(cell):
    """(B, T, I) exists as a broadcast view, but the (B, T, H) outputs and the
    gate workspace cannot: MemoryError before any compute, never a crash."""
    G, f, _ = CELLS[cell]
    x = np.broadcast_to(np.float32(0), (1, 2**40, 1))
    with pytest.raises(MemoryError):
        f(x, np.zeros((G * 64, 1), np.float32), np.zeros((G * 64, 64), np.float32))


@pytest.mark.parametrize("cell", CELLS)
def test_sizes_past_64_bits_are_refused(cell):
    G, f, _ = CELLS[cell]
    x = np.broadcast_to(np.float32(0), (2**30, 2**30, 1))  # 2^60 elements, a view
    with pytest.raises((MemoryError, ValueError)):
        f(x, np.zeros((G * 4, 1), np.float32), np.zeros((G * 4, 4), np.float32))


@pytest.mark.parametrize("cell", MODELS)
def test_models_too_large_for_memory_fail_before_allocating(cell):
    """hidden_size=10**6 needs terabytes of weights: a MemoryError naming the
    size, raised before anything is allocated (no swap storm, no crash)."""
    with pytest.raises(MemoryError, match="hidden_size"):
        MODELS[cell](10, 10**6)
    with pytest.raises(MemoryError, match="input_size"):
        MODELS[cell](10**12, 4)


@pytest.mark.parametrize("cell", CELLS)
def test_sizes_are_64_bit_in_the_core(cell):
    """An input with no features takes no memory, but B * T = 2^33 steps of
    H = 4 outputs need 128 GiB: refused for memory, not wrapped around 32 bits
    into a small buffer that the kernel then overruns."""
    G, f, _ = CELLS[cell]
    x = np.zeros((2**17, 2**16, 0), np.float32)
    with pytest.raises(MemoryError):
        f(x, np.zeros((G * 4, 0), np.float32), np.zeros((G * 4, 4), np.float32))


# ---------------------------------------------------------------- threads


def build(cell, seed=0):
    return MODELS[cell](6, 20, 5, num_layers=2, bidirectional=cell != "gru", seed=seed)


@pytest.mark.parametrize("cell", MODELS)
def test_many_python_threads_share_one_model(cell, threads):
    """16 Python threads calling one model (forward, many-to-one, loss_and_grads,
    and the functional API) get exactly what one thread gets, and finish."""
    rx.set_num_threads(2)
    model = build(cell)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((3, 7, 6)).astype(np.float32) for _ in range(16)]
    lengths = np.array([7, 3, 5])
    targets = [rng.standard_normal((3, 7, 5)) for _ in range(16)]
    G, f, _ = CELLS[cell]
    fw = weight_list(np.random.default_rng(1), cell, 6, 20)

    def job(i):
        out, state = model(inputs[i], lengths=lengths)
        last = model(inputs[i], return_sequences=False)[0]
        loss, grads = model.loss_and_grads(inputs[i], targets[i], lengths=lengths)
        h_seq = f(inputs[i], *fw)[0]
        return out, state, last, loss, grads, h_seq

    expected = [job(i) for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(job, i % 16) for i in range(64)]
        results = [fut.result(timeout=120) for fut in futures]
    for i, got in enumerate(results):
        want = expected[i % 16]
        np.testing.assert_array_equal(got[0], want[0])
        for a, b in zip(np.atleast_1d(got[1]) if not isinstance(got[1], tuple) else got[1],
                        np.atleast_1d(want[1]) if not isinstance(want[1], tuple) else want[1]):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(got[2], want[2])
        assert got[3] == want[3]
        for k in want[4]:
            np.testing.assert_array_equal(got[4][k], want[4][k])
        np.testing.assert_array_equal(got[5], want[5])


@pytest.mark.parametrize("cell", MODELS)
def test_streaming_threads_keep_their_own_state(cell):
    model = MODELS[cell](4, 16, 3, seed=0)
    rng = np.random.default_rng(1)
    streams = [rng.standard_normal((30, 2, 4)).astype(np.float32) for _ in range(8)]

    def run(x):
        state, ys = None, []
        for t in range(x.shape[0]):
            y, state = model.step(x[t], state)
            ys.append(y)
        return np.stack(ys)

    expected = [run(x) for x in streams]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(run, streams, timeout=120))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", MODELS)
def test_assignment_while_other_threads_compute(cell):
    """Assigning parameters while other threads call the model is safe: every
    call sees one consistent set of weights (the old or the new, never a mix),
    and once an assignment has returned, later calls see it."""
    model = MODELS[cell](5, 12, 3, seed=0)
    x = np.random.default_rng(2).standard_normal((4, 9, 5)).astype(np.float32)
    sets = [model.state_dict(), MODELS[cell](5, 12, 3, seed=1).state_dict()]
    outputs = []
    for s in sets:
        model.load_state_dict(s)
        outputs.append(model(x)[0])
    stop = threading.Event()
    errors = []

    def reader():
        while not stop.is_set():
            out = model(x)[0]
            if not any(np.array_equal(out, o) for o in outputs):
                errors.append("a call mixed two weight sets")
                return

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for r in readers:
        r.start()
    try:
        for i in range(200):
            model.load_state_dict(sets[i % 2])
            if i % 25 == 0:  # the assignment is visible to the very next call
                np.testing.assert_array_equal(model(x)[0], outputs[i % 2])
    finally:
        stop.set()
        for r in readers:
            r.join(timeout=60)
    assert not any(r.is_alive() for r in readers), "a reader hung"
    assert not errors, errors[0]
    np.testing.assert_array_equal(model(x)[0], outputs[1])


def test_the_gil_is_released_during_compute(threads):
    """While one thread is inside a long forward, another Python thread keeps
    running (a held GIL would freeze it for the whole call)."""
    rx.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 400, 256)).astype(np.float32)
    w = weight_list(rng, "lstm", 256, 256)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        ticks.clear()
        F.lstm(x, *w)
    finally:
        done.set()
        t.join()
    assert len(ticks) > 10


# ---------------------------------------------------------------- fork


def _child_forward(queue, cell):
    model = build(cell)
    x = np.random.default_rng(3).standard_normal((16, 40, 6)).astype(np.float32)
    queue.put((rx.get_num_threads(), model(x)[0]))


# Python 3.12+ warns that fork() in a process with threads may deadlock: that
# is the very situation these tests exercise.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@pytest.mark.parametrize("cell", MODELS)
def test_forked_children_compute_and_do_not_hang(cell, threads):
    """After the parent ran multi-threaded (its OpenMP pool is up), children
    made by multiprocessing's fork start method compute the same results
    single-threaded and exit; libgomp would hang in them otherwise."""
    rx.set_num_threads(2)
    model = build(cell)
    x = np.random.default_rng(3).standard_normal((16, 40, 6)).astype(np.float32)
    expected = model(x)[0]
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child_forward, args=(queue, cell)) for _ in range(3)]
    for c in children:
        c.start()
    results = [queue.get(timeout=120) for _ in children]
    for c in children:
        c.join(timeout=60)
        if c.is_alive():
            c.kill()
            pytest.fail("a forked child hung")
        assert c.exitcode == 0
    for n_threads, out in results:
        assert n_threads == 1
        np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(model(x)[0], expected)  # the parent still works, with its threads


# ---------------------------------------------------------------- numerics


EXTREMES = {
    "huge": 1e30,
    "-huge": -1e30,
    "denormal": 1e-40,
    "nan": np.nan,
    "inf": np.inf,
    "-inf": -np.inf,
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("value", EXTREMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_match_the_reference_without_warnings(cell, value, dtype):
    """NaN propagates where NumPy's would, tanh and sigmoid saturate without
    overflow, denormals stay finite; no warning escapes (pytest turns them into
    errors)."""
    G, f, ref = CELLS[cell]
    rng = np.random.default_rng(4)
    w = weight_list(rng, cell, 3, 5, dtype)
    x = rng.standard_normal((2, 6, 3)).astype(dtype)
    x[0, 2, 1] = EXTREMES[value]
    x[1, 4, :] = EXTREMES[value]
    got = f(x, *w)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64), *[a.astype(np.float64) for a in w])
    np.testing.assert_allclose(got[0], want[0], equal_nan=True, err_msg=f"{cell} {value}", **tolerance(dtype))
    assert np.array_equal(np.isnan(got[0]), np.isnan(want[0]))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_activations_saturate_and_propagate_nan(activation):
    z = np.array([-1e30, -1e4, -100, -1e-40, 0, 1e-40, 100, 1e4, 1e30, np.inf, -np.inf, np.nan], np.float32)
    got = rx._core.activation(activation, z)
    with np.errstate(all="ignore"):
        want = reference.activate(activation, z.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-30, equal_nan=True)


def test_exploding_relu_model_reports_through_fit():
    """A long ReLU sequence with an expanding W_h overflows float32: fit stops
    with FloatingPointError naming the epoch, it does not crash or train on Inf."""
    model = rx.RNN(1, 8, 1, activation="relu", seed=0)
    model.W_h = np.eye(8) * 3.0
    x = np.ones((4, 200, 1), np.float32)
    y = np.zeros((4, 200, 1), np.float32)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        model.fit(x, y, loss="mse", epochs=1, progress=False)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two cores")
def test_nothing_changes_with_threads_under_extremes(threads):
    rng = np.random.default_rng(5)
    w = weight_list(rng, "lstm", 16, 300)
    x = rng.standard_normal((3, 20, 16)).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 7] = 1e30
    rx.set_num_threads(1)
    one = F.lstm(x, *w)[0]
    rx.set_num_threads(2)
    two = F.lstm(x, *w)[0]
    assert np.array_equal(one, two, equal_nan=True)
