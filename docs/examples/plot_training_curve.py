"""
A training curve: handwritten digits read row by row
====================================================

Each 8 x 8 image of scikit-learn's digits is a sequence of 8 steps of 8
pixels; an LSTM reads it and classifies the sequence from its last state
(many to one). ``fit`` records the training loss and, with
``validation_data``, the held-out loss and accuracy after every epoch.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

import rnnext as rx

digits = load_digits()
x = (digits.images / 16).astype(np.float32)  # (1797, 8, 8): 8 steps of 8 pixels
y = digits.target                            # one class per sequence
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:1437], order[1437:]

model = rx.LSTM(8, 64, output_size=10, seed=0)
history = model.fit(x[train], y[train], loss="cross_entropy", epochs=25, batch_size=32,
                    optimizer=rx.optim.Adam(lr=3e-3), metrics=["accuracy"],
                    validation_data=(x[test], y[test]), seed=0, progress=False)

epochs = np.arange(1, len(history["loss"]) + 1)
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
left.plot(epochs, history["loss"], label="training")
left.plot(epochs, history["val_loss"], label="held out")
left.set_xlabel("epoch")
left.set_ylabel("cross-entropy")
left.set_yscale("log")
left.legend()
right.plot(epochs, history["accuracy"], label="training")
right.plot(epochs, history["val_accuracy"], label="held out")
right.set_xlabel("epoch")
right.set_ylabel("accuracy")
right.legend()
fig.suptitle("LSTM(8, 64, 10) on digits, 1437 training and 360 held-out images")
fig.tight_layout()

print(f"held-out accuracy after {len(epochs)} epochs: {history['val_accuracy'][-1]:.3f}")
