"""The implementations ``python -m rnnext bench`` times, registered in ``PEERS``: rnnext,
NumPy (the input product hoisted out of the loop, written plainly), PyTorch and ONNX
Runtime. Each factory takes a :class:`Problem` and returns a function to time, or raises
:class:`Unavailable` (an ImportError) when it cannot run here. The source tree's
``benchmarks/peers.py`` adds more (jax, a textbook NumPy loop, ``rnnext.functional``).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Tuple

import numpy as np

from . import _core, functional, models, reference

Case = Tuple[int, int, int, int]  # B, T, I, H
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-10)}  # rtol, atol against float64
Factory = Callable[["Problem"], Callable[[], Any]]


class Unavailable(ImportError):
    """A peer that cannot run here: its library is missing or lacks the dtype."""


def need(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable(f"{module} is not installed") from e


class Problem:
    """Random weights (G gate blocks, PyTorch's scale) and inputs of one size."""

    def __init__(self, batch: int, steps: int, input_size: int, hidden_size: int, seed: int = 0,
                 cell: str = "rnn", dtype: str = "float32"):
        if cell not in GATES:
            raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {cell!r}")
        rng = np.random.default_rng(seed)
        G, k = GATES[cell] * hidden_size, 1 / np.sqrt(hidden_size)
        self.cell, self.dtype = cell, np.dtype(dtype)
        self.shape: Case = (batch, steps, input_size, hidden_size)
        self.x = rng.standard_normal((batch, steps, input_size)).astype(self.dtype)
        self.weights = tuple(rng.uniform(-k, k, s).astype(self.dtype)
                             for s in ((G, input_size), (G, hidden_size), G, G))
        self.W_x, self.W_h, self.b_x, self.b_h = self.weights

    def check(self, name: str, h: Any) -> None:
        """Raises AssertionError unless h ((B, H) in any wrapping) matches the float64
        reference on the first, middle and last sequence."""
        rows = sorted({0, self.shape[0] // 2, self.shape[0] - 1})
        w = [a.astype(np.float64) for a in self.weights]
        expected = getattr(reference, self.cell)(self.x[rows].astype(np.float64), *w)[1]
        expected = expected[0] if self.cell == "lstm" else expected
        got = np.asarray(first(h), np.float64).reshape(self.shape[0], -1)[rows]
        rtol, atol = TOLERANCE[self.dtype.name]
        error = np.max(np.abs(got - expected) - rtol * np.abs(expected))
        if not error < atol:
            raise AssertionError(f"{name} ({self.cell}) disagrees with rnnext.reference at {self.shape}: "
                                 f"error {error:.2e}")


def first(result: Any) -> np.ndarray:
    """h out of whatever an implementation returns: (y, state), (h, c), a tensor..."""
    while isinstance(result, (tuple, list)):
        result = result[0]
    return np.asarray(result.detach() if hasattr(result, "detach") else result)


# ---------------------------------------------------------------- NumPy, written plainly


def sigmoid(z: Any, xp: Any = np) -> Any:
    return 0.5 * xp.tanh(0.5 * z) + 0.5  # no overflow for any z


def cell_step(cell: str, gx: Any, gh: Any, state: Tuple[Any, ...], xp: Any = np) -> Tuple[Any, ...]:
    """The next state, (h,) or (h, c), from gx = W_x x_t + b_x and gh = W_h h + b_h
    (PyTorch's equations; xp is numpy or jax.numpy)."""
    h = state[0]
    H = h.shape[-1]
    if cell == "rnn":
        return (xp.tanh(gx + gh),)
    if cell == "lstm":
        z = gx + gh
        c = sigmoid(z[:, H:2 * H], xp) * state[1] + sigmoid(z[:, :H], xp) * xp.tanh(z[:, 2 * H:3 * H])
        return (sigmoid(z[:, 3 * H:], xp) * xp.tanh(c), c)
    r = sigmoid(gx[:, :H] + gh[:, :H], xp)
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H], xp)
    n = xp.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return ((1 - z) * n + z * h,)


def zero_state(p: Problem) -> Tuple[np.ndarray, ...]:
    return tuple(np.zeros((p.shape[0], p.shape[3]), p.dtype) for _ in range(2 if p.cell == "lstm" else 1))


def numpy_forward(p: Problem) -> Callable[[], Any]:
    """The input product of every step as one matrix product, then the loop."""
    W_h_T = np.ascontiguousarray(p.W_h.T)

    def run() -> Any:
        gx = p.x @ p.W_x.T + p.b_x
        state = zero_state(p)
        for t in range(p.shape[1]):
            state = cell_step(p.cell, gx[:, t], state[0] @ W_h_T + p.b_h, state)
        return state

    return run


def numpy_step(p: Problem) -> Callable[[], Any]:
    W_x_T, W_h_T, x_t, state = np.ascontiguousarray(p.W_x.T), np.ascontiguousarray(p.W_h.T), p.x[:, 0], zero_state(p)
    return lambda: cell_step(p.cell, x_t @ W_x_T + p.b_x, state[0] @ W_h_T + p.b_h, state)


# ---------------------------------------------------------------- rnnext, torch, onnxruntime


def rnnext_model(p: Problem) -> Any:
    """An rnnext model holding the problem's weights (packed once, as models keep them)."""
    model = getattr(models, p.cell.upper())(p.shape[2], p.shape[3], dtype=p.dtype.name)
    model.load_state_dict(dict(zip(("W_x_l0", "W_h_l0", "b_x_l0", "b_h_l0"), p.weights)))
    return model


def rnnext_forward(p: Problem) -> Callable[[], Any]:
    model = rnnext_model(p)
    return lambda: model(p.x)[1]


def rnnext_step(p: Problem) -> Callable[[], Any]:
    model = rnnext_model(p)
    x_t, state = p.x[:, 0], model.initial_state(p.shape[0])
    return lambda: model.step(x_t, state)


def rnnext_training(p: Problem) -> Callable[[], Any]:
    """Forward, then backward of sum(h_seq) (every gradient); returns dL/dW_h."""
    forward, backward = getattr(functional, p.cell), getattr(functional, p.cell + "_backward")
    ones = np.ones(p.shape[:2] + (p.shape[3],), p.dtype)
    return lambda: backward(forward(p.x, *p.weights, return_cache=True)[-1], ones)["W_h"]


def torch_module(p: Problem, kind: str = "") -> Tuple[Any, Any]:
    """torch, and torch.nn.RNN/LSTM/GRU (kind "Cell": RNNCell...) with the problem's weights."""
    torch = need("torch")
    torch.set_num_threads(_core.get_num_threads())
    cls = getattr(torch.nn, p.cell.upper() + kind)
    module = cls(p.shape[2], p.shape[3], **({} if kind else {"batch_first": True})).to(getattr(torch, p.dtype.name))
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), p.weights):
            getattr(module, name + ("" if kind else "_l0")).copy_(torch.from_numpy(value))
    return torch, module


