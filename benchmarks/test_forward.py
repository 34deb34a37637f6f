"""Forward speed of rnnext against its peers (pytest-benchmark), for each cell.

    pytest benchmarks/ --benchmark-group-by=group

Peers whose library is missing (or rnnext kernels not built) are skipped.
Compare columns of one run only: the machines are shared and drift.
``python -m rnnext bench`` prints the same comparison as a table with ratios.
"""

import pytest

from rnnext import bench

CASES = {"B%d_T%d_I%d_H%d" % case: case for case in bench.FORWARD_CASES}
PEERS = sorted({name for peers in bench.FORWARD_PEERS.values() for name in peers})


@pytest.fixture(scope="module", params=[(cell, case) for cell in bench.CELLS for case in CASES],
                ids=[f"{cell}-{case}" for cell in bench.CELLS for case in CASES])
def problem(request):
    cell, case = request.param
    return bench.Problem(*CASES[case], cell=cell)


@pytest.mark.parametrize("peer", PEERS)
def test_forward(benchmark, problem, peer):
    if peer not in bench.FORWARD_PEERS[problem.cell]:
        pytest.skip(f"no {peer} peer for {problem.cell}")
    fns = bench.available_forward_peers(problem, [peer])
    if peer not in fns:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = f"forward {problem.cell} " + ", ".join(map(str, problem.shape))
    benchmark(fns[peer])
