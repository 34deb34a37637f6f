"""Forward speed of rnnext against its peers (pytest-benchmark), for each cell.

    pytest benchmarks/test_forward.py --benchmark-group-by=group

Peers whose library is missing are skipped; each peer is checked against
rnnext.reference before it is timed. Compare the columns of one run only: the machines
are shared and drift. ``python benchmarks/report.py`` prints the same comparison as
tables with verdicts.
"""

import pytest
from peers import PEERS

from rnnext import bench


@pytest.mark.parametrize("peer", list(PEERS["forward"]))
@pytest.mark.parametrize("cell", bench.CELLS)
def test_forward(benchmark, prepared, cell, case, peer):
    fn = prepared("forward", cell, case, peer)
    benchmark.group = f"forward {cell} " + ", ".join(map(str, case))
    benchmark(fn)
