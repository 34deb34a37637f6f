"""Bit-for-bit comparison of two builds of rnnext.

A refactoring of the core must not change a single bit of any result. This
script runs a fixed grid of cases (every cell and activation, both GRU forms,
float32 and float64, sizes around the SIMD and panel widths, batches on both
sides of the thread-split rules, lengths, reverse, initial states, stacked and
bidirectional models, heads, streaming steps, losses and gradients) and saves
every array, once per instruction set the CPU has (``RNNEXT_FORCE_ISA``, each
in its own process). Run ``save`` with the old build installed, ``compare``
with the new one::

    python tools/compare_builds.py save /tmp/before      # old build
    python tools/compare_builds.py compare /tmp/before   # new build: exit 1 on any difference

Only the public API is used, so any two versions can be compared.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, Iterator, Tuple

import numpy as np

# (B, T, I, H): one row, odd sizes (not multiples of 16 or 32), a batch past
# the 64-row chunk, and a small batch with many units (hidden-unit slices).
SHAPES = [(1, 7, 3, 5), (3, 11, 17, 33), (70, 5, 9, 20), (2, 6, 40, 300)]
CELLS = [("rnn", {"activation": "tanh"}), ("rnn", {"activation": "sigmoid"}), ("rnn", {"activation": "relu"}),
         ("lstm", {}), ("gru", {"linear_before_reset": True}), ("gru", {"linear_before_reset": False})]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _functional_cases(rx) -> Iterator[Tuple[str, np.ndarray]]:
    F = rx.functional
    for cell, options in CELLS:
        forward, backward = getattr(F, cell), getattr(F, cell + "_backward")
        tag = cell + "".join(f"-{k}={v}" for k, v in options.items())
        for dtype in (np.float32, np.float64):
            for shape in SHAPES:
                B, T, I, H = shape
                rng = np.random.default_rng(sum(shape))
                G, scale = GATES[cell], 1 / np.sqrt(H)
                W_x = rng.uniform(-scale, scale, (G * H, I)).astype(dtype)
                W_h = rng.uniform(-scale, scale, (G * H, H)).astype(dtype)
                b_x = rng.uniform(-scale, scale, G * H).astype(dtype)
                b_h = rng.uniform(-scale, scale, G * H).astype(dtype)
                x = rng.standard_normal((B, T, I)).astype(dtype)
                h0 = rng.standard_normal((B, H)).astype(dtype)
                lengths = rng.integers(1, T + 1, B)
                dh_seq = rng.standard_normal((B, T, H)).astype(dtype)
                dh_n = rng.standard_normal((B, H)).astype(dtype)
                for variant in ("plain", "lengths-h0", "reverse-timemajor", "nobias"):
                    kwargs = dict(options)
                    args = [x, W_x, W_h, b_x, b_h]
                    extra_state = {}
                    if variant == "lengths-h0":
                        kwargs["lengths"] = lengths
                        args.append(h0)
                        if cell == "lstm":
                            extra_state["c0"] = h0[::-1].copy()
                    elif variant == "reverse-timemajor":
                        kwargs.update(reverse=True, batch_first=False, lengths=lengths)
                        args[0] = np.ascontiguousarray(x.transpose(1, 0, 2))
                    elif variant == "nobias":
                        args = [x, W_x, W_h]
                    h_seq, state, cache = forward(*args, **extra_state, **kwargs, return_cache=True)
                    name = f"functional/{tag}/{np.dtype(dtype).name}/{shape}/{variant}"
                    yield name + "/h_seq", h_seq
                    states = state if isinstance(state, tuple) else (state,)
                    for k, s in enumerate(states):
                        yield name + f"/state{k}", s
                    d_seq = dh_seq if kwargs.get("batch_first", True) else np.ascontiguousarray(
                        dh_seq.transpose(1, 0, 2))
                    grad_args = {"dh_seq": d_seq, "dh_n": dh_n}
                    if cell == "lstm":
                        grad_args["dc_n"] = dh_n[::-1].copy()
                    grads = backward(cache, **grad_args)
                    for key in sorted(grads):
                        yield name + f"/grad/{key}", grads[key]


def _model_cases(rx) -> Iterator[Tuple[str, np.ndarray]]:
    classes = {"rnn": rx.RNN, "lstm": rx.LSTM, "gru": rx.GRU}
    for cell, options in CELLS:
        tag = cell + "".join(f"-{k}={v}" for k, v in options.items())
        for dtype in ("float32", "float64"):
            for layers, bidirectional, head in [(1, False, 4), (1, False, None), (2, True, 3), (3, False, None)]:
                for B, T, I, H in [(2, 9, 5, 19), (66, 4, 3, 8)]:
                    model = classes[cell](I, H, head, num_layers=layers, bidirectional=bidirectional, dtype=dtype,
                                          seed=B + T + layers, **options)
                    rng = np.random.default_rng(B * T)
                    x = rng.standard_normal((B, T, I))
                    lengths = rng.integers(1, T + 1, B)
                    name = f"model/{tag}/{dtype}/L{layers}-bi{bidirectional}-head{head}/{B},{T},{I},{H}"
                    for rs in (True, False):
                        out, state = model(x, lengths=lengths, return_sequences=rs)
                        yield name + f"/out-rs{rs}", out
                        for k, s in enumerate(state if isinstance(state, tuple) else (state,)):
                            yield name + f"/h_n{k}-rs{rs}", s
                    yield name + "/predict", model.predict(x, lengths=lengths, batch_size=7)
                    if not bidirectional:
                        state = None
                        for t in range(3):
                            y, state = model.step(x[:, t], state)
                            yield name + f"/step{t}", y
                        for k, s in enumerate(state if isinstance(state, tuple) else (state,)):
                            yield name + f"/step-state{k}", s
                        y1, s1 = model.step(x[0, 0])
                        yield name + "/step-unbatched", y1
                    O = head if head else (2 if bidirectional else 1) * H
                    target = rng.standard_normal((B, T, O))
                    loss, grads = model.loss_and_grads(x, target, loss="mse", lengths=lengths)
                    yield name + "/loss", np.asarray(loss)
                    for key in sorted(grads):
                        yield name + f"/grad/{key}", grads[key]
                    if head:
                        ids = rng.integers(0, head, B)
                        loss, grads = model.loss_and_grads(x, ids, loss="cross_entropy", lengths=lengths)
                        yield name + "/ce-loss", np.asarray(loss)
                        for key in sorted(grads):
                            yield name + f"/ce-grad/{key}", grads[key]


def collect() -> Dict[str, np.ndarray]:
    import rnnext as rx

    results: Dict[str, np.ndarray] = {}
    for key, value in [*_functional_cases(rx), *_model_cases(rx)]:
        assert key not in results, key
        results[key] = np.array(value, copy=True)
    return results


def _isas() -> list:
    out = subprocess.run([sys.executable, "-c", "import rnnext; print(' '.join(rnnext.build_info()['isas_available']))"],
                         check=True, capture_output=True, text=True)
    return out.stdout.split()


def _run_child(mode: str, directory: str) -> int:
    status = 0
    for isa in _isas():
        env = dict(os.environ, RNNEXT_FORCE_ISA=isa)
        done = subprocess.run([sys.executable, __file__, mode + "-one", os.path.join(directory, isa + ".npz")], env=env)
        status = status or done.returncode
    return status


def main(argv: list) -> int:
    if len(argv) != 2 or argv[0] not in ("save", "compare", "save-one", "compare-one"):
        print(__doc__)
        return 2
    mode, path = argv
    if mode in ("save", "compare"):
        if mode == "save":
            os.makedirs(path, exist_ok=True)
        return _run_child(mode, path)
    isa = os.environ.get("RNNEXT_FORCE_ISA", "?")
    results = collect()
    if mode == "save-one":
        np.savez(path, **results)
        print(f"{isa}: saved {len(results)} arrays to {path}")
        return 0
    with np.load(path) as before:
        missing = sorted(set(before.files) ^ set(results))
        different = [k for k in before.files if k in results and (
            before[k].dtype != results[k].dtype or before[k].shape != results[k].shape
            or before[k].tobytes() != results[k].tobytes())]
    for k in missing[:20]:
        print(f"{isa}: only in one build: {k}")
    for k in different[:int(os.environ.get("RNNEXT_COMPARE_SHOW", "20"))]:
        print(f"{isa}: different bits: {k}")
    print(f"{isa}: {len(results)} arrays, {len(different)} differ, {len(missing)} unmatched")
    return 1 if different or missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
