"""Speed of rnnext against its peers: ``python -m rnnext bench``.

For each cell (the float32 tanh Elman RNN, the LSTM and the GRU in PyTorch's
linear-before-reset form) every implementation runs with the same weights and
is checked against the float64 reference before it is timed. Timings are
interleaved (each round times every implementation once) and the best round's
median is reported, because shared machines drift. Ratios are only
meaningful between columns of one run.

Implementations are registered per cell: ``FORWARD_PEERS[cell]``,
``TRAINING_PEERS[cell]`` and ``STEP_PEERS[cell]`` map a name to a factory that
takes a :class:`Problem` and returns a function to time (or raises
ImportError when its library or rnnext's kernel for that cell is missing).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, models, reference

# (B, T, I, H) of the forward and training benchmarks: the rows of the speed
# issue and of PEERS.md, from latency-bound (B = 1) to matrix-product bound.
FORWARD_CASES: List[Tuple[int, int, int, int]] = [
    (1, 100, 64, 64), (1, 100, 256, 256), (1, 1000, 128, 128), (8, 100, 128, 128),
    (32, 100, 256, 256), (64, 50, 512, 512), (128, 50, 1024, 1024), (256, 20, 256, 256),
]
TRAINING_CASES = FORWARD_CASES
STEP_SIZE = 128  # I = H of the streaming benchmark, B = 1

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
TITLES = {"rnn": "float32 tanh RNN", "lstm": "float32 LSTM", "gru": "float32 GRU (linear before reset)"}

# Targets of the speed work (see the README).
CEILING_GFLOPS = 300.0  # fp32 matrix multiply on 2 threads of the reference machine
TARGET_STEP_US = {"rnn": 1.7}  # other cells: faster than every peer

Factory = Callable[["Problem"], Callable[[], Any]]


def flops(case: Tuple[int, int, int, int], gates: int = 1) -> float:
    """2 T B G H (I + H): the multiply-adds of a forward with G gate blocks."""
    B, T, I, H = case
    return 2.0 * T * B * gates * H * (I + H)


# ---------------------------------------------------------------- problems


class Problem:
    """Random float32 weights (G gate blocks) and inputs of one size, scaled like
    PyTorch's initialisation."""

    def __init__(self, batch: int, steps: int, input_size: int, hidden_size: int, seed: int = 0,
                 cell: str = "rnn"):
        if cell not in GATES:
            raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {cell!r}")
        rng = np.random.default_rng(seed)
        G = GATES[cell]
        k = 1 / np.sqrt(hidden_size)
        self.cell = cell
        self.gates = G
        self.shape = (batch, steps, input_size, hidden_size)
        self.x = rng.standard_normal((batch, steps, input_size)).astype(np.float32)
        self.W_x = rng.uniform(-k, k, (G * hidden_size, input_size)).astype(np.float32)
        self.W_h = rng.uniform(-k, k, (G * hidden_size, hidden_size)).astype(np.float32)
        self.b_x = rng.uniform(-k, k, G * hidden_size).astype(np.float32)
        self.b_h = rng.uniform(-k, k, G * hidden_size).astype(np.float32)
        self._reference: Optional[np.ndarray] = None

    @property
    def weights(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.W_x, self.W_h, self.b_x, self.b_h

    def input_bias(self, dtype=np.float32) -> np.ndarray:
        """The biases added to the input product, summed in ``dtype``: both,
        but b_hn for the GRU (which stays inside r * (W_hn h + b_hn))."""
        H = self.shape[3]
        b_h = self.b_h.astype(dtype)
        if self.cell == "gru":
            b_h[2 * H:] = 0
        return self.b_x.astype(dtype) + b_h

    def recurrent_bias(self, dtype=np.float32) -> Optional[np.ndarray]:
        """The bias added to the recurrent product: [0, 0, b_hn] for the GRU, else none."""
        if self.cell != "gru":
            return None
        H = self.shape[3]
        b = np.zeros(self.b_h.shape, dtype)
        b[2 * H:] = self.b_h[2 * H:]
        return b

    def reference_h_n(self) -> np.ndarray:
        """h_n in float64: every row by a batched float64 loop of the same
        equations, itself checked against ``rnnext.reference`` on the first
        and the last sequence (the reference's per-sequence loop is too slow
        for every row of the large cases)."""
        if self._reference is None:
            x64 = self.x.astype(np.float64)
            w64 = [a.astype(np.float64) for a in self.weights]
            batched = numpy_forward(self, np.float64)
            rows = sorted({0, self.shape[0] - 1})
            exact = _reference_h_n(self.cell, x64[rows], w64)
            if not np.allclose(batched[rows], exact, rtol=1e-10, atol=1e-12):
                raise AssertionError(f"the batched float64 loop disagrees with rnnext.reference at {self.shape}")
            self._reference = batched
        return self._reference


def _reference_h_n(cell: str, x: np.ndarray, w: Sequence[np.ndarray]) -> np.ndarray:
    out = getattr(reference, cell)(x, *w)[1]
    return out[0] if cell == "lstm" else out


# ---------------------------------------------------------------- the cells' arithmetic
# One step of each cell on a batch, written once for NumPy and jax.numpy (xp):
# gx is the input product with its biases (Problem.input_bias), state is (h,)
# or (h, c). jax passes an optimization barrier between the recurrent product
# and the gate arithmetic (see PEERS.md).


def _sigmoid(xp: Any, z: Any) -> Any:
    return 0.5 * xp.tanh(0.5 * z) + 0.5  # no overflow for any z


def _rnn_step(xp, gh, gx, state):
    return (xp.tanh(gx + gh),)


def _lstm_step(xp, gh, gx, state):
    H = state[0].shape[-1]
    z = gx + gh
    i, f, g, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
    c = _sigmoid(xp, f) * state[1] + _sigmoid(xp, i) * xp.tanh(g)
    return (_sigmoid(xp, o) * xp.tanh(c), c)


def _gru_step(xp, gh, gx, state):
    h = state[0]
    H = h.shape[-1]
    r = _sigmoid(xp, gx[:, :H] + gh[:, :H])
    z = _sigmoid(xp, gx[:, H:2 * H] + gh[:, H:2 * H])
    n = xp.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return ((1 - z) * n + z * h,)


CELL_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def cell_step(xp: Any, cell: str, gx: Any, state: Tuple, W_h_T: Any, b_rec: Any = None,
              barrier: Callable[[Any], Any] = lambda a: a) -> Tuple:
    """The next state: the recurrent product (+ GRU's b_hn), then the gates."""
    gh = state[0] @ W_h_T
    if b_rec is not None:
        gh = gh + b_rec
    return CELL_STEPS[cell](xp, barrier(gh), gx, state)


def zero_state(p: Problem, dtype=np.float32, batch: Optional[int] = None) -> Tuple:
    shape = (p.shape[0] if batch is None else batch, p.shape[3])
    return tuple(np.zeros(shape, dtype) for _ in range(2 if p.cell == "lstm" else 1))


def numpy_forward(p: Problem, dtype=np.float64) -> np.ndarray:
    """h_n by the batched loop in ``dtype`` (the float64 check of the peers)."""
    x, W_x, W_h = (a.astype(dtype) for a in (p.x, p.W_x, p.W_h))
    b_in, b_rec = p.input_bias(dtype), p.recurrent_bias(dtype)
    W_h_T = W_h.T
    state = zero_state(p, dtype)
    for t in range(x.shape[1]):
        state = cell_step(np, p.cell, x[:, t] @ W_x.T + b_in, state, W_h_T, b_rec)
    return state[0]


# ---------------------------------------------------------------- forward peers
# Each factory returns a function running the whole forward and returning h_n
# (B, H) as a NumPy array, or raises ImportError when its library is missing.


def numpy_loop(p: Problem) -> Callable[[], np.ndarray]:
    """The textbook loop: both products and both biases at every step."""
    x, W_x, W_h, b_in, b_rec = p.x, p.W_x, p.W_h, p.input_bias(), p.recurrent_bias()

    def run():
        state = zero_state(p)
        for t in range(x.shape[1]):
            state = cell_step(np, p.cell, x[:, t] @ W_x.T + b_in, state, W_h.T, b_rec)
        return state[0]

    return run


def numpy_hoisted(p: Problem) -> Callable[[], np.ndarray]:
    """The input product of every step as one matrix product, then the loop."""
    x, W_x, b_in, b_rec = p.x, p.W_x, p.input_bias(), p.recurrent_bias()
    W_h_T = np.ascontiguousarray(p.W_h.T)

    def run():
        xp = x @ W_x.T + b_in
        state = zero_state(p)
        for t in range(x.shape[1]):
            state = cell_step(np, p.cell, xp[:, t], state, W_h_T, b_rec)
        return state[0]

    return run


def _need_kernel(cell: str) -> None:
    if not hasattr(_core, f"pack_{cell}"):
        raise ImportError(f"this build of rnnext's C++ core has no pack_{cell} yet")


def _model_class(cell: str):
    _need_kernel(cell)
    cls = getattr(models, cell.upper(), None)
    if cls is None:
        raise ImportError(f"this rnnext has no {cell.upper()} model yet")
    return cls


def rnnext_model_for(p: Problem, input_size: int, hidden_size: int):
    """An rnnext model of the problem's cell holding its weights (packed once, as models keep them)."""
    model = _model_class(p.cell)(input_size, hidden_size)
    names = {"W_x": p.W_x, "W_h": p.W_h, "b_x": p.b_x, "b_h": p.b_h}
    model.load_state_dict({key: names[key.split("_l0")[0]] for key in model.params})
    return model


def _functional(name: str):
    from . import functional

    _need_kernel(name.split("_")[0])
    fn = getattr(functional, name, None)
    if fn is None:
        raise ImportError(f"this rnnext has no functional.{name} yet")
    return fn


def rnnext_model(p: Problem) -> Callable[[], np.ndarray]:
    """rnnext.RNN / LSTM / GRU: weights packed once, as a model keeps them."""
    model = rnnext_model_for(p, p.shape[2], p.shape[3])
    if p.cell == "lstm":
        return lambda: model(p.x)[1][0][0]
    return lambda: model(p.x)[1][0]


def rnnext_functional(p: Problem) -> Callable[[], np.ndarray]:
    """rnnext.functional.rnn / lstm / gru: packs the weights on every call."""
    fn = _functional(p.cell)
    if p.cell == "lstm":
        return lambda: fn(p.x, *p.weights)[1][0]
    return lambda: fn(p.x, *p.weights)[1]


TORCH_MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _torch_module(p: Problem):
    """torch.nn.RNN / LSTM / GRU with the problem's weights, on rnnext's thread count."""
    import torch

    torch.set_num_threads(_core.get_num_threads())
    module = getattr(torch.nn, TORCH_MODULES[p.cell])(p.shape[2], p.shape[3], batch_first=True)
    with torch.no_grad():
        for name, value in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), p.weights):
            getattr(module, name).copy_(torch.from_numpy(value))
    return module


