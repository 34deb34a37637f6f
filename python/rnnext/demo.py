"""``python -m rnnext demo``: one small model for each application shape of
the article (many to one, one to many, many to many: a sequence-to-sequence
"translation"), trained from scratch, and the story of exploding and
vanishing gradients on a long dependency. The many-to-one part classifies
scikit-learn's handwritten digits when scikit-learn is installed (a task
generated here otherwise); the one-to-many part is a character language
model of the license texts NumPy installs (a sine wave when they are
missing); the translation trains on data generated here. Every token goes in
as an id (``vocab_size``): no one-hot anywhere."""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .functional import rnn, rnn_backward
from .models import LSTM, RNN
from .seq2seq import Seq2Seq

VOCAB = 10


def order_data(rng: np.random.Generator, n: int, steps: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """Token ids (n, steps), label 1 when in ascending order, 0 when the same
    tokens are jumbled: the label depends on order, not content."""
    tokens = np.sort(rng.integers(0, VOCAB, (n, steps)), axis=1)
    labels = rng.integers(0, 2, n)
    for i in np.flatnonzero(labels == 0):
        while np.all(np.diff(tokens[i]) >= 0):  # reshuffle until out of order
            if tokens[i].min() == tokens[i].max():
                tokens[i, 0] = (tokens[i, 0] + 1) % VOCAB  # all equal: make it unsortable by shuffling
            rng.shuffle(tokens[i])
    return tokens, labels


def digits_data(rng: np.random.Generator) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's handwritten digits (1797 images of 8x8 pixels, bundled
    with scikit-learn: nothing is downloaded) read row by row, (n, 8, 8):
    8 steps of 8 pixels scaled to [0, 1], shuffled; None without scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    digits = load_digits()
    order = rng.permutation(len(digits.target))
    return (digits.images[order] / 16).astype(np.float32), digits.target[order]


