import numpy as np
import rnnext as rx

# A character model of a short text: ids in, logits over the vocabulary out.
text = "the quick brown fox jumps over the lazy dog. " * 40
vocab = sorted(set(text))
ids = np.array([vocab.index(c) for c in text])
windows = np.stack([ids[i:i + 33] for i in range(0, len(ids) - 33, 7)])   # (B, 33)

V = len(vocab)
model = rx.LSTM(16, 64, V, vocab_size=V, seed=0)           # embedding (V, 16) -> LSTM -> V logits
model.fit(windows[:, :-1], windows[:, 1:], loss="cross_entropy", epochs=15, lr=1e-2,
          seed=0, progress=False)

prompt = np.array([[vocab.index(c) for c in "the quick "]])   # (1, 10) ids
greedy = model.generate(prompt, 30, mode="greedy")            # (1, 30) int64 ids
sampled = model.generate(prompt, 30, mode="sample", temperature=0.8, top_k=5, seed=0)
nucleus = model.generate(prompt, 30, mode="sample", top_p=0.9, eos=vocab.index("."), seed=0)
for row in (greedy, sampled, nucleus):
    print(repr("".join(vocab[i] for i in row[0])))
