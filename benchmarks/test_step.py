"""Streaming latency: one time step per Python call, B = 1, I = H = 128, for each cell;
each peer's first step is checked against rnnext.reference before timing."""

import pytest
from peers import PEERS

from rnnext import bench

CASE = (1, 1, bench.STEP_SIZE, bench.STEP_SIZE)


@pytest.mark.parametrize("peer", list(PEERS["step"]))
@pytest.mark.parametrize("cell", bench.CELLS)
def test_step(benchmark, prepared, cell, peer):
    fn = prepared("step", cell, CASE, peer)
    benchmark.group = f"step {cell} H={bench.STEP_SIZE}"
    benchmark(fn)
