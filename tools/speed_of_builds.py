"""Speed of two builds of rnnext, side by side: did a change make anything slower?

Times rnnext alone (no peers) on the benchmark grid, forward (models with
packed weights), training (forward + backward of every gradient) and the
streaming step, for RNN, LSTM and GRU. The two interpreters run in turns,
``--rounds`` times each, and each entry keeps its best time, so drift of the
machine hits both builds alike::

    python tools/speed_of_builds.py OLD_PYTHON NEW_PYTHON [--rounds 3] [--quick]

Run it on a quiet machine: a figure is only worth the noise it was measured in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CASES = [(1, 100, 64, 64), (1, 100, 256, 256), (1, 1000, 128, 128), (8, 100, 128, 128),
         (32, 100, 256, 256), (64, 50, 512, 512), (128, 50, 1024, 1024), (256, 20, 256, 256)]
QUICK = [(1, 100, 64, 64), (8, 100, 128, 128), (64, 50, 512, 512)]


def _best(fn, budget: float = 0.4) -> float:
    """The median of 5 runs, repeated until `budget` seconds: the best of those."""
    fn()
    best = float("inf")
    start = time.perf_counter()
    while True:
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        best = min(best, sorted(runs)[2])
        if time.perf_counter() - start > budget:
            return best


def measure(quick: bool) -> dict:
    import numpy as np

    import rnnext as rx

    out = {}
    classes = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}
    for cell, cls in classes.items():
        for B, T, I, H in QUICK if quick else CASES:
            rng = np.random.default_rng(0)
            x = rng.standard_normal((B, T, I), dtype=np.float32)
            model = cls(I, H, seed=0)
            key = f"{cell} {B},{T},{I},{H}"
            out[key + " forward"] = _best(lambda: model(x))
            target = rng.standard_normal((B, T, H), dtype=np.float32)
            if B * T * H <= 128 * 50 * 1024:
                out[key + " training"] = _best(lambda: model.loss_and_grads(x, target, loss="mse"))
        model = cls(128, 128, seed=0)
        x_t = np.random.default_rng(1).standard_normal((1, 128), dtype=np.float32)
        state = model.initial_state(1)
        out[f"{cell} step 1,128"] = _best(lambda: model.step(x_t, state), budget=0.2)
    return out


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.quick)))
        return 0
    best = {"old": {}, "new": {}}
    for _ in range(args.rounds):
        for name in ("old", "new"):
            command = [getattr(args, name), __file__, "x", "x", "--child"] + (["--quick"] if args.quick else [])
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            for key, value in result.items():
                best[name][key] = min(value, best[name].get(key, float("inf")))
    print(f"{'case':<34} {'old ms':>10} {'new ms':>10} {'new/old':>8}")
    for key in best["old"]:
        old, new = best["old"][key] * 1e3, best["new"][key] * 1e3
        print(f"{key:<34} {old:>10.4f} {new:>10.4f} {new / old:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
