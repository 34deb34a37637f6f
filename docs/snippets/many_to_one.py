import numpy as np
import rnnext as rx

# Many-to-one: is the sum of a sequence positive? One label per sequence.
rng = np.random.default_rng(0)
x = rng.standard_normal((256, 30, 1), dtype=np.float32)
y = (x.sum(axis=(1, 2)) > 0).astype(np.int64)              # (B,) class ids

model = rx.GRU(1, 32, output_size=2, seed=0)
model.fit(x, y, loss="cross_entropy", epochs=30, lr=1e-2, seed=0, progress=False)
logits, _ = model(x, return_sequences=False)               # (256, 2): one row per sequence
print("accuracy", np.mean(logits.argmax(axis=1) == y))
