import numpy as np
import rnnext as rx

rng = np.random.default_rng(0)
x = rng.standard_normal((200, 15, 4), dtype=np.float32)
y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int64)        # one class per sequence
xv, yv = x[160:], y[160:]

model = rx.LSTM(4, 32, output_size=2, seed=0)
opt = rx.optim.AdamW(lr=1e-2, weight_decay=1e-2)           # keeps its state across fit calls
history = model.fit(
    x[:160], y[:160], loss="cross_entropy", epochs=15, batch_size=32, optimizer=opt,
    lr=lambda epoch: 1e-2 * 0.9**epoch,                    # a schedule: epoch -> learning rate
    clip_norm=1.0, metrics=["accuracy"], validation_data=(xv, yv),
    callbacks=[rx.callbacks.EarlyStopping(monitor="val_loss", patience=3)],
    seed=0, progress=False)
print(list(history), history["val_accuracy"][-1])          # loss, accuracy, val_loss, val_accuracy
print(model.evaluate(xv, yv, loss="cross_entropy", metrics=["accuracy"]))   # a dict with metrics

# One gradient by hand: the loss and the gradient of every parameter, keyed like params.
loss, grads = model.loss_and_grads(x[:8], y[:8], loss="cross_entropy")
assert set(grads) == set(model.params)

# Per-step targets and truncated BPTT: the state crosses chunks of 5 steps, the gradient does not.
per_step = (np.cumsum(x[:, :, 0], axis=1) > 0).astype(np.int64)   # (B, T) class ids
model.fit(x, per_step, loss="cross_entropy", epochs=2, tbptt=5, seed=0, progress=False)
