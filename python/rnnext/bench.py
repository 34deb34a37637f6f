"""Speed of rnnext against NumPy, PyTorch and ONNX Runtime: ``python -m rnnext bench``.

Every implementation (``PEERS``, in :mod:`rnnext._bench_peers`) runs the same problem and
is checked against :mod:`rnnext.reference` in float64 before it is timed. Timings are
interleaved (each round times every implementation once, with a short pause between
libraries, whose thread pools spin after a call) and the best round's median is reported:
shared machines drift, so compare the columns of one run only. By default a few
representative rows per cell run (about a minute on two cores); ``full=True`` runs the
whole grid, with these peers wherever it runs (it never delegates to a checkout);
``python benchmarks/report.py`` in the source tree builds on this module with more peers.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._bench_peers import (CELLS, GATES, PEERS, Case, Factory, Problem, Unavailable, cell_step, first, need,
                           zero_state)

__all__ = ["CELLS", "GATES", "FORWARD_CASES", "QUICK_CASES", "PEERS", "Problem", "Unavailable", "cell_step",
           "zero_state", "need", "first", "prepare", "time_interleaved", "verdict", "table", "plan", "run", "draw"]

FORWARD_CASES: List[Case] = [  # the full grid: from latency bound (B = 1) to product bound
    (1, 100, 64, 64), (1, 100, 256, 256), (1, 1000, 128, 128), (8, 100, 128, 128),
    (32, 100, 256, 256), (64, 50, 512, 512), (128, 50, 1024, 1024), (256, 20, 256, 256),
]
QUICK_CASES: List[Case] = [(1, 100, 64, 64), (8, 100, 128, 128), (64, 50, 512, 512)]
QUICK_TRAINING: List[Case] = [(8, 100, 128, 128)]
STEP_SIZE = 128  # I = H of the streaming row, B = 1
UNITS = {"forward": ("ms", 1e3), "training": ("ms", 1e3), "step": ("us", 1e6)}
Peers = Optional[Dict[str, Dict[str, Factory]]]
Results = Dict[str, Dict[str, Dict[Case, Dict[str, float]]]]  # cell -> kind -> case -> name -> seconds


def prepare(kind: str, p: Problem, peers: Peers = None,
            names: Optional[Sequence[str]] = None, notes: Optional[List[str]] = None) -> Dict[str, Callable[[], Any]]:
    """The implementations of `kind` that run here (those that cannot are left out, with a
    line in `notes`), each checked once: forward and step results against the reference,
    training gradients (dL/dW_h) against rnnext's, rnnext's against torch's when it runs."""
    registry = (peers or PEERS)[kind]
    fns, results = {}, {}
    wanted = set(registry if names is None else names) | ({"rnnext", "torch"} if kind == "training" else set())
    for name, factory in registry.items():
        if name not in wanted:
            continue
        try:
            fns[name] = factory(p)
        except ImportError as e:
            if notes is not None:
                notes.append(f"{name} left out: {e}")
            continue
        results[name] = first(fns[name]())
        if kind != "training":
            p.check(name, results[name])
    if kind == "training" and "rnnext" in results:
        ours = results["rnnext"]
        for name, theirs in results.items():
            if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(ours).max()):
                raise AssertionError(f"{name}'s {p.cell} gradient disagrees with rnnext's at {p.shape}")
    return {name: fn for name, fn in fns.items() if names is None or name in names}


# ---------------------------------------------------------------- timing and the table


