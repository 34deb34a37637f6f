import numpy as np
import rnnext as rx

# Backpropagation through time by hand: how much does the last state hear each input?
rng = np.random.default_rng(0)
I, H, T = 4, 32, 50
x = rng.standard_normal((8, T, I), dtype=np.float32)
W_x = rng.uniform(-0.5, 0.5, (H, I)).astype(np.float32)
W_h = (0.9 * np.linalg.qr(rng.standard_normal((H, H)))[0]).astype(np.float32)  # spectral radius 0.9

h_seq, h_n, cache = rx.functional.rnn(x, W_x, W_h, activation="tanh", return_cache=True)
grads = rx.functional.rnn_backward(cache, dh_n=np.ones_like(h_n))   # dL/dh_T = 1, nothing else
per_step = np.linalg.norm(grads["x"], axis=(0, 2))                  # ||dh_T / dx_t|| for every t
print(per_step[[0, 10, 25, 40, 49]])                                # shrinks going back in time
assert per_step[0] < 1e-2 * per_step[-1]
