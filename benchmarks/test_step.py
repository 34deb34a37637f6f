"""Streaming latency: one time step per Python call, B = 1, I = H = 128."""

import pytest

from rnnext import bench

PEERS = bench.step_peers()


@pytest.mark.parametrize("peer", ["rnnext", "numpy", "torch", "onnxruntime"])
def test_step(benchmark, peer):
    if peer not in PEERS:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"step H={bench.STEP_SIZE}"
    benchmark(PEERS[peer])