def _time_once(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_interleaved(fns: Mapping[str, Callable[[], object]], rounds: int = 3, repeats: int = 5, min_time: float = 0.02,
                     pause: float = 0.25, on_round: Callable[[], object] = lambda: None) -> Dict[str, float]:
    """Seconds per call of each function: the best, over `rounds` interleaved rounds, of
    the median of `repeats` timings of enough calls to last `min_time`. Before each
    timing it sleeps `pause` seconds so that the previous library's spinning thread pool
    (OpenBLAS's, ONNX Runtime's, torch's) goes to sleep rather than slows the next."""
    numbers = {}
    for name, fn in fns.items():
        fn()  # warm up: thread pools, packing caches, lazy imports
        numbers[name] = max(1, int(min_time / max(_time_once(fn, 1), 1e-7)))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(pause)
            best[name] = min(best[name], float(np.median([_time_once(fn, numbers[name]) for _ in range(repeats)])))
        on_round()
    return best


def verdict(times: Dict[str, float]) -> str:
    """One line on rnnext against the fastest peer of a row."""
    peers = {k: v for k, v in times.items() if not k.startswith("rnnext")}
    if "rnnext" not in times or not peers:
        return "no peer ran" if peers == {} else "-"
    best = min(peers, key=peers.__getitem__)
    ratio = peers[best] / times["rnnext"]
    x: Callable[[float], str] = lambda r: f"{r:.1f}x" if r < 9.95 else f"{r:.0f}x"  # noqa: E731
    if 1 / 1.05 < ratio < 1.05:
        return f"rnnext and {best} about even"
    return f"rnnext {x(ratio)} faster than the fastest peer ({best})" if ratio > 1 else f"{best} {x(1 / ratio)} faster here"


def table(results: Dict[str, Dict[Case, Dict[str, float]]], peers: Peers = None) -> str:
    """A Markdown table of one cell's results ({kind: {case: {name: seconds}}})."""
    order = [n for kind in (peers or PEERS).values() for n in kind]
    names = sorted({n for rows in results.values() for t in rows.values() for n in t}, key=order.index)
    header = ["kind", "B, T, I, H", "unit"] + names + ["verdict"]
    rows = [[kind, ", ".join(map(str, case)), UNITS[kind][0]]
            + [f"{t[n] * UNITS[kind][1]:.3g}" if n in t else "-" for n in names] + [verdict(t)]
            for kind, cases in results.items() for case, t in cases.items()]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line: Callable[[List[str]], str] = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def plan(cells: Sequence[str] = CELLS, full: bool = False, cases: Optional[Sequence[Case]] = None
         ) -> List[Tuple[str, str, Case]]:
    """The (kind, cell, case) rows to time: by default QUICK_CASES, one training row and
    the streaming row; `full`: every case forward and training, and streaming; `cases`:
    those sizes only (forward, and training with `full`)."""
    jobs = []
    for cell in cells:
        forward = list(cases or (FORWARD_CASES if full else QUICK_CASES))
        training = forward if full else ([] if cases else QUICK_TRAINING)
        step = [] if cases else [(1, 1, STEP_SIZE, STEP_SIZE)]
        jobs += [(kind, cell, c) for kind, cs in (("forward", forward), ("training", training), ("step", step))
                 for c in cs]
    return jobs


def run(cells: Sequence[str] = CELLS, full: bool = False, cases: Optional[Sequence[Case]] = None, rounds: int = 3,
        dtype: str = "float32", peers: Peers = None, plot: Optional[str] = None,
        progress: bool = True, out: Any = None) -> Results:
    """Times the rows of :func:`plan`, prints one table per cell and returns the timings
    (seconds) as {cell: {kind: {case: {name: s}}}}; with `plot`, also draws them."""
    from tqdm import tqdm

    out = out or sys.stdout
    info = _core.build_info()
    print(f"rnnext {info['version']}, {info['isa']} kernels, {info['num_threads']} threads, {dtype}; time per call, "
          f"the best round's median of {rounds} interleaved rounds\n", file=out, flush=True)
    jobs = plan(cells, full, cases)
    # The quick run takes fewer, shorter timings and shorter pauses; --full takes its time.
    timing: Dict[str, Any] = dict(repeats=5, min_time=0.02, pause=0.25) if full else dict(repeats=3, min_time=0.01, pause=0.15)
    results: Results = {}
    notes: List[str] = []
    with tqdm(total=len(jobs) * rounds, unit="round", disable=not progress, leave=False) as bar:
        for i, (kind, cell, case) in enumerate(jobs):
            bar.set_description(f"{cell} {kind} {','.join(map(str, case))}")
            fns = prepare(kind, Problem(*case, cell=cell, dtype=dtype), peers, notes=notes)
            times = time_interleaved(fns, rounds, **timing, on_round=bar.update)
            results.setdefault(cell, {}).setdefault(kind, {})[case] = times
            if i + 1 == len(jobs) or jobs[i + 1][1] != cell:
                tqdm.write(f"## {cell.upper()}\n\n{table(results[cell], peers)}\n", file=out)
    for note in dict.fromkeys(notes):
        print(f"Note: {note}", file=out)
    if plot:
        draw(results, plot)
        print(f"Chart written to {plot}", file=out)
    return results


def draw(results: Results, path: str) -> None:
    """One panel per cell: each implementation's time over rnnext's, per row (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 3.5 * len(results)), squeeze=False)
    for ax, (cell, kinds) in zip(axes[:, 0], results.items()):
        rows = [(f"{kind}\n{','.join(map(str, c))}", t) for kind, cs in kinds.items() for c, t in cs.items()]
        names = sorted({n for _, t in rows for n in t if n != "rnnext"})
        width = 0.8 / max(1, len(names))
        for j, name in enumerate(names):
            ratios = [t[name] / t["rnnext"] if name in t and "rnnext" in t else np.nan for _, t in rows]
            ax.bar(np.arange(len(rows)) + j * width, ratios, width, label=name, color=f"C{j % 10}")
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, [label for label, _ in rows], fontsize=7)
        ax.set(yscale="log", title=f"{cell.upper()}: time per call over rnnext's (above 1: rnnext is faster)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
