"""Streaming latency: one time step per Python call, B = 1, I = H = 128, for each cell."""

import pytest

from rnnext import bench

PEERS = {cell: bench.step_peers(bench.STEP_SIZE, cell) for cell in bench.CELLS}
NAMES = sorted({name for peers in bench.STEP_PEERS.values() for name in peers})


@pytest.mark.parametrize("cell", bench.CELLS)
@pytest.mark.parametrize("peer", NAMES)
def test_step(benchmark, cell, peer):
    if peer not in PEERS[cell]:
        pytest.skip(f"{peer} is not installed (or has no {cell} step)")
    benchmark.group = f"step {cell} H={bench.STEP_SIZE}"
    benchmark(PEERS[cell][peer])
