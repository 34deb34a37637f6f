"""
Vanishing gradients: RNN against LSTM
=====================================

How much does a loss on the *last* step hear each input? Backpropagation
through time answers it: with the gradient of the loss set to one at the
last hidden state and zero elsewhere, the gradient with respect to input
:math:`x_t` measures how strongly step :math:`t` can still be learned from.

For an Elman RNN it is a product of :math:`T - t` Jacobians
:math:`\\operatorname{diag}(f'(z_k))\\, W_h`, so it shrinks geometrically going
back in time: the gradient *vanishes* (or, when those Jacobians are larger
than one, *explodes*). An LSTM's cell state is carried additively, scaled by
its forget gate: with PyTorch's initialisation that gate sits near
:math:`\\sigma(0) = 0.5` and the gradient still decays, but once the forget
gate is open (here a forget-gate bias of 3, a common initialisation that
training would otherwise have to find) it crosses the whole sequence.
A ReLU RNN whose recurrent weights are too large shows the opposite failure:
the gradient explodes going back, which ``fit(..., clip_norm=...)`` caps.
(The tanh RNN's gradient underflows float32 to zero before step 8, where
its curve leaves the plot.)

The gradients come from :func:`rnnext.functional.rnn_backward` and
:func:`rnnext.functional.lstm_backward` with the models' own weights.
"""

import matplotlib.pyplot as plt
import numpy as np

import rnnext as rx

T, I, H = 100, 8, 64
rng = np.random.default_rng(0)
x = rng.standard_normal((32, T, I), dtype=np.float32)


def norms_per_step(gradient_of_x):
    """||dL/dx_t|| over the batch and features, for every step t."""
    return np.linalg.norm(gradient_of_x, axis=(0, 2))


def rnn_norms(model, activation="tanh"):
    h_seq, _, cache = rx.functional.rnn(x, model.W_x, model.W_h, model.b_x, model.b_h,
                                        activation=activation, return_cache=True)
    dh_seq = np.zeros_like(h_seq)
    dh_seq[:, -1] = 1.0  # the loss reads the last step only
    return norms_per_step(rx.functional.rnn_backward(cache, dh_seq=dh_seq)["x"])


def lstm_norms(model, b_x):
    h_seq, _, cache = rx.functional.lstm(x, model.W_x, model.W_h, b_x, model.b_h, return_cache=True)
    dh_seq = np.zeros_like(h_seq)
    dh_seq[:, -1] = 1.0
    return norms_per_step(rx.functional.lstm_backward(cache, dh_seq=dh_seq)["x"])


curves = {}
rnn = rx.RNN(I, H, seed=0)
curves["RNN, tanh (PyTorch's initialisation)"] = rnn_norms(rnn)

# Every singular value of W_h 2 (about half the ReLU units pass each step): the gradient explodes.
exploding = rx.RNN(I, H, activation="relu", seed=0)
exploding.W_h = 2.0 * np.linalg.qr(rng.standard_normal((H, H)))[0]
curves["RNN, relu, W_h = 2 x orthogonal"] = rnn_norms(exploding, "relu")

lstm = rx.LSTM(I, H, seed=0)
curves["LSTM (PyTorch's initialisation)"] = lstm_norms(lstm, lstm.b_x)
open_gate = np.array(lstm.b_x)
open_gate[H:2 * H] += 3.0  # the f block of i, f, g, o
curves["LSTM, forget-gate bias + 3"] = lstm_norms(lstm, open_gate)

fig, ax = plt.subplots(figsize=(7, 4.2))
for label, norms in curves.items():
    ax.semilogy(np.arange(T), np.maximum(norms, 1e-30), label=label)
ax.set_xlabel("input step t (the loss is on step 99)")
ax.set_ylabel(r"$\|\partial L / \partial x_t\|$")
ax.set_title("Gradient reaching each input step")
ax.set_ylim(1e-25, 1e20)
ax.legend(fontsize=8)
fig.tight_layout()

for label, norms in curves.items():
    print(f"{label:40s} step 99: {norms[-1]:9.2e}   step 50: {norms[50]:9.2e}   step 0: {norms[0]:9.2e}")
