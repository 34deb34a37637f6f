"""Training speed: forward + backward of the whole sequence, rnnext against
torch autograd (nn.RNN forward + backward())."""

import pytest

from rnnext import bench

CASES = {"B%d_T%d_I%d_H%d" % case: case for case in bench.TRAINING_CASES}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    return bench.Problem(*CASES[request.param])


@pytest.mark.parametrize("peer", list(bench.TRAINING_PEERS))
def test_training(benchmark, case, peer):
    fns = bench.available_training_peers(case, [peer])
    if peer not in fns:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = "training " + ", ".join(map(str, case.shape))
    benchmark(fns[peer])
