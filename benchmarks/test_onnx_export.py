"""A model's forward in rnnext against onnxruntime running the model's own export
(``model.to_onnx()``), for each cell at four sizes, streaming to large (pytest-benchmark).

    pytest benchmarks/test_onnx_export.py --benchmark-group-by=group

Both compute ``model(x)`` for a batch-first model: out and h_n (and c_n), the graph's
Transposes included, as a user deploying the file would run it. onnxruntime gets the
session options of ``rnnext._bench_peers.onnxruntime_session`` (rnnext's thread count).
Before it is timed, the session's outputs are checked against the model's (API.md
section 6; rtol 2e-5, atol 4e-6 at the larger sizes), so ``--benchmark-disable`` (CI) runs each pair once
and checks it. Skipped without onnx / onnxruntime.
"""

import functools

import numpy as np
import pytest

import rnnext as rx
from rnnext import _bench_peers, bench

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZES = [(1, 100, 64, 64), (16, 50, 64, 128), (32, 100, 256, 256), (64, 50, 512, 512)]  # B, T, I, H


@functools.lru_cache(maxsize=4)
def prepared(cell, size):
    """{"rnnext": fn, "onnxruntime": fn} for one model and input, checked."""
    B, T, I, H = size
    model = getattr(rx, cell.upper())(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    session = _bench_peers.onnxruntime_session(model.to_onnx())
    out, state = model(x)
    expected = [out, *(state if isinstance(state, tuple) else (state,))]
    for name, got, want in zip(["out", "h_n", "c_n"], session.run(None, {"x": x}), expected):
        # Two float32 computations: at H = 512 each is within 2e-6 of float64
        # (measured; dot products 1024 long), so they may differ by as much.
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=4e-6, err_msg=f"onnxruntime {name}, {cell} {size}")
    return {"rnnext": lambda: model(x), "onnxruntime": lambda: session.run(None, {"x": x})}


@pytest.mark.parametrize("peer", ["rnnext", "onnxruntime"])
@pytest.mark.parametrize("size", SIZES, ids=["B%d_T%d_I%d_H%d" % s for s in SIZES])
@pytest.mark.parametrize("cell", bench.CELLS)
def test_onnx_export(benchmark, cell, size, peer):
    fn = prepared(cell, size)[peer]
    benchmark.group = f"to_onnx {cell} " + ", ".join(map(str, size))
    benchmark(fn)