def _torch_h(p: Problem, final):
    return final[0] if p.cell == "lstm" else final


def torch_forward(p: Problem) -> Callable[[], np.ndarray]:
    import torch

    module = _torch_module(p)
    x = torch.from_numpy(p.x)

    def run():
        with torch.inference_mode():
            return _torch_h(p, module(x)[1])[0].numpy()

    return run


# ONNX's gate blocks in rnnext's (PyTorch's) order: LSTM i, o, f, c from
# i, f, g, o; GRU z, r, h from r, z, n.
ONNX_GATE_ORDER = {"rnn": [0], "lstm": [0, 3, 1, 2], "gru": [1, 0, 2]}


def to_onnx_gates(a: np.ndarray, cell: str) -> np.ndarray:
    blocks = np.split(a, GATES[cell], axis=0)
    return np.concatenate([blocks[k] for k in ONNX_GATE_ORDER[cell]], axis=0)


def onnxruntime_forward(p: Problem) -> Callable[[], np.ndarray]:
    """ONNX Runtime's fused RNN / LSTM / GRU operator (time-major input, as ORT
    requires; the GRU with linear_before_reset=1, PyTorch's form)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    B, T, I, H = p.shape
    cell = p.cell
    inits = [
        numpy_helper.from_array(to_onnx_gates(p.W_x, cell)[None], "W"),
        numpy_helper.from_array(to_onnx_gates(p.W_h, cell)[None], "R"),
        numpy_helper.from_array(np.concatenate([to_onnx_gates(p.b_x, cell), to_onnx_gates(p.b_h, cell)])[None], "B"),
    ]
    attributes: Dict[str, Any] = {"hidden_size": H}
    if cell == "rnn":
        attributes["activations"] = ["Tanh"]
    if cell == "gru":
        attributes["linear_before_reset"] = 1
    node = helper.make_node(TORCH_MODULES[cell], ["X", "W", "R", "B"], ["Y", "Y_h"], **attributes)
    graph = helper.make_graph(
        [node], cell, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, B, H])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _core.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(p.x.transpose(1, 0, 2))
    return lambda: session.run(["Y_h"], {"X": x})[0][0]


def _jax_barrier(cell: str):
    import jax

    # XLA fuses the gate arithmetic of LSTM/GRU into the recurrent product's
    # loop (2-8x slower) unless kept apart; the Elman RNN needs no barrier.
    return (lambda a: a) if cell == "rnn" else jax.lax.optimization_barrier


def jax_forward(p: Problem) -> Callable[[], np.ndarray]:
    """jax.lax.scan under jit, the input product hoisted out of the loop."""
    import jax
    import jax.numpy as jnp

    cell, barrier = p.cell, _jax_barrier(p.cell)
    b_rec = p.recurrent_bias()
    args = [jnp.asarray(a) for a in (p.x, p.W_x, p.W_h, p.input_bias())]
    b_rec = None if b_rec is None else jnp.asarray(b_rec)
    state0 = tuple(jnp.asarray(s) for s in zero_state(p))

    @jax.jit
    def forward(x, W_x, W_h, b_in, state):
        xp = jnp.einsum("bti,hi->tbh", x, W_x) + b_in
        W_h_T = W_h.T

        def step(state, xt):
            return cell_step(jnp, cell, xt, state, W_h_T, b_rec, barrier), None

        state, _ = jax.lax.scan(step, state, xp)
        return state[0]

    return lambda: np.asarray(forward(*args, state0).block_until_ready())


FORWARD_PEERS: Dict[str, Dict[str, Factory]] = {
    cell: {
        "rnnext": rnnext_model,
        "rnnext.functional": rnnext_functional,
        "numpy_loop": numpy_loop,
        "numpy_hoisted": numpy_hoisted,
        "torch": torch_forward,
        "onnxruntime": onnxruntime_forward,
        "jax": jax_forward,
    }
    for cell in CELLS
}


# ---------------------------------------------------------------- training
# Forward, then backward of sum(h_seq): every gradient, inputs included.
# Each returns dL/dW_h.


def rnnext_training(p: Problem) -> Callable[[], np.ndarray]:
    forward, backward = _functional(p.cell), _functional(p.cell + "_backward")
    ones = np.ones(p.shape[:2] + (p.shape[3],), np.float32)

    def run():
        cache = forward(p.x, *p.weights, return_cache=True)[-1]
        return backward(cache, ones)["W_h"]

    return run


def torch_training(p: Problem) -> Callable[[], np.ndarray]:
    import torch

    module = _torch_module(p)
    x = torch.from_numpy(p.x).requires_grad_(True)

    def run():
        module.zero_grad()
        x.grad = None
        module(x)[0].sum().backward()
        return module.weight_hh_l0.grad.numpy()

    return run


TRAINING_PEERS: Dict[str, Dict[str, Factory]] = {
    cell: {"rnnext": rnnext_training, "torch": torch_training} for cell in CELLS
}


def available_training_peers(p: Problem, names: Optional[Sequence[str]] = None) -> Dict[str, Callable[[], np.ndarray]]:
    """The training peers that import; when torch does, rnnext's gradient is checked against it."""
    fns = {}
    for name, factory in TRAINING_PEERS[p.cell].items():
        if names is not None and name not in names and not (name == "torch" and "rnnext" in names):
            continue
        try:
            fns[name] = factory(p)
        except ImportError:
            continue
    if "rnnext" in fns and "torch" in fns:
        ours, theirs = fns["rnnext"](), fns["torch"]()
        if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max()):
            raise AssertionError(f"rnnext's {p.cell} gradient disagrees with torch's at {p.shape}")
    return {k: v for k, v in fns.items() if names is None or k in names}


