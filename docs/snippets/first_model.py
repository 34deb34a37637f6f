import numpy as np
import rnnext as rx

rng = np.random.default_rng(0)
x = rng.standard_normal((64, 20, 3), dtype=np.float32)     # 64 sequences, 20 steps, 3 features
y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)          # one class per sequence: 0 or 1

model = rx.LSTM(3, 32, output_size=2, seed=0)              # 3 inputs, 32 hidden units, 2 logits
out, (h_n, c_n) = model(x)                                 # out (64, 20, 2), h_n and c_n (1, 64, 32)
history = model.fit(x, y, loss="cross_entropy", epochs=20, lr=1e-2, metrics=["accuracy"],
                    seed=0, progress=False)                # (B,) targets: the last step is trained
print(history["loss"][0], "->", history["loss"][-1], "accuracy", history["accuracy"][-1])

model.save("first.safetensors")                            # safetensors, no pickle
same = rx.load("first.safetensors")
assert np.array_equal(same(x)[0], model(x)[0])             # bit for bit
