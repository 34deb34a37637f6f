import numpy as np
import rnnext as rx

model = rx.GRU(6, 24, output_size=2, num_layers=2, seed=0)
x = np.random.default_rng(0).standard_normal((3, 40, 6), dtype=np.float32)

out, h_n = model(x)                            # the whole sequences at once

state = model.initial_state(batch_size=3)      # zeros, shaped like h_n: (2, 3, 24)
for t in range(40):                            # one step per call, every layer
    y_t, state = model.step(x[:, t], state)
assert np.allclose(y_t, out[:, -1], atol=1e-5) and np.allclose(state, h_n, atol=1e-5)

# Continue a sequence from where a call left off; reset one stream by zeroing its row.
_, state = model(x[:, :30])
y_t, state = model.step(x[:, 30], state)
state[:, 1] = 0.0                              # stream 1 starts afresh at the next step