# ---------------------------------------------------------------- streaming
# One time step per Python call at B = 1, I = H = STEP_SIZE, from a zero
# state; each factory takes a Problem(1, 1, size, size, cell=...) and returns
# a function whose result starts with h_t.


def rnnext_step(p: Problem) -> Callable[[], Any]:
    model = rnnext_model_for(p, p.shape[2], p.shape[3])
    x_t, state = p.x[:, 0], model.initial_state(1)
    return lambda: model.step(x_t, state)


def numpy_step(p: Problem) -> Callable[[], Any]:
    x_t, b_in, b_rec = p.x[:, 0], p.input_bias(), p.recurrent_bias()
    W_x_T, W_h_T = np.ascontiguousarray(p.W_x.T), np.ascontiguousarray(p.W_h.T)
    state = zero_state(p)
    return lambda: cell_step(np, p.cell, x_t @ W_x_T + b_in, state, W_h_T, b_rec)


def torch_step(p: Problem) -> Callable[[], Any]:
    import torch

    torch.set_num_threads(_core.get_num_threads())
    cell = getattr(torch.nn, TORCH_MODULES[p.cell] + "Cell")(p.shape[2], p.shape[3])
    with torch.no_grad():
        for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), p.weights):
            getattr(cell, name).copy_(torch.from_numpy(value))
    xt = torch.from_numpy(p.x[:, 0])
    state = tuple(torch.from_numpy(s) for s in zero_state(p))
    state = state if p.cell == "lstm" else state[0]

    def run():
        with torch.inference_mode():
            return cell(xt, state)

    return run


