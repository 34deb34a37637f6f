"""Reduced-precision inference against its peers (pytest-benchmark): rnnext bfloat16 and
int8 beside rnnext float32, torch float32, bfloat16 and dynamic int8, onnxruntime float32
and DynamicQuantizeLSTM.

    pytest benchmarks/test_quantized.py --benchmark-group-by=group

Each implementation's error against the float64 reference is computed once (rnnext's
must be within API.md's bounds) and shown in the group name's companion ``extra_info``;
``python -m rnnext bench --precision int8 --full`` prints the same as tables.
"""

import functools

import pytest

from rnnext import _bench_quantized as q
from rnnext import bench

SMOKE = [(2, 20, 32, 32)]


def pytest_generate_tests(metafunc):
    if "qcase" in metafunc.fixturenames:
        cases = SMOKE if metafunc.config.getoption("benchmark_disable") else q.QUANT_CASES
        metafunc.parametrize("qcase", cases, ids=["B%d_T%d_I%d_H%d" % c for c in cases])


@functools.lru_cache(maxsize=2)
def prepared(precision, cell, case):
    return q.prepare(precision, bench.Problem(*case, cell=cell))


@pytest.mark.parametrize("peer", ["rnnext float32", "rnnext {p}", "torch float32", "torch {p}",
                                  "onnxruntime float32", "onnxruntime int8"])
@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
@pytest.mark.parametrize("cell", bench.CELLS)
def test_quantized(benchmark, cell, precision, qcase, peer):
    name = peer.format(p=precision)
    if name not in q.peers(precision):
        pytest.skip(f"{name} is not a {precision} peer")
    fns, errors = prepared(precision, cell, qcase)
    if name not in fns:
        pytest.skip(f"{name} cannot run here")
    benchmark.group = f"{precision} {cell} " + ", ".join(map(str, qcase))
    benchmark.extra_info["error"] = errors[name]
    benchmark(fns[name])
