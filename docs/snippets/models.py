import numpy as np
import rnnext as rx

x = np.random.default_rng(0).standard_normal((4, 10, 8), dtype=np.float32)   # (B, T, I)

rnn = rx.RNN(8, 16, output_size=3, activation="relu", seed=0)
out, h_n = rnn(x)                              # out (4, 10, 3), h_n (1, 4, 16)
last, _ = rnn(x, return_sequences=False)       # (4, 3): one row per sequence
print(rnn, out.shape, h_n.shape, last.shape)

lstm = rx.LSTM(8, 16, num_layers=2, bidirectional=True, seed=0)   # no head: outputs are states
out, (h_n, c_n) = lstm(x)                      # out (4, 10, 2*16), h_n and c_n (2*2, 4, 16)
print(sorted(lstm.params)[:4], lstm.params["W_x_l1_reverse"].shape)   # (4*16, 2*16)

# Variable lengths: padding at the end; outputs past a length are exactly zero.
lengths = np.array([10, 7, 3, 1])
out, (h_n, c_n) = lstm(x, lengths=lengths)
assert not out[2, 3:].any()

# Parameters are read-only arrays; assign a new one to change it (shape-checked).
gru = rx.GRU(8, 16, output_size=2, seed=0)
gru.W_h = gru.W_h * 0.5                        # the same as gru.params["W_h_l0"] = ...
clone = rx.GRU.from_config(gru.config)         # same configuration, new weights
clone.load_state_dict(gru.state_dict())        # now the same weights too
assert np.array_equal(clone(x)[0], gru(x)[0])
