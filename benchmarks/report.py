"""The benchmark report of the source tree: ``python -m rnnext bench`` with every peer of
benchmarks/peers.py (jax, the textbook NumPy loop and rnnext.functional too), and the
arithmetic rate of rnnext's forward against the machine's matrix-product rate.

    python benchmarks/report.py [--full] [--cell rnn|lstm|gru|all] [--case B,T,I,H]...
                                [--rounds N] [--threads N] [--precision float32|float64]
                                [--plot FILE.png] [--matmul-gflops 300]

Without --full a few representative rows per cell; --full is the grid of PEERS.md and the
README's Speed section (several minutes per cell on the 2-core VM).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import PEERS  # noqa: E402

from rnnext import bench  # noqa: E402
from rnnext.__main__ import add_bench_arguments, run_bench  # noqa: E402


def flops(case: Sequence[int], cell: str) -> float:
    """2 T B G H (I + H): the multiply-adds of a forward with G gate blocks."""
    B, T, I, H = case
    return 2.0 * T * B * bench.GATES[cell] * H * (I + H)


def rate_table(results: bench.Results, matmul_gflops: float) -> str:
    """rnnext's forward GFLOP/s per row and its share of the matrix-product rate."""
    lines: List[str] = ["| cell | B, T, I, H | rnnext GFLOP/s | share of matmul rate |", "|---|---|---|---|"]
    for cell, kinds in results.items():
        for case, times in kinds.get("forward", {}).items():
            if "rnnext" in times:
                rate = flops(case, cell) / times["rnnext"] / 1e9
                lines.append(f"| {cell} | {', '.join(map(str, case))} | {rate:.3g} | {rate / matmul_gflops:.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] = None) -> Dict:
    parser = argparse.ArgumentParser(prog="python benchmarks/report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(parser)
    parser.add_argument("--matmul-gflops", type=float, default=300.0,
                        help="this machine's float32 matrix-product rate on these threads, for the share "
                             "column (default 300: the project's 2-core AVX-512 VM)")
    args = parser.parse_args(argv)
    if not args.matmul_gflops > 0:
        parser.error(f"--matmul-gflops: expected a positive number, got {args.matmul_gflops}")
    results = run_bench(args, parser, PEERS)
    print("\nForward arithmetic rate (2 T B G H (I + H) FLOPs per call):\n")
    print(rate_table(results, args.matmul_gflops))
    return results


if __name__ == "__main__":
    main()
