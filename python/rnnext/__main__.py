"""Command line: ``python -m rnnext bench`` and ``python -m rnnext demo``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m rnnext bench`` (benchmarks/report.py takes the same)."""
    parser.add_argument("--full", action="store_true",
                        help="the whole grid: every size forward and training, and streaming (many minutes)")
    parser.add_argument("--cell", choices=["rnn", "lstm", "gru", "all"], default="all",
                        help="which recurrent cell to time (default all)")
    parser.add_argument("--case", action="append", metavar="B,T,I,H",
                        help="time this size only, forward (and training with --full); repeatable")
    parser.add_argument("--threads", type=int, help="threads for rnnext and every peer")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (default 3)")
    parser.add_argument("--precision", choices=["float32", "float64", "bfloat16", "int8"], default="float32",
                        help="the dtype of every implementation (default float32); bfloat16 or int8: "
                             "reduced-precision inference against torch's and onnxruntime's, with errors")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the timings (needs matplotlib)")
    # 0.5's --quick is what the default run is now; scripts that pass it keep working.
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)


def run_bench(args: argparse.Namespace, parser: argparse.ArgumentParser, peers: Optional[Dict[str, Any]] = None) -> Any:
    """Runs the benchmark the parsed options ask for; bad options exit through `parser.error`."""
    from . import _core, bench

    cases: Optional[Sequence[Tuple[int, int, int, int]]] = None
    if args.case:
        try:
            cases = [cast(Tuple[int, int, int, int], tuple(int(v) for v in c.split(","))) for c in args.case]
            if any(len(c) != 4 or min(c) < 1 for c in cases):
                raise ValueError
        except ValueError:
            parser.error(f"--case: expected four positive integers B,T,I,H, got {' '.join(args.case)!r}")
    if getattr(args, "quick", False) and args.full:
        parser.error("--quick and --full: choose one (the default run is the quick one)")
    if args.rounds < 1:
        parser.error(f"--rounds: expected a positive integer, got {args.rounds}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads: expected a positive integer, got {args.threads}")
        _core.set_num_threads(args.threads)
    if args.plot and args.precision in ("bfloat16", "int8"):
        parser.error("--plot draws float32 and float64 runs only; --precision bfloat16/int8 prints tables")
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            parser.error("--plot needs matplotlib: pip install matplotlib")
    cells = bench.CELLS if args.cell == "all" else (args.cell,)
    if args.precision in ("bfloat16", "int8"):
        from . import _bench_quantized

        if cases is not None and any(c[2] != c[3] for c in cases):
            parser.error(f"--case: --precision {args.precision} times I = H only")
        return _bench_quantized.run(args.precision, cells, args.full, cases, args.rounds, progress=True)
    return bench.run(cells, args.full, cases, args.rounds, args.precision, peers, args.plot)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnext", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench", help="time rnnext against NumPy, PyTorch and ONNX Runtime",
        description="Time rnnext against NumPy (and PyTorch and ONNX Runtime when installed), every "
                    "implementation checked against rnnext.reference first: a few representative rows "
                    "per cell by default (about a minute on two cores), the whole grid with --full.")
    add_bench_arguments(bench)
    demo = commands.add_parser("demo", help="train one small model per application shape of the article")
    demo.add_argument("--plot", metavar="FILE.png", help="draw the loss curves (needs matplotlib)")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from . import demo as demo_module

        return demo_module.main(plot=args.plot)
    run_bench(args, bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
