"""Shared by the pytest-benchmark files: benchmarks/ on sys.path (for ``peers``), the sizes
to time, and the ``prepared`` fixture.

Under ``--benchmark-disable`` (CI's smoke run: every peer runs and is checked once) the
forward and training tests take two small sizes instead of the whole grid.
"""

import functools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import PEERS  # noqa: E402

from rnnext import bench  # noqa: E402

SMOKE_CASES = [(1, 100, 64, 64), (3, 7, 5, 6)]


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = SMOKE_CASES if metafunc.config.getoption("benchmark_disable") else bench.FORWARD_CASES
        metafunc.parametrize("case", cases, ids=["B%d_T%d_I%d_H%d" % c for c in cases])


@functools.lru_cache(maxsize=4)
def problem(cell, case):
    return bench.Problem(*case, cell=cell)


@pytest.fixture
def prepared():
    """prepared(kind, cell, case, peer): the peer's function, checked (an AssertionError
    when it disagrees with the reference), or a skip when it cannot run here."""

    def get(kind, cell, case, peer):
        notes = []
        fns = bench.prepare(kind, problem(cell, tuple(case)), PEERS, [peer], notes)
        if peer not in fns:
            pytest.skip("; ".join(n for n in notes if n.startswith(peer + " ")) or f"{peer} did not run")
        return fns[peer]

    return get