def jax_step(p: Problem) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp

    cell, barrier = p.cell, _jax_barrier(p.cell)
    b_rec = p.recurrent_bias()
    step = jax.jit(lambda x, state, W_x, W_h, b_in, b_rec: cell_step(
        jnp, cell, x @ W_x.T + b_in, state, W_h.T, b_rec, barrier))
    args = [jnp.asarray(p.x[:, 0]), tuple(jnp.asarray(s) for s in zero_state(p))]
    args += [jnp.asarray(a) for a in (p.W_x, p.W_h, p.input_bias())]
    args.append(None if b_rec is None else jnp.asarray(b_rec))
    return lambda: jax.block_until_ready(step(*args))


STEP_PEERS: Dict[str, Dict[str, Factory]] = {
    cell: {
        "rnnext": rnnext_step,
        "numpy": numpy_step,
        "torch": torch_step,
        "onnxruntime": onnxruntime_forward,  # the fused operator on T = 1
        "jax": jax_step,
    }
    for cell in CELLS
}


def _first_array(result: Any) -> np.ndarray:
    """h_t out of whatever a step returns ((y, state), (h, c), a tensor...)."""
    while isinstance(result, (tuple, list)):
        result = result[0]
    return np.asarray(result.detach() if hasattr(result, "detach") else result)


