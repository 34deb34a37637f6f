"""A model's forward in rnnext against onnxruntime running the model's own export
(``model.to_onnx()``), for each cell at a small and a medium size (pytest-benchmark).

    pytest benchmarks/test_onnx_export.py --benchmark-group-by=group

Both compute ``model(x)`` for a batch-first model: out and h_n (and c_n), the graph's
Transposes included, as a user deploying the file would run it. onnxruntime gets the
session options of ``rnnext._bench_peers.onnxruntime_session`` (rnnext's thread count).
Before it is timed, the session's outputs are checked against the model's (API.md
section 6: rtol 1e-5, atol 1e-6), so ``--benchmark-disable`` (CI) runs each pair once
and checks it. Skipped without onnx / onnxruntime.
"""

import functools

import numpy as np
import pytest

import rnnext as rx
from rnnext import _bench_peers, bench

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZES = [(4, 20, 16, 16), (16, 50, 64, 128)]  # B, T, I, H: small, medium


@functools.lru_cache(maxsize=2)
def prepared(cell, size):
    """{"rnnext": fn, "onnxruntime": fn} for one model and input, checked."""
    B, T, I, H = size
    model = getattr(rx, cell.upper())(I, H, seed=0)
    x = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    session = _bench_peers.onnxruntime_session(model.to_onnx())
    out, state = model(x)
    expected = [out, *(state if isinstance(state, tuple) else (state,))]
    for name, got, want in zip(["out", "h_n", "c_n"], session.run(None, {"x": x}), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"onnxruntime {name}, {cell} {size}")
    return {"rnnext": lambda: model(x), "onnxruntime": lambda: session.run(None, {"x": x})}


@pytest.mark.parametrize("peer", ["rnnext", "onnxruntime"])
@pytest.mark.parametrize("size", SIZES, ids=["B%d_T%d_I%d_H%d" % s for s in SIZES])
@pytest.mark.parametrize("cell", bench.CELLS)
def test_onnx_export(benchmark, cell, size, peer):
    fn = prepared(cell, size)[peer]
    benchmark.group = f"to_onnx {cell} " + ", ".join(map(str, size))
    benchmark(fn)