def torch_forward(p: Problem) -> Callable[[], Any]:
    torch, module = torch_module(p)
    x = torch.from_numpy(p.x)

    def run() -> Any:
        with torch.inference_mode():
            return module(x)[1]

    return run


def torch_step(p: Problem) -> Callable[[], Any]:
    torch, cell = torch_module(p, "Cell")
    x_t = torch.from_numpy(p.x[:, 0])
    state = tuple(torch.from_numpy(s) for s in zero_state(p))
    state = state if p.cell == "lstm" else state[0]

    def run() -> Any:
        with torch.inference_mode():
            return cell(x_t, state)

    return run


def torch_training(p: Problem) -> Callable[[], Any]:
    torch, module = torch_module(p)
    x = torch.from_numpy(p.x).requires_grad_(True)

    def run() -> Any:
        module.zero_grad()
        x.grad = None
        module(x)[0].sum().backward()
        return module.weight_hh_l0.grad

    return run


ONNX_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}  # i,o,f,c from i,f,g,o; z,r,h from r,z,n


def onnx_graph(p: Problem, output: str = "Y_h") -> bytes:
    """The single-node RNN/LSTM/GRU ONNX graph of a problem (time-major input, as ORT
    requires; GRU with linear_before_reset=1), returning ``Y_h`` (or ``Y``), checked."""
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    B, T, I, H = p.shape
    gates: Callable[[np.ndarray], np.ndarray] = lambda a: np.concatenate([np.split(a, GATES[p.cell])[k] for k in ONNX_GATE_ORDER[p.cell]])  # noqa: E731
    inits = [numpy_helper.from_array(a[None], n) for a, n in
             ((gates(p.W_x), "W"), (gates(p.W_h), "R"), (np.concatenate([gates(p.b_x), gates(p.b_h)]), "B"))]
    attrs: Dict[str, Any] = {"hidden_size": H, **({"linear_before_reset": 1} if p.cell == "gru" else {})}
    node = helper.make_node(p.cell.upper(), ["X", "W", "R", "B"], ["Y", "Y_h"], **attrs)
    shape = [1, B, H] if output == "Y_h" else [T, 1, B, H]
    graph = helper.make_graph([node], p.cell, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    serialized: bytes = model.SerializeToString()
    return serialized


def onnxruntime_session(model: bytes) -> Any:
    ort = need("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = _core.get_num_threads(), 1
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnxruntime_forward(p: Problem) -> Callable[[], Any]:
    """ONNX Runtime's fused RNN/LSTM/GRU operator. On T = 1 it is also the streaming peer."""
    need("onnx"), need("onnxruntime")
    if p.dtype != np.float32:
        raise Unavailable("onnxruntime's recurrent operators run float32 only")
    session = onnxruntime_session(onnx_graph(p))
    x = np.ascontiguousarray(p.x.transpose(1, 0, 2))
    return lambda: session.run(["Y_h"], {"X": x})[0]


# kind -> name -> factory; benchmarks/peers.py extends these. "numpy" is the hoisted loop.
PEERS: Dict[str, Dict[str, Factory]] = {
    "forward": {"rnnext": rnnext_forward, "numpy": numpy_forward, "torch": torch_forward,
                "onnxruntime": onnxruntime_forward},
    "training": {"rnnext": rnnext_training, "torch": torch_training},
    "step": {"rnnext": rnnext_step, "numpy": numpy_step, "torch": torch_step, "onnxruntime": onnxruntime_forward},
}
