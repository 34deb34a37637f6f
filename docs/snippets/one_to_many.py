import numpy as np
import rnnext as rx

# One-to-many: learn a sine wave step by step, then let the model continue it alone.
t = np.arange(0, 40, 0.1, dtype=np.float32)
waves = np.stack([np.sin(t + phase) for phase in np.linspace(0, 6, 32)])[:, :, None]  # (32, 400, 1)

model = rx.LSTM(1, 16, output_size=1, seed=0)              # output_size == input_size: fed back
model.fit(waves[:, :-1], waves[:, 1:], loss="mse", epochs=60, batch_size=4, lr=1e-2,
          seed=0, progress=False)                          # predict every next value
future = model.generate(waves[:1, :100], 50)               # (1, 50, 1): each output is the next input
print("error over 50 generated steps", np.abs(future[0, :, 0] - waves[0, 100:150, 0]).max())
