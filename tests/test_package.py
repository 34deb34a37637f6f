"""Package level: threads, build information, instruction-set dispatch, fork."""

import multiprocessing
import os

import numpy as np
import pytest
from helpers import run_python

import rnnext as rx


def test_public_names():
    for name in rx.__all__:
        assert hasattr(rx, name), name
    assert rx.__version__ == rx.build_info()["version"]


def test_build_info():
    info = rx.build_info()
    assert set(info) >= {"version", "compiler", "isa", "isas_available", "openmp", "num_threads", "pool_workers"}
    assert info["openmp"] is None  # rnnext's own worker threads since 0.7
    assert info["isa"] in info["isas_available"]
    assert "scalar" in info["isas_available"]
    assert info["num_threads"] == rx.get_num_threads()


def test_set_num_threads(threads):
    rx.set_num_threads(3)
    assert rx.get_num_threads() == 3
    assert rx.build_info()["num_threads"] == 3
    with pytest.raises(ValueError, match="positive"):
        rx.set_num_threads(0)
    with pytest.raises(TypeError):
        rx.set_num_threads("2")
    assert rx.get_num_threads() == 3


def test_omp_num_threads_is_respected():
    result = run_python("import rnnext; print(rnnext.get_num_threads())", env=dict(OMP_NUM_THREADS="3"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "3"


CHECK_AGAINST_REFERENCE = """
    import numpy as np, rnnext as rx
    rng = np.random.default_rng(0)
    worst = 0.0
    for B, T, I, H in [(1, 30, 5, 3), (5, 17, 33, 70), (9, 8, 64, 129)]:
        for dtype, rtol in [(np.float32, 1e-5), (np.float64, 1e-10)]:
            for act in ["tanh", "sigmoid", "relu"]:
                k = 1 / np.sqrt(H)
                W_x = rng.uniform(-k, k, (H, I)); W_h = rng.uniform(-k, k, (H, H)); b = rng.uniform(-k, k, H)
                x = rng.standard_normal((B, T, I)); lengths = rng.integers(1, T + 1, B)
                got = rx.functional.rnn(x, W_x.astype(dtype), W_h.astype(dtype), b.astype(dtype),
                                        activation=act, lengths=lengths, reverse=B % 2 == 1)[0]
                ref = rx.reference.rnn(x, W_x, W_h, b, activation=act, lengths=lengths, reverse=B % 2 == 1)[0]
                np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol / 10)
    print(rx.build_info()["isa"])
"""


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_every_instruction_set(isa):
    """Each kernel set this CPU can run agrees with the reference."""
    if isa not in rx.build_info()["isas_available"]:
        pytest.skip(f"this CPU or build has no {isa}")
    result = run_python(CHECK_AGAINST_REFERENCE, env=dict(RNNEXT_FORCE_ISA=isa))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == isa


def test_unknown_forced_isa_fails_clearly():
    result = run_python("import rnnext", env=dict(RNNEXT_FORCE_ISA="sse9"))
    assert result.returncode != 0
    assert "RNNEXT_FORCE_ISA=sse9: unknown instruction set" in result.stderr


def _forward_in_child(queue):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 50, 32)).astype(np.float32)
    w = rng.standard_normal((64, 32)).astype(np.float32) * 0.1, rng.standard_normal((64, 64)).astype(np.float32) * 0.1
    queue.put(rx.functional.rnn(x, *w)[1])


# Python 3.12+ warns that fork() in a process with threads may deadlock: that
# is the very situation this test exercises.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_fork_after_parallel_run(threads):
    """A forked child computes correctly and does not hang on the parent's
    worker threads, which do not exist in it (the child runs single-threaded)."""
    rx.set_num_threads(2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 50, 32)).astype(np.float32)
    w = rng.standard_normal((64, 32)).astype(np.float32) * 0.1, rng.standard_normal((64, 64)).astype(np.float32) * 0.1
    expected = rx.functional.rnn(x, *w)[1]  # warms up the parent's thread pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_forward_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung")
    assert child.exitcode == 0
    np.testing.assert_array_equal(queue.get(timeout=5), expected)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_repeated_calls_keep_memory_flat():
    """Workspaces are recycled per thread, within a bound: many forward and
    backward calls do not grow the process."""
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 50, 64)).astype(np.float32)
    W_x = rng.standard_normal((128, 64)).astype(np.float32) * 0.1
    W_h = rng.standard_normal((128, 128)).astype(np.float32) * 0.1

    def work():
        h_seq, _, cache = rx.functional.rnn(x, W_x, W_h, return_cache=True)
        rx.functional.rnn_backward(cache, np.ones_like(h_seq))

    for _ in range(20):
        work()
    before = rss()
    for _ in range(300):
        work()
    assert rss() - before < 32 * 2**20
