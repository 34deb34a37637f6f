"""Thread counts: rx.threads per Python thread and per call, threadpoolctl,
the CPUs a process may use, and the hidden-sliced loops under them (results,
exceptions, other Python threads, a busy machine)."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import assert_child_ok

import rnnext as rx

MODELS = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}


@pytest.fixture(autouse=True)
def two_threads():
    before = rx.get_num_threads()
    rx.set_num_threads(2)
    yield
    rx.set_num_threads(before)


def test_threads_sets_and_restores_the_count_of_this_thread_only():
    seen = {}

    def other():
        seen["other"] = rx.get_num_threads()

    with rx.threads(1) as n:
        assert n == 1 and rx.get_num_threads() == 1
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        with rx.threads(3):
            assert rx.get_num_threads() == 3
        assert rx.get_num_threads() == 1
    assert seen["other"] == 2
    assert rx.get_num_threads() == 2


def test_threads_restores_after_an_exception_and_follows_set_num_threads_afterwards():
    with pytest.raises(RuntimeError):
        with rx.threads(1):
            raise RuntimeError("inside")
    assert rx.get_num_threads() == 2
    rx.set_num_threads(1)
    assert rx.get_num_threads() == 1


def test_threads_as_a_decorator():
    @rx.threads(1)
    def count():
        return rx.get_num_threads()

    assert count() == 1 and rx.get_num_threads() == 2


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError),
                                        (True, TypeError), (None, TypeError)])
def test_threads_refuses_what_is_not_a_positive_integer(bad, error):
    with pytest.raises(error, match="n: expected a positive integer thread count"):
        with rx.threads(bad):
            pass
    assert rx.get_num_threads() == 2


@pytest.mark.parametrize("cell", sorted(MODELS))
@pytest.mark.parametrize("batch, hidden", [(2, 300), (1, 700), (40, 24)], ids=["sliced", "sliced-large", "batch"])
def test_results_do_not_depend_on_the_thread_count_of_the_call(cell, batch, hidden):
    rng = np.random.default_rng(batch + hidden)
    model = MODELS[cell](16, hidden, 5, seed=1)
    x = rng.standard_normal((batch, 9, 16)).astype(np.float32)
    target = rng.standard_normal((batch, 9, 5)).astype(np.float32)
    out, _ = model(x)
    _, grads = model.loss_and_grads(x, target)
    for n in (1, 2):
        with rx.threads(n):
            again, _ = model(x)
            _, grads_again = model.loss_and_grads(x, target)
            _, grads_twice = model.loss_and_grads(x, target)
        assert again.tobytes() == out.tobytes(), n
        for key in grads:  # gradients: bitwise for a fixed count
            assert grads_again[key].tobytes() == grads_twice[key].tobytes(), (n, key)
            np.testing.assert_allclose(grads_again[key], grads[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("cell", sorted(MODELS))
def test_streaming_steps_agree_for_any_thread_count(cell):
    # H = 300: every cell's products are large enough for a step to share
    # its panels between two threads (threads_for_weights).
    model = MODELS[cell](40, 300, 7, seed=4)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((6, 2, 40)).astype(np.float32)
    runs = []
    for n in (1, 2):
        with rx.threads(n):
            state, outs = None, []
            for x_t in xs:
                y, state = model.step(x_t, state)
                outs.append(y.tobytes())
            runs.append(outs)
    assert runs[0] == runs[1]
    np.testing.assert_allclose(np.frombuffer(b"".join(runs[0]), np.float32).reshape(6, 2, 7),
                               model(xs.transpose(1, 0, 2))[0].transpose(1, 0, 2), rtol=1e-5, atol=1e-6)


def test_python_threads_with_their_own_counts_agree():
    model = rx.LSTM(32, 320, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 30, 32)).astype(np.float32)
    expected = model(x)[0]
    results, errors = {}, []

    def run(index):
        try:
            with rx.threads(1 + index % 2):
                for _ in range(5):
                    results[index] = model(x)[0]
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors and not any(w.is_alive() for w in workers)
    assert all(results[i].tobytes() == expected.tobytes() for i in range(6))


BUSY = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"


@pytest.mark.parametrize("busy_processes", [1, 2])
def test_sliced_loops_finish_and_agree_on_a_busy_machine(busy_processes):
    # Other processes keep the cores busy: the threads of a hidden-sliced
    # loop are descheduled mid-call, and the one still running takes over
    # their share of each step (phase_claims.h). Forward and backward, every
    # cell and GRU form, must still finish and equal the one-thread results
    # bit for bit (backward: a fixed count's gradients are bitwise; the
    # sliced forward is for any count).
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy_processes)]
    try:
        models = [(name, cls(64, 256, 3, seed=0)) for name, cls in MODELS.items()]
        models.append(("gru_onnx", rx.GRU(64, 256, 3, seed=0, linear_before_reset=False)))
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, 200, 64)).astype(np.float32)
        target = rng.standard_normal((1, 200, 3)).astype(np.float32)
        for name, model in models:
            with rx.threads(1):
                one = model(x)[0]
            with rx.threads(2):
                _, grads = model.loss_and_grads(x, target)
                for _ in range(5):
                    assert model(x)[0].tobytes() == one.tobytes(), name
                    _, again = model.loss_and_grads(x, target)
                    assert all(again[k].tobytes() == grads[k].tobytes() for k in grads), name
        assert isinstance(rx.build_info()["threads_recently_late"], bool)
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_the_pool_serves_many_python_threads_at_once():
    # Calls from several Python threads compete for the workers: one holds
    # them, the others run on their own thread; nothing waits on another call.
    models = {name: cls(16, 300, seed=2) for name, cls in MODELS.items()}
    x = np.random.default_rng(3).standard_normal((2, 40, 16)).astype(np.float32)
    expected = {name: m(x)[0].tobytes() for name, m in models.items()}
    failures = []

    def run():
        with rx.threads(2):
            for _ in range(10):
                for name, m in models.items():
                    if m(x)[0].tobytes() != expected[name]:
                        failures.append(name)

    workers = [threading.Thread(target=run) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers) and not failures
    assert rx.build_info()["pool_workers"] >= 1


def test_usable_cpus_are_counted():
    info = rx.build_info()
    assert 1 <= info["usable_cpus"] <= (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_the_default_count_respects_the_affinity_mask_and_omp_num_threads_wins():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); import rnnext; " \
           "print(rnnext.get_num_threads(), rnnext.build_info()['usable_cpus'])"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
    done = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "3"}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "1"]


def test_threadpoolctl_sees_and_limits_rnnext():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "rnnext"]
    assert len(pools) == 1 and pools[0]["num_threads"] == 2 and pools[0]["version"] == rx.__version__
    with threadpoolctl.threadpool_limits(1):
        assert rx.get_num_threads() == 1
    assert rx.get_num_threads() == 2
    with threadpoolctl.threadpool_limits(limits=1, user_api="rnnext"):
        assert rx.get_num_threads() == 1
    rx.set_num_threads(1)  # no count left behind in this thread: the process-wide one reaches it
    assert rx.get_num_threads() == 1


@pytest.mark.parametrize("imports", ["rnnext, threadpoolctl", "threadpoolctl, rnnext"])
def test_threadpoolctl_finds_rnnext_in_either_import_order(imports):
    pytest.importorskip("threadpoolctl")
    assert_child_ok(f"""
        import {imports}
        assert any(p["user_api"] == "rnnext" for p in threadpoolctl.threadpool_info())
        with threadpoolctl.threadpool_limits(1):
            assert rnnext.get_num_threads() == 1
        print("ok")
    """)


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_while_another_thread_runs_a_parallel_call():
    # The fork can land while another thread's call holds the workers (and
    # their lock): the child must still report build_info and compute, on one
    # thread, without waiting for a lock no thread of its own will release.
    model = rx.LSTM(32, 384, seed=0)
    x = np.random.default_rng(0).standard_normal((1, 400, 32)).astype(np.float32)
    expected = model(x)[0]
    stop = threading.Event()

    def busy():
        while not stop.is_set():
            model(x)

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        for _ in range(5):
            pid = os.fork()
            if pid == 0:  # the child: exit status 0 only if all is well
                ok = rx.build_info()["pool_workers"] == 0 and model(x)[0].tobytes() == expected.tobytes()
                os._exit(0 if ok else 1)
            deadline = time.time() + 60
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.time() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    pytest.fail("the forked child hung")
                time.sleep(0.01)
            assert os.waitstatus_to_exitcode(status) == 0
    finally:
        stop.set()
        worker.join()
