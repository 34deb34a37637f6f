"""Training speed: forward + backward of the whole sequence, rnnext against
torch autograd (nn.RNN / LSTM / GRU forward + backward()), for each cell."""

import pytest

from rnnext import bench

CASES = {"B%d_T%d_I%d_H%d" % case: case for case in bench.TRAINING_CASES}
PEERS = sorted({name for peers in bench.TRAINING_PEERS.values() for name in peers})


@pytest.fixture(scope="module", params=[(cell, case) for cell in bench.CELLS for case in CASES],
                ids=[f"{cell}-{case}" for cell in bench.CELLS for case in CASES])
def problem(request):
    cell, case = request.param
    return bench.Problem(*CASES[case], cell=cell)


@pytest.mark.parametrize("peer", PEERS)
def test_training(benchmark, problem, peer):
    fns = bench.available_training_peers(problem, [peer])
    if peer not in fns:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"training {problem.cell} " + ", ".join(map(str, problem.shape))
    benchmark(fns[peer])
