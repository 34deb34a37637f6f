"""A character-level LSTM language model trained from token ids, rnnext against torch.

Issue 16's size: vocabulary of the text's characters (about 80), an embedding of
I = 64, H = 256, a linear head back to the vocabulary, B = 32 sequences of T = 64
characters, Adam (lr 1e-3), cross-entropy at every step. The text is the license
files NumPy ships (about 88 k characters, always installed). Both start from the
same weights (``rx.from_torch`` of torch's modules) and see the same batches in the
same order (no shuffling), so the losses they print should agree closely; what is
timed is one training epoch each, alternating round by round (the machine's speed
drifts), the median of the rounds printed::

    python benchmarks/char_lm.py [--rounds 5] [--busy]

``--busy`` runs the same with one core kept busy by another process. Run it on an
otherwise quiet machine. torch uses as many threads as rnnext (two on the
project's VM).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Tuple

import numpy as np

import rnnext as rx
from rnnext.demo import license_text

SIZES = dict(I=64, H=256, B=32, T=64, chars=88_000, lr=1e-3)


def dataset(text: str, T: int) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """(vocabulary, x ids (n, T), y ids (n, T)): y is x shifted by one character."""
    vocab = sorted(set(text))
    ids = np.searchsorted(np.array(vocab), np.array(list(text)))
    n = (len(ids) - 1) // T
    return vocab, ids[:n * T].reshape(n, T), ids[1:n * T + 1].reshape(n, T)


def models(V: int, I: int, H: int):
    import torch

    torch.manual_seed(0)
    emb, lstm, head = torch.nn.Embedding(V, I), torch.nn.LSTM(I, H, batch_first=True), torch.nn.Linear(H, V)
    return (emb, lstm, head), rx.from_torch(lstm, head=head, embedding=emb)


def torch_epoch(modules, x: np.ndarray, y: np.ndarray, B: int, lr: float) -> Callable[[], float]:
    import torch

    emb, lstm, head = modules
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def epoch() -> float:
        total = 0.0
        for s in range(0, len(X), B):
            opt.zero_grad()
            out, _ = lstm(emb(X[s:s + B]))
            logits = head(out)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), Y[s:s + B].reshape(-1))
            loss.backward()
            opt.step()
            total += loss.item() * Y[s:s + B].numel()
        return total / Y.numel()

    return epoch


def rnnext_epoch(model: rx.LSTM, x: np.ndarray, y: np.ndarray, B: int, lr: float) -> Callable[[], float]:
    opt = rx.optim.Adam(lr=lr)  # one optimiser for every epoch, as torch's

    def epoch() -> float:
        return model.fit(x, y, loss="cross_entropy", epochs=1, batch_size=B, optimizer=opt, shuffle=False,
                         progress=False)["loss"][0]

    return epoch


@contextlib.contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        if proc is not None:
            time.sleep(0.5)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def measure(rounds: int, busy: bool, sizes: Dict = SIZES) -> Dict[str, List[float]]:
    import torch

    torch.set_num_threads(rx.get_num_threads())
    vocab, x, y = dataset(license_text(sizes["chars"]), sizes["T"])
    modules, model = models(len(vocab), sizes["I"], sizes["H"])
    runs = {"torch": torch_epoch(modules, x, y, sizes["B"], sizes["lr"]),
            "rnnext": rnnext_epoch(model, x, y, sizes["B"], sizes["lr"])}
    times: Dict[str, List[float]] = {name: [] for name in runs}
    losses: Dict[str, List[float]] = {name: [] for name in runs}
    print(f"vocabulary {len(vocab)}, {x.shape[0]} sequences of {sizes['T']}, "
          f"{-(-x.shape[0] // sizes['B'])} batches an epoch" + (", one core busy" if busy else ""))
    with busy_core(busy):
        for r in range(rounds):
            for name, run in (runs.items() if r % 2 == 0 else reversed(list(runs.items()))):
                start = time.perf_counter()
                losses[name].append(run())
                times[name].append(time.perf_counter() - start)
            print(f"  round {r + 1}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms (loss {losses[n][-1]:.4f})"
                                                   for n in runs))
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="one core kept busy by another process")
    args = parser.parse_args(argv)
    times = measure(args.rounds, args.busy)
    t, r = statistics.median(times["torch"]), statistics.median(times["rnnext"])
    print(f"epoch, median of {args.rounds}: rnnext {r * 1e3:.0f} ms, torch {t * 1e3:.0f} ms: "
          f"rnnext {t / r:.2f}x torch's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