def step_peers(size: int = STEP_SIZE, cell: str = "rnn", notes: Optional[List[str]] = None
               ) -> Dict[str, Callable[[], Any]]:
    """The streaming peers that import, each checked against the reference's
    first step; those that do not (rnnext's model for a cell not built yet) are
    left out with a line in ``notes``."""
    p = Problem(1, 1, size, size, cell=cell)
    return _checked(p, STEP_PEERS[cell], None, notes, _first_array)


# ---------------------------------------------------------------- checks


def _checked(p: Problem, factories: Dict[str, Factory], names: Optional[Sequence[str]],
             notes: Optional[List[str]], result_h: Callable[[Any], np.ndarray] = np.asarray
             ) -> Dict[str, Callable[[], Any]]:
    expected = p.reference_h_n()
    fns = {}
    for name, factory in factories.items():
        if names is not None and name not in names:
            continue
        try:
            fn = factory(p)
        except ImportError as e:
            if notes is not None and name.startswith("rnnext"):
                notes.append(f"{name} ({p.cell}) left out: {e}")
            continue
        got = result_h(fn()).reshape(expected.shape)
        error = np.max(np.abs(got - expected) - 1e-4 * np.abs(expected))
        if not error < 1e-5:  # float32 after up to a few hundred steps
            raise AssertionError(f"{name} ({p.cell}) disagrees with the reference at {p.shape}: error {error:.2e}")
        fns[name] = fn
    return fns


def available_forward_peers(p: Problem, names: Optional[Sequence[str]] = None,
                            notes: Optional[List[str]] = None) -> Dict[str, Callable[[], np.ndarray]]:
    """The forward peers of the problem's cell whose libraries import, each
    checked against the reference."""
    return _checked(p, FORWARD_PEERS[p.cell], names, notes)


# ---------------------------------------------------------------- timing


