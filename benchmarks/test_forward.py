"""Forward speed of rnnext against its peers (pytest-benchmark).

    pytest benchmarks/ --benchmark-group-by=param:case

Peers whose library is missing are skipped. Compare columns of one run only:
the machines are shared and drift. ``python -m rnnext bench`` prints the
same comparison as a table with ratios.
"""

import pytest

from rnnext import bench

CASES = {"B%d_T%d_I%d_H%d" % case: case for case in bench.FORWARD_CASES}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request):
    return bench.Problem(*CASES[request.param])


@pytest.mark.parametrize("peer", list(bench.FORWARD_PEERS))
def test_forward(benchmark, case, peer):
    fns = bench.available_forward_peers(case, [peer])
    if peer not in fns:
        pytest.skip(f"{peer} is not installed")
    benchmark.group = "forward " + ", ".join(map(str, case.shape))
    benchmark(fns[peer])
