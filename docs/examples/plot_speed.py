"""
Speed: rnnext against a NumPy loop
==================================

The forward of an Elman RNN, ``h_t = tanh(W_x x_t + b_x + W_h h_{t-1} + b_h)``,
timed in rnnext, in :mod:`rnnext.reference` (plain NumPy, one step per
iteration of a Python loop) and in ``torch.nn.RNN`` when torch is installed,
at a few small sizes with few repeats.

This is an illustration, timed while this page was built on whatever machine
built it. The figures that count come from ``python -m rnnext bench`` (and
``benchmarks/`` in a checkout), which interleave the implementations over
rounds, check each against a float64 reference first, and cover LSTM, GRU,
training and streaming; the README's Speed section has one full run.
"""

import timeit

import matplotlib.pyplot as plt
import numpy as np

import rnnext as rx

try:
    import torch
except ImportError:  # torch is optional here
    torch = None

SIZES = [(1, 100, 64, 64), (8, 100, 128, 128), (32, 50, 256, 256)]  # B, T, I, H
rng = np.random.default_rng(0)


def best_of(fn, repeats=5):
    fn()  # warm up (packing, thread start, allocations)
    number = max(1, int(0.02 / max(timeit.timeit(fn, number=1), 1e-6)))
    return min(timeit.repeat(fn, number=number, repeat=repeats)) / number


times = {"rnnext": [], "NumPy loop (rnnext.reference)": []}
if torch is not None:
    times["torch.nn.RNN"] = []
for B, T, I, H in SIZES:
    x = rng.standard_normal((B, T, I), dtype=np.float32)
    model = rx.RNN(I, H, seed=0)
    args = (model.W_x, model.W_h, model.b_x, model.b_h)
    times["rnnext"].append(best_of(lambda: model(x)))
    times["NumPy loop (rnnext.reference)"].append(best_of(lambda: rx.reference.rnn(x, *args)))
    if torch is not None:
        module = model.to_torch()
        xt = torch.from_numpy(x)

        def run_torch():
            with torch.no_grad():
                module(xt)

        times["torch.nn.RNN"].append(best_of(run_torch))

labels = [f"B={B}, T={T}\nI=H={H}" for B, T, I, H in SIZES]
positions = np.arange(len(SIZES))
width = 0.8 / len(times)
fig, ax = plt.subplots(figsize=(8, 3.8))
for k, (name, seconds) in enumerate(times.items()):
    ax.bar(positions + k * width, np.array(seconds) * 1e3, width, label=name)
ax.set_xticks(positions + width * (len(times) - 1) / 2, labels)
ax.set_yscale("log")
ax.set_ylabel("ms per forward (lower is faster)")
ax.set_title(f"tanh RNN forward, float32, {rx.get_num_threads()} threads, {rx.build_info()['isa']} kernels")
ax.legend(fontsize=8)
fig.tight_layout()

for (B, T, I, H), *row in zip(SIZES, *times.values()):
    print(f"B={B:3d} T={T:3d} I=H={H:3d}: " + ", ".join(f"{name} {s * 1e3:.3f} ms" for name, s in zip(times, row)))