def many_to_one(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    data = digits_data(rng)
    if data is None:
        return many_to_one_synthetic(rng, say)
    x, y = data
    n_train = 1437  # 80 % to train, the other 360 images held out
    say("1. Many to one: which digit is this 8x8 image, read one row of pixels per step? "
        "(scikit-learn's digits)")
    model = LSTM(8, 64, 10, seed=0)
    start = time.perf_counter()
    history = model.fit(x[:n_train], y[:n_train], loss="cross_entropy", epochs=15, batch_size=32, lr=3e-3,
                        validation_data=(x[n_train:], y[n_train:]), seed=0, progress=False)
    seconds = time.perf_counter() - start
    predicted = model(x[n_train:], return_sequences=False)[0].argmax(-1)
    accuracy = np.mean(predicted == y[n_train:])
    say(f"   LSTM(8, 64, 10), 15 epochs on {n_train} images ({seconds:.1f} s): "
        f"held-out accuracy {accuracy:.1%} on {len(y) - n_train} images (chance 10%)")
    shade = " .:-=+*#%@"
    for row in range(8):  # the first held-out image, as the model read it: one step per line
        pixels = "".join(shade[int(v * 9.99)] * 2 for v in x[n_train, row])
        say(f"   step {row + 1}: {pixels}" + (f"   -> read as {predicted[0]} (it is {y[n_train]})" if row == 7 else ""))
    return history


def many_to_one_synthetic(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    """The many-to-one part without scikit-learn: a task generated here."""
    say("1. Many to one: is a sequence of 8 tokens in ascending order, or jumbled?")
    say("   (pip install scikit-learn to classify its handwritten digits instead)")
    x, y = order_data(rng, 6000)
    model = RNN(16, 48, 2, vocab_size=VOCAB, seed=0)
    history = model.fit(x[:5000], y[:5000], loss="cross_entropy", epochs=15, batch_size=32, lr=3e-3,
                        validation_data=(x[5000:], y[5000:]), seed=0, progress=False)
    accuracy = np.mean(model(x[5000:], return_sequences=False)[0].argmax(-1) == y[5000:])
    say(f"   RNN(16, 48, 2, vocab_size={VOCAB}), 15 epochs: held-out accuracy {accuracy:.1%} (chance 50%)")
    example = np.array([[1, 2, 2, 5, 6, 8, 9, 9], [2, 9, 5, 1, 8, 2, 6, 9]])  # the second shuffled as the jumbled training data are
    verdict = model(example, return_sequences=False)[0].argmax(-1)
    for seq, v in zip(example, verdict):
        say(f"   {' '.join(map(str, seq))}  ->  {'in order' if v else 'jumbled'}")
    return history


def waves(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    omega = rng.uniform(0.15, 0.45, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    return np.sin(omega * np.arange(steps + 1) + phase)[..., None].astype(np.float32)


def license_text(chars: Optional[int] = None) -> str:
    """The license texts NumPy installs with itself (about 96 k characters of
    English: real text on every machine rnnext runs on), joined; "" when an
    installation left them out."""
    import importlib.metadata

    try:
        files = importlib.metadata.files("numpy") or []
    except importlib.metadata.PackageNotFoundError:
        return ""
    texts = []
    for f in sorted((f for f in files if "LICENSE" in f.name.upper()), key=str):
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return "".join(texts)[:chars]


def one_to_many(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    text = license_text(60_000)
    if len(text) < 20_000:
        return one_to_many_waves(rng, say)
    say("\n2. One to many: a character language model of NumPy's license texts, writing on from a prompt")
    vocab = sorted(set(text))
    ids = np.searchsorted(np.array(vocab), np.array(list(text)))
    T, cut = 64, len(ids) * 9 // 10  # the last 10 % held out
    def windows(part: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        n = (len(part) - 1) // T
        return part[:n * T].reshape(n, T), part[1:n * T + 1].reshape(n, T)
    x, y = windows(ids[:cut])
    x_test, y_test = windows(ids[cut:])
    V = len(vocab)
    model = LSTM(32, 128, V, vocab_size=V, seed=0)  # token ids in: an embedding of 32, no one-hot
    start = time.perf_counter()
    history = model.fit(x, y, loss="cross_entropy", epochs=6, batch_size=32, lr=1e-2, clip_norm=1.0, seed=0,
                        progress=False)
    seconds = time.perf_counter() - start
    bits = model.evaluate(x_test, y_test, loss="cross_entropy") / np.log(2)
    counts = np.bincount(ids[:cut], minlength=V) / cut
    unigram = -np.mean(np.log2(np.maximum(counts[y_test], 1e-12)))
    say(f"   LSTM(32, 128, {V}, vocab_size={V}), 6 epochs on {cut} characters ({seconds:.1f} s): "
        f"held-out {bits:.2f} bits per character (character frequencies alone: {unigram:.2f})")
    prompt = "Redistribution and use in source and binary forms"
    prompt_ids = np.searchsorted(np.array(vocab), np.array(list(prompt)))
    written = model.generate(prompt_ids, 120, mode="sample", temperature=0.7, top_k=5, seed=0)
    say(f"   {prompt!r} ->")
    say(f"   {''.join(vocab[i] for i in written)!r}")
    return history


def one_to_many_waves(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    """The one-to-many part without NumPy's license files: a task generated here."""
    say("\n2. One to many: continue a sine wave of unknown frequency and phase from its first 12 values")
    train = waves(rng, 2000, 60)
    model = RNN(1, 32, 1, seed=1)
    history = model.fit(train[:, :-1], train[:, 1:], loss="mse", epochs=40, batch_size=32, lr=5e-3, seed=0,
                        progress=False)
    test = waves(rng, 200, 52)
    prompt, future = test[:, :12], test[:, 12:52]
    generated = model.generate(prompt, 40)
    error = np.sqrt(np.mean((generated - future) ** 2))
    hold = np.sqrt(np.mean((prompt[:, -1:] - future) ** 2))
    say("   RNN(1, 32, 1) trained on next-step prediction, then generating 40 steps from its own outputs:")
    say(f"   RMS error {error:.3f} (repeating the last prompt value: {hold:.3f}; the wave's amplitude is 1)")
    row = " ".join(f"{v:+.2f}" for v in generated[0, :8, 0])
    say(f"   generated: {row} ...")
    say(f"   true:      {' '.join(f'{v:+.2f}' for v in future[0, :8, 0])} ...")
    return history


ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
WORDS = ["<bos>", "<eos>"] + ONES + TENS + ["hundred"]
BOS, EOS = 0, 1


def number_words(n: int) -> List[str]:
    """0 <= n < 1000 in English words: 'three hundred twenty one'."""
    out = []
    if n >= 100:
        out += [ONES[n // 100], "hundred"]
        n %= 100
        if n == 0:
            return out
    if n < 20:
        return out + [ONES[n]]
    return out + [TENS[n // 10 - 2]] + ([ONES[n % 10]] if n % 10 else [])


def translation_data(numbers: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digit ids (B, 3) and word ids ending with <eos> (B, 5), with lengths."""
    src = np.zeros((len(numbers), 3), np.int64)
    tgt = np.full((len(numbers), 5), EOS, np.int64)
    src_lengths = np.zeros(len(numbers), np.int64)
    tgt_lengths = np.zeros(len(numbers), np.int64)
    for i, n in enumerate(numbers):
        digits = [int(c) for c in str(n)]
        words = [WORDS.index(w) for w in number_words(int(n))] + [EOS]
        src[i, :len(digits)], src_lengths[i] = digits, len(digits)
        tgt[i, :len(words)], tgt_lengths[i] = words, len(words)
    return src, src_lengths, tgt, tgt_lengths


def many_to_many(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    say("\n3. Many to many: translate numbers written in digits into words (1 to 3 digits -> 1 to 4 words)")
    numbers = rng.permutation(1000)
    src, src_lengths, tgt, tgt_lengths = translation_data(numbers[:800])
    test_src, test_src_lengths, test_tgt, test_tgt_lengths = translation_data(numbers[800:])
    # Ids on both sides: each model looks its tokens up in its own embedding table.
    model = Seq2Seq(LSTM(16, 64, vocab_size=10, seed=1), LSTM(16, 64, len(WORDS), vocab_size=len(WORDS), seed=2))
    history = model.fit(src, tgt, bos=BOS, src_lengths=src_lengths, tgt_lengths=tgt_lengths, epochs=16,
                        batch_size=32, lr=1e-2, seed=0, progress=False)
    out = model.translate(test_src, 6, bos=BOS, eos=EOS, src_lengths=test_src_lengths)
    said = [list(row[:list(row).index(EOS)]) if EOS in row else list(row) for row in out]
    exact = np.mean([s == list(t[:n - 1]) for s, t, n in zip(said, test_tgt, test_tgt_lengths)])
    say(f"   Seq2Seq(LSTM(16, 64, vocab_size=10), LSTM(16, 64, 32, vocab_size=32)), 16 epochs on 800 numbers: "
        f"held-out exact match {exact:.1%} (200 numbers never seen)")
    for i in range(3):
        say(f"   {''.join(map(str, test_src[i, :test_src_lengths[i]]))}  ->  {' '.join(WORDS[w] for w in said[i])}")
    return history


def gradient_norms_per_step(W_x: np.ndarray, W_h: np.ndarray, x: np.ndarray, activation: str) -> np.ndarray:
    """||d h_T / d x_t|| for every t: how much the last state hears each input."""
    _, h_n, cache = rnn(x, W_x, W_h, activation=activation, return_cache=True)
    dx = rnn_backward(cache, dh_n=np.ones_like(h_n))["x"]
    norms: np.ndarray = np.linalg.norm(dx, axis=(0, 2))
    return norms


def long_dependency(rng: np.random.Generator, n: int, steps: int) -> Tuple[np.ndarray, np.ndarray]:
    """Targets +-1, the sign of the first input: the answer must travel `steps` steps."""
    x = rng.standard_normal((n, steps, 1)).astype(np.float32) * 0.5
    y = (x[:, 0, 0] > 0).astype(np.float64)[:, None] * 2 - 1
    return x, y


def gradients(rng: np.random.Generator, say: Callable[[str], None]) -> Dict[str, List[float]]:
    H, T = 32, 50
    say(f"\n4. Exploding and vanishing gradients: remember the sign of the first of {T} inputs")
    x, y = long_dependency(rng, 1024, T)
    q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    W_x = rng.uniform(-1, 1, (H, 1)).astype(np.float32)
    shown = [0, 10, 20, 30, 40, 49]
    say(f"   How much the last state hears input t, ||d h_T / d x_t||, at t = {shown}:")
    for label, W_h, act in [("tanh, W_h = 0.5 Q (vanishes)", 0.5 * q, "tanh"),
                            ("relu, W_h = I (carries)", np.eye(H), "relu"),
                            ("relu, W_h = 1.2 I (explodes)", 1.2 * np.eye(H), "relu")]:
        norms = gradient_norms_per_step(W_x, W_h.astype(np.float32), x[:64], act)
        say(f"     {label:30s}" + " ".join(f"{norms[t]:9.2e}" for t in shown))

    say("   Training a relu RNN with W_h = I (SGD, lr 0.003, 40 epochs), with and without clipping:")
    histories = {}
    for clip in (None, 1.0):
        model = RNN(1, H, 1, activation="relu", seed=2)
        model.W_h = np.eye(H)
        _, grads = model.loss_and_grads(x[:32], y[:32])
        norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
        name = "without clipping" if clip is None else f"clip_norm={clip}"
        try:
            history = model.fit(x, y, loss="mse", epochs=40, batch_size=32, optimizer="sgd", lr=0.003,
                                clip_norm=clip, seed=0, progress=False)
        except FloatingPointError as e:
            say(f"     {name:17s} first gradient norm {norm:8.2e}: diverged ({e})")
            continue
        histories[name] = history["loss"]
        accuracy = np.mean(np.sign(model(x, return_sequences=False)[0]) == y)
        say(f"     {name:17s} first gradient norm {norm:8.2e}; loss {history['loss'][0]:9.3g} -> "
            f"{history['loss'][-1]:.3g} (worst epoch {max(history['loss']):.3g}); accuracy {accuracy:.1%}")
    say("   Clipping caps each update, so one exploding gradient cannot throw the weights away.")
    return histories


def main(plot: Optional[str] = None, say: Callable[[str], None] = print) -> int:
    start = time.perf_counter()
    curves = {"many to one (cross-entropy)": many_to_one(np.random.default_rng(0), say)["loss"],
              "one to many (mse)": one_to_many(np.random.default_rng(1), say)["loss"],
              "many to many (cross-entropy)": many_to_many(np.random.default_rng(3), say)["loss"]}
    for name, losses in gradients(np.random.default_rng(2), say).items():
        curves[f"long dependency, {name} (mse)"] = losses
    say(f"\nTrained in {time.perf_counter() - start:.1f} s.")
    if plot:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            say("--plot needs matplotlib: pip install matplotlib")
            return 1
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, losses in curves.items():
            ax.plot(np.arange(1, len(losses) + 1), losses, label=name)
        ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="rnnext demo")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        say(f"Loss curves written to {plot}")
    return 0