def _time_once(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def time_interleaved(fns: Dict[str, Callable[[], object]], rounds: int = 5, repeats: int = 5,
                     min_time: float = 0.02) -> Dict[str, float]:
    """Seconds per call of each function: the best, over `rounds` interleaved
    rounds, of the median of `repeats` timings of `number` calls each."""
    numbers = {}
    for name, fn in fns.items():
        fn()  # warm up (thread pools, packing caches, lazy imports)
        single = max(_time_once(fn, 1), 1e-7)
        numbers[name] = max(1, int(min_time / single))
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            # Thread pools of the previous library (OpenBLAS's under NumPy,
            # ONNX Runtime's, torch's) spin for up to ~0.1 s after their last
            # call; let them go to sleep rather than charge their spinning to
            # the next library.
            time.sleep(0.25)
            median = float(np.median([_time_once(fn, numbers[name]) for _ in range(repeats)]))
            best[name] = min(best[name], median)
    return best


def _format_table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def _ratio_vs_best(times: Dict[str, float]) -> Tuple[str, float]:
    """The fastest peer (not rnnext) and its time over rnnext's (nan without rnnext or peers)."""
    peers = {k: v for k, v in times.items() if not k.startswith("rnnext")}
    if not peers or "rnnext" not in times:
        return "-", float("nan")
    best = min(peers, key=peers.get)
    return best, peers[best] / times["rnnext"]


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def forward_target(case: Tuple[int, int, int, int], times: Dict[str, float], gates: int = 1) -> str:
    """The speed issue's targets for a forward row, and whether this run met them."""
    if "rnnext" not in times:
        return "-"
    B, T, I, H = case
    _, ratio = _ratio_vs_best(times)
    gflops = flops(case, gates) / times["rnnext"] / 1e9
    checks = [f"faster than all: {_yes(ratio > 1)}"]
    if B <= 8:
        checks.append(f">=3x best: {_yes(ratio >= 3)}")
    if B * H >= 64 * 512:
        checks.append(f">=75% ceiling: {_yes(gflops >= 0.75 * CEILING_GFLOPS)}")
    return "; ".join(checks)


def training_target(case: Tuple[int, int, int, int], times: Dict[str, float]) -> str:
    if "torch" not in times or "rnnext" not in times:
        return "-"
    need = 10.0 if case[0] <= 8 else 1.2
    ratio = times["torch"] / times["rnnext"]
    return f">={need:g}x torch: {_yes(ratio >= need)}"


def step_target(cell: str, times: Dict[str, float]) -> str:
    if "rnnext" not in times:
        return "-"
    if cell in TARGET_STEP_US:
        return f"<={TARGET_STEP_US[cell]} us: {_yes(times['rnnext'] * 1e6 <= TARGET_STEP_US[cell])}"
    _, ratio = _ratio_vs_best(times)
    return f"faster than all: {_yes(ratio > 1)}"


def _ms(times: Dict[str, float], name: str) -> str:
    return f"{times[name] * 1e3:.3g}" if name in times else "-"


def _columns(tables: Sequence[Dict[str, float]], registry: Dict[str, Factory]) -> List[str]:
    """The implementations that ran in any row, in the registry's order."""
    ran = {name for times in tables for name in times}
    return [name for name in registry if name in ran]


def run_cell(cell: str, cases: Sequence[Tuple[int, int, int, int]] = FORWARD_CASES, rounds: int = 3,
             print_fn: Callable[[str], None] = print, training: bool = True, streaming: bool = True
             ) -> Dict[str, Dict]:
    """The forward, training and streaming tables of one cell; returns the timings (seconds)."""
    G = GATES[cell]
    notes: List[str] = []
    results: Dict[str, Dict] = {"forward": {}, "training": {}, "step": {}}
    print_fn(f"## {TITLES[cell]}\n")

    for case in cases:
        results["forward"][case] = time_interleaved(available_forward_peers(Problem(*case, cell=cell), notes=notes),
                                                    rounds=rounds)
    names = _columns(results["forward"].values(), FORWARD_PEERS[cell])
    rows = []
    for case, times in results["forward"].items():
        best, ratio = _ratio_vs_best(times)
        gflops = f"{flops(case, G) / times['rnnext'] / 1e9:.0f}" if "rnnext" in times else "-"
        rows.append([", ".join(map(str, case))] + [_ms(times, n) for n in names]
                    + [gflops, f"{ratio:.2f}x ({best})" if best != "-" else "-", forward_target(case, times, G)])
    print_fn("Forward:\n")
    print_fn(_format_table(["B, T, I, H"] + names + ["rnnext GFLOP/s", "vs best peer", "targets"], rows))

    if training:
        for case in cases:
            p = Problem(*case, cell=cell)
            fns = available_training_peers(p)
            if "rnnext" not in fns:
                notes.append(f"rnnext training ({cell}) left out: no functional.{cell}_backward yet")
            results["training"][case] = time_interleaved(fns, rounds=rounds)
        names = _columns(results["training"].values(), TRAINING_PEERS[cell])
        rows = []
        for case, times in results["training"].items():
            ratio = f"{times['torch'] / times['rnnext']:.1f}x" if "torch" in times and "rnnext" in times else "-"
            rows.append([", ".join(map(str, case))] + [_ms(times, n) for n in names]
                        + [ratio, training_target(case, times)])
        print_fn("\nTraining: forward + backward of the whole sequence (every gradient):\n")
        print_fn(_format_table(["B, T, I, H"] + names + ["rnnext vs torch", "targets"], rows))

    if streaming:
        step = time_interleaved(step_peers(STEP_SIZE, cell, notes), rounds=rounds)
        results["step"] = step
        print_fn(f"\nStreaming, microseconds per one-step call (B=1, I=H={STEP_SIZE}):\n")
        print_fn(_format_table(list(step) + ["targets"],
                               [[f"{t * 1e6:.2f}" for t in step.values()] + [step_target(cell, step)]]))
    for note in dict.fromkeys(notes):
        print_fn(f"\nNote: {note}")
    print_fn("")
    return results


def run(cases: Sequence[Tuple[int, int, int, int]] = FORWARD_CASES, rounds: int = 3,
        print_fn: Callable[[str], None] = print, plot: Optional[str] = None,
        training: bool = True, streaming: bool = True, cells: Sequence[str] = CELLS) -> Dict[str, Dict]:
    """Runs the forward, training and streaming benchmarks of each cell, prints
    Markdown tables (with the targets of the speed work) and returns the
    timings (seconds) as ``{cell: {"forward": {case: {name: s}}, "training":
    ..., "step": {name: s}}}``; with ``plot``, also draws them."""
    info = _core.build_info()
    print_fn(f"rnnext {info['version']}, {info['isa']} kernels, {info['num_threads']} threads; "
             f"milliseconds per call (best round's median of {rounds} interleaved rounds)\n")
    results = {cell: run_cell(cell, cases, rounds, print_fn, training, streaming) for cell in cells}
    if plot:
        draw(results, plot)
        print_fn(f"\nChart written to {plot}")
    return results


def draw(results: Dict[str, Dict], path: str) -> None:
    """Milliseconds per call of every implementation across sizes (log scale),
    one row of panels per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [[(f"{cell} {kind}", r[kind]) for kind in ("forward", "training") if r[kind]]
              for cell, r in results.items()]
    panels = [row for row in panels if row]
    if not panels:
        return
    every = sorted({n for row in panels for _, table in row for times in table.values() for n in times},
                   key=lambda n: (not n.startswith("rnnext"), n))
    colors = {name: f"C{i % 10}" for i, name in enumerate(every)}  # one colour per implementation
    ncols = max(len(row) for row in panels)
    fig, axes = plt.subplots(len(panels), ncols, figsize=(7 * ncols, 4.5 * len(panels)), squeeze=False)
    for ax_row, row in zip(axes, panels):
        for ax in ax_row[len(row):]:
            ax.set_visible(False)
        for ax, (title, table) in zip(ax_row, row):
            cases = list(table)
            names = sorted({n for times in table.values() for n in times},
                           key=lambda n: (not n.startswith("rnnext"), n))
            width = 0.8 / len(names)
            for i, name in enumerate(names):
                values = [table[c].get(name, np.nan) * 1e3 for c in cases]
                ax.bar(np.arange(len(cases)) + i * width, values, width, label=name, color=colors[name])
            ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
            ax.set_xticklabels([f"{c[0]}, {c[1]}\n{c[2]}x{c[3]}" for c in cases], fontsize=7)
            ax.set(yscale="log", ylabel="ms per call (lower is better)", title=f"{title}: B, T / I x H")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
