"""Leaks: 10**4 calls each of forward, backward, step, load (from bytes) and
of refused calls (errors at every stage) for every cell leave the process as
it was:

- its resident memory (/proc/self/statm) within a few MiB;
- the bytes malloc has handed out (glibc's mallinfo2: the core's buffers and
  C++ objects, NumPy's data) within a few bytes per call: RSS alone misses a
  leak that fits in memory the heap already holds;
- the interpreter's allocated blocks (every Python object, also those the
  core creates) and the reference counts of the arguments.

Small sizes, so that it takes seconds. Under ASan (.ci/sanitize) freed
memory waits in a quarantine and the process grows whatever rnnext does:
these tests skip there, and LeakSanitizer checks the same calls instead.
"""

import ctypes
import gc
import json
import os
import sys

import numpy as np
import pytest
from helpers import weights

import rnnext as rx
from rnnext import functional as F

CALLS = 10_000
WARMUP = 200
RSS_TOLERANCE = 4 * 2**20  # a leak of 400 bytes per call exceeds it
MALLOC_TOLERANCE = 256 * 2**10  # 26 bytes per call; without a leak the count comes back exactly
BLOCKS_TOLERANCE = CALLS // 10  # one leaked object per call gives CALLS

B, T, I, H, O = 4, 8, 8, 16, 3
CELLS = ["rnn", "lstm", "gru"]
MODELS = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}


def _under_asan():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(_under_asan(), reason="ASan's quarantine holds freed memory back "
                                "(LeakSanitizer checks leaks there)")


def _rss():
    """Resident bytes, or None without Linux /proc."""
    if not os.path.exists("/proc/self/statm"):
        return None
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo2():
    try:
        function = ctypes.CDLL(None).mallinfo2  # glibc 2.33+
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function


_MALLINFO2 = _mallinfo2()


def _malloc_in_use():
    """Bytes malloc has handed out and not got back (glibc; its main arena,
    where the calling thread allocates, and every mmap'ed block), or None."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return info.uordblks + info.hblkhd


def _functional_args(cell):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, I))
    args = dict(x=x, **weights(rng, cell, I, H), h0=rng.standard_normal((B, H)))
    if cell == "lstm":
        args["c0"] = rng.standard_normal((B, H))
    return args


def _forward(cell, args, lengths, **kwargs):
    return getattr(F, cell)(*args.values(), lengths=lengths, **kwargs)


def _operation(cell, name):
    """(one call, the arrays and objects it takes) of operation `name`."""
    lengths = np.array([T, 1, T - 3, 5])
    if name == "forward":
        args = _functional_args(cell)
        return (lambda: _forward(cell, args, lengths)), [*args.values(), lengths]
    if name == "backward":
        args = _functional_args(cell)
        dh_seq = np.ones((B, T, H))
        dh_n = np.ones((B, H))
        backward = getattr(F, cell + "_backward")

        def call():
            _, _, cache = _forward(cell, args, lengths, return_cache=True)
            return backward(cache, dh_seq, dh_n)
        return call, [*args.values(), lengths, dh_seq, dh_n]
    if name == "errors":
        return _refused_calls(cell, lengths)
    model = MODELS[cell](I, H, O, seed=0)
    x_t = np.random.default_rng(1).standard_normal((B, I)).astype(np.float32)
    if name == "step":
        _, state = model.step(x_t)
        states = [state]

        def call():
            y, states[0] = model.step(x_t, states[0])  # the state carried, as in streaming
            return y
        return call, [x_t, model]
    assert name == "load"
    blob = model.to_bytes()
    # The step packs the loaded weights in the core: a loader that leaked
    # them would show.
    return (lambda: rx.from_bytes(blob).step(x_t)), [blob, x_t]


def _refused_calls(cell, lengths):
    """One call that makes six refused calls: exceptions thrown through the
    binding at each stage (shapes, lengths, dtypes, a copy that cannot be
    allocated) and from the loader must not leak what was built before them."""
    args = _functional_args(cell)
    view = np.broadcast_to(0.0, (1, 1, 2**40))  # its copy (8 TiB) cannot be allocated
    model = MODELS[cell](I, H, O, seed=0)
    header = json.loads(model.to_bytes()[8:8 + int.from_bytes(model.to_bytes()[:8], "little")])
    header["__metadata__"]["config"] = json.dumps({**model.config, "hidden_size": 10**6})
    text = json.dumps(header).encode()
    declared_huge = len(text).to_bytes(8, "little") + text  # no tensor data
    refused = [
        lambda: _forward(cell, {**args, "W_h": args["W_h"][:, 1:]}, lengths),
        lambda: _forward(cell, args, np.array([T + 1, 1, 1, 1])),
        lambda: _forward(cell, {**args, "x": args["x"].astype(np.complex128)}, lengths),
        lambda: _forward(cell, {**args, "x": view, "W_x": np.broadcast_to(0.0, (len(args["W_x"]), 2**40)),
                                "h0": None, **({"c0": None} if cell == "lstm" else {})}, None),
        lambda: model(np.zeros((B, T, I + 1), np.float32)),
        lambda: rx.from_bytes(declared_huge),
    ]

    def call():
        for function in refused:
            try:
                function()
            except (ValueError, TypeError, MemoryError):
                continue
            raise AssertionError("a call that must be refused returned")
    return call, [*args.values(), lengths, view, model, declared_huge]


@pytest.mark.parametrize("name", ["forward", "backward", "step", "load", "errors"])
@pytest.mark.parametrize("cell", CELLS)
def test_repeated_calls_leak_nothing(cell, name):
    call, arguments = _operation(cell, name)
    for _ in range(WARMUP):
        call()
    gc.collect()
    refcounts = [sys.getrefcount(a) for a in arguments]
    blocks = sys.getallocatedblocks()  # pymalloc's; 0 with PYTHONMALLOC=malloc
    in_use = _malloc_in_use()
    rss = _rss()

    for _ in range(CALLS):
        call()

    gc.collect()
    assert [sys.getrefcount(a) for a in arguments] == refcounts, "an argument's reference count grew"
    grown = sys.getallocatedblocks() - blocks
    assert grown < BLOCKS_TOLERANCE, f"{grown} more Python objects after {CALLS} calls"
    if in_use is not None:
        grown = _malloc_in_use() - in_use
        assert grown < MALLOC_TOLERANCE, f"{grown} more bytes from malloc in use after {CALLS} calls"
    if rss is not None:
        grown = _rss() - rss
        assert grown < RSS_TOLERANCE, f"the process grew by {grown / 2**20:.1f} MiB in {CALLS} calls"
