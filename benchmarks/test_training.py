"""Training speed: forward + backward of the whole sequence (every gradient), rnnext
against torch autograd (nn.RNN / LSTM / GRU forward + backward()), for each cell. Each
gradient is checked against rnnext's (and rnnext's against torch's) before timing."""

import pytest
from peers import PEERS

from rnnext import bench


@pytest.mark.parametrize("peer", list(PEERS["training"]))
@pytest.mark.parametrize("cell", bench.CELLS)
def test_training(benchmark, prepared, cell, case, peer):
    fn = prepared("training", cell, case, peer)
    benchmark.group = f"training {cell} " + ", ".join(map(str, case))
    benchmark(fn)
