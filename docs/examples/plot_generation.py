"""
Generation: continuing a sine wave
==================================

One to many: an LSTM learns to predict the next value of sine waves of
different phases, then :meth:`~rnnext.models.RecurrentModel.generate` runs a
prompt and feeds each output back as the next input (``mode="continuous"``).
The generated values follow the wave the prompt began.
"""

import matplotlib.pyplot as plt
import numpy as np

import rnnext as rx

t = np.arange(0, 40, 0.1, dtype=np.float32)
phases = np.linspace(0, 2 * np.pi, 32, endpoint=False)
waves = np.stack([np.sin(t + phase) for phase in phases])[:, :, None]  # (32, 400, 1)

model = rx.LSTM(1, 16, output_size=1, seed=0)  # output_size == input_size: outputs are fed back
history = model.fit(waves[:, :-1], waves[:, 1:], loss="mse", epochs=60, batch_size=4, lr=1e-2,
                    seed=0, progress=False)

prompt_steps, steps = 100, 150
prompt = np.sin(t[:prompt_steps] + 1.0)[None, :, None]  # a phase it did not train on
future = model.generate(prompt, steps)                  # (1, 150, 1)

fig, ax = plt.subplots(figsize=(8, 3.4))
ax.plot(t[:prompt_steps], prompt[0, :, 0], label="prompt")
ax.plot(t[prompt_steps:prompt_steps + steps], future[0, :, 0], label="generated")
ax.plot(t[prompt_steps:prompt_steps + steps], np.sin(t[prompt_steps:prompt_steps + steps] + 1.0), ":",
        color="grey", label="the true continuation")
ax.set_xlabel("t")
ax.legend(loc="lower left", fontsize=8)
fig.tight_layout()

error = np.abs(future[0, :, 0] - np.sin(t[prompt_steps:prompt_steps + steps] + 1.0))
print(f"final training loss {history['loss'][-1]:.2e}; generated error: first 50 steps max {error[:50].max():.3f}, "
      f"all {steps} max {error.max():.3f}")
