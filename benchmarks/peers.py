"""Every implementation the benchmarks time: rnnext.bench's (rnnext, NumPy with the input
product hoisted, torch, onnxruntime) plus the ones only the source tree times: the
textbook NumPy loop, rnnext.functional (packs the weights on every call) and jax.

``PEERS[kind][name]`` (kind "forward", "training" or "step") is a factory taking an
``rnnext.bench.Problem`` and returning the function to time; it raises
``rnnext.bench.Unavailable`` when its library is missing. Columns follow this order.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from rnnext import bench, functional
from rnnext.bench import cell_step, need, zero_state

Factory = Callable[[bench.Problem], Callable[[], Any]]


def numpy_loop(p: bench.Problem) -> Callable[[], Any]:
    """The textbook loop: both products and both biases at every step."""

    def run():
        state = zero_state(p)
        for t in range(p.shape[1]):
            state = cell_step(p.cell, p.x[:, t] @ p.W_x.T + p.b_x, state[0] @ p.W_h.T + p.b_h, state)
        return state

    return run


def rnnext_functional(p: bench.Problem) -> Callable[[], Any]:
    """rnnext.functional.rnn / lstm / gru: packs the weights on every call."""
    fn = getattr(functional, p.cell)
    return lambda: fn(p.x, *p.weights)[1]


def _jax(p: bench.Problem):
    jax = need("jax")
    need("jax.numpy")
    if p.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    # XLA fuses the gate arithmetic of LSTM/GRU into the recurrent product's loop
    # (2-8x slower) unless kept apart; the Elman RNN needs no barrier.
    barrier = (lambda a: a) if p.cell == "rnn" else jax.lax.optimization_barrier
    return jax, jax.numpy, barrier


def jax_forward(p: bench.Problem) -> Callable[[], Any]:
    """jax.lax.scan under jit, the input product hoisted out of the loop."""
    jax, jnp, barrier = _jax(p)
    cell = p.cell
    args = [jnp.asarray(a) for a in (p.x, *p.weights)]
    state0 = tuple(jnp.asarray(s) for s in zero_state(p))

    @jax.jit
    def forward(x, W_x, W_h, b_x, b_h, state):
        gx = jnp.einsum("bti,gi->tbg", x, W_x) + b_x
        W_h_T = W_h.T

        def step(state, gx_t):
            return cell_step(cell, gx_t, barrier(state[0] @ W_h_T + b_h), state, jnp), None

        return jax.lax.scan(step, state, gx)[0]

    return lambda: jax.block_until_ready(forward(*args, state0))


def jax_step(p: bench.Problem) -> Callable[[], Any]:
    jax, jnp, barrier = _jax(p)
    cell = p.cell
    step = jax.jit(lambda x, state, W_x, W_h, b_x, b_h: cell_step(
        cell, x @ W_x.T + b_x, barrier(state[0] @ W_h.T + b_h), state, jnp))
    args = [jnp.asarray(p.x[:, 0]), tuple(jnp.asarray(s) for s in zero_state(p))]
    args += [jnp.asarray(a) for a in p.weights]
    return lambda: jax.block_until_ready(step(*args))


PEERS: Dict[str, Dict[str, Factory]] = {
    "forward": {"rnnext": bench.PEERS["forward"]["rnnext"], "rnnext.functional": rnnext_functional,
                **{name: f for name, f in bench.PEERS["forward"].items() if name != "rnnext"},
                "numpy_loop": numpy_loop, "jax": jax_forward},
    "training": dict(bench.PEERS["training"]),
    "step": {**bench.PEERS["step"], "jax": jax_step},
}
