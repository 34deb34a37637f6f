"""Command line: ``python -m rnnext bench`` and ``python -m rnnext demo``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="time rnnext against NumPy, PyTorch, ONNX Runtime and jax")
    bench.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    bench.add_argument("--plot", metavar="FILE.png", help="draw rnnext against the peers (needs matplotlib)")
    bench.add_argument("--quick", action="store_true", help="only the sizes with B <= 8, forward and streaming")
    bench.add_argument("--threads", type=int, default=None, help="threads for rnnext and the peers")
    bench.add_argument("--case", action="append", metavar="B,T,I,H",
                       help="a forward size to time (repeatable); default: the standard cases")
    bench.add_argument("--cell", choices=["rnn", "lstm", "gru", "all"], default="all",
                       help="which recurrent cell to time (default all)")
    demo = commands.add_parser("demo", help="train one small model per application shape of the article")
    demo.add_argument("--plot", metavar="FILE.png", help="draw the loss curves (needs matplotlib)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from . import demo as demo_module

        return demo_module.main(plot=args.plot)

    if args.command == "bench":
        from . import _core, bench as bench_module

        if args.threads is not None:
            _core.set_num_threads(args.threads)
        cases = bench_module.FORWARD_CASES
        if args.case:
            try:
                cases = [tuple(int(v) for v in c.split(",")) for c in args.case]
                if any(len(c) != 4 or min(c) < 1 for c in cases):
                    raise ValueError
            except ValueError:
                parser.error("--case: expected four positive integers B,T,I,H")
        training = True
        if args.quick:
            cases = [c for c in cases if c[0] <= 8]
            training = False
        if args.plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                parser.error("--plot needs matplotlib: pip install matplotlib")
        cells = bench_module.CELLS if args.cell == "all" else (args.cell,)
        bench_module.run(cases, rounds=args.rounds, plot=args.plot, training=training, cells=cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
