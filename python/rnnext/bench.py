"""Speed of rnnext against its peers: ``python -m rnnext bench``.

Every implementation runs the same float32 tanh RNN with the same weights and
is checked against the float64 reference before it is timed. Timings are
interleaved (each round times every implementation once) and the best round's
median is reported, because shared machines drift. Ratios are only
meaningful between columns of one run.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, reference
from .models import RNN

# (B, T, I, H) of the forward and training benchmarks: the rows of the speed
# issue and of PEERS.md, from latency-bound (B = 1) to matrix-product bound.
FORWARD_CASES: List[Tuple[int, int, int, int]] = [
    (1, 100, 64, 64), (1, 100, 256, 256), (1, 1000, 128, 128), (8, 100, 128, 128),
    (32, 100, 256, 256), (64, 50, 512, 512), (128, 50, 1024, 1024), (256, 20, 256, 256),
]
TRAINING_CASES = FORWARD_CASES
STEP_SIZE = 128  # I = H of the streaming benchmark, B = 1

# Targets of the speed work (see the README).
CEILING_GFLOPS = 300.0  # fp32 matrix multiply on 2 threads of the reference machine
TARGET_STEP_US = 1.7


def flops(case: Tuple[int, int, int, int], gates: int = 1) -> float:
    """2 T B G H (I + H): the multiply-adds of a forward."""
    B, T, I, H = case
    return 2.0 * T * B * gates * H * (I + H)


# ---------------------------------------------------------------- problems


class Problem:
    """Random float32 weights and inputs of one size, scaled like PyTorch's initialisation."""

    def __init__(self, batch: int, steps: int, input_size: int, hidden_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        k = 1 / np.sqrt(hidden_size)
        self.shape = (batch, steps, input_size, hidden_size)
        self.x = rng.standard_normal((batch, steps, input_size)).astype(np.float32)
        self.W_x = rng.uniform(-k, k, (hidden_size, input_size)).astype(np.float32)
        self.W_h = rng.uniform(-k, k, (hidden_size, hidden_size)).astype(np.float32)
        self.b_x = rng.uniform(-k, k, hidden_size).astype(np.float32)
        self.b_h = rng.uniform(-k, k, hidden_size).astype(np.float32)

    def reference_h_n(self) -> np.ndarray:
        w = [a.astype(np.float64) for a in (self.W_x, self.W_h, self.b_x, self.b_h)]
        return reference.rnn(self.x.astype(np.float64), *w)[1]


# ---------------------------------------------------------------- peers
# Each factory returns a function running the whole forward and returning h_n
# (B, H) as a NumPy array, or raises ImportError when its library is missing.


def numpy_loop(p: Problem) -> Callable[[], np.ndarray]:
    """The textbook loop: both products and both biases at every step."""
    x, W_x, W_h, b_x, b_h = p.x, p.W_x, p.W_h, p.b_x, p.b_h

    def run():
        h = np.zeros((x.shape[0], W_h.shape[0]), np.float32)
        for t in range(x.shape[1]):
            h = np.tanh(x[:, t] @ W_x.T + b_x + h @ W_h.T + b_h)
        return h

    return run


def numpy_hoisted(p: Problem) -> Callable[[], np.ndarray]:
    """The input product of every step as one matrix product, then the loop."""
    x, W_x, W_h, b = p.x, p.W_x, p.W_h, p.b_x + p.b_h
    W_h_T = np.ascontiguousarray(W_h.T)

    def run():
        xp = x @ W_x.T + b
        h = np.zeros((x.shape[0], W_h.shape[0]), np.float32)
        for t in range(x.shape[1]):
            h = np.tanh(xp[:, t] + h @ W_h_T)
        return h

    return run


def rnnext_model(p: Problem) -> Callable[[], np.ndarray]:
    """rnnext.RNN: weights packed once, as a model keeps them."""
    model = RNN(p.shape[2], p.shape[3])
    model.load_state_dict({"W_x": p.W_x, "W_h": p.W_h, "b_x": p.b_x, "b_h": p.b_h})
    return lambda: model(p.x)[1][0]


def rnnext_functional(p: Problem) -> Callable[[], np.ndarray]:
    """rnnext.functional.rnn: packs the weights on every call."""
    from .functional import rnn

    return lambda: rnn(p.x, p.W_x, p.W_h, p.b_x, p.b_h)[1]


def _torch_module(p: Problem):
    """torch.nn.RNN with the problem's weights, on rnnext's thread count."""
    import torch

    torch.set_num_threads(_core.get_num_threads())
    module = torch.nn.RNN(p.shape[2], p.shape[3], batch_first=True)
    with torch.no_grad():
        for name, value in (("weight_ih_l0", p.W_x), ("weight_hh_l0", p.W_h), ("bias_ih_l0", p.b_x),
                            ("bias_hh_l0", p.b_h)):
            getattr(module, name).copy_(torch.from_numpy(value))
    return module


def torch_rnn(p: Problem) -> Callable[[], np.ndarray]:
    import torch

    module = _torch_module(p)
    x = torch.from_numpy(p.x)

    def run():
        with torch.inference_mode():
            return module(x)[1][0].numpy()

    return run


def onnxruntime_rnn(p: Problem) -> Callable[[], np.ndarray]:
    """ONNX Runtime's fused RNN operator (time-major input, as ORT requires)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    B, T, I, H = p.shape
    inits = [
        numpy_helper.from_array(p.W_x[None], "W"),
        numpy_helper.from_array(p.W_h[None], "R"),
        numpy_helper.from_array(np.concatenate([p.b_x, p.b_h])[None], "B"),
    ]
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H, activations=["Tanh"])
    graph = helper.make_graph(
        [node], "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, I])],
        [helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, B, H])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = min(model.ir_version, 10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = _core.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(p.x.transpose(1, 0, 2))
    onnx.checker.check_model(model)
    return lambda: session.run(["Y_h"], {"X": x})[0][0]


def jax_rnn(p: Problem) -> Callable[[], np.ndarray]:
    """jax.lax.scan under jit, the input product hoisted out of the loop."""
    import jax
    import jax.numpy as jnp

    x, W_x, W_h, b = (jnp.asarray(a) for a in (p.x, p.W_x, p.W_h, p.b_x + p.b_h))

    @jax.jit
    def forward(x, W_x, W_h, b):
        xp = jnp.einsum("bti,hi->tbh", x, W_x) + b

        def step(h, xt):
            h = jnp.tanh(xt + h @ W_h.T)
            return h, None

        h, _ = jax.lax.scan(step, jnp.zeros((x.shape[0], W_h.shape[0]), x.dtype), xp)
        return h

    return lambda: np.asarray(forward(x, W_x, W_h, b).block_until_ready())


FORWARD_PEERS: Dict[str, Callable[[Problem], Callable[[], np.ndarray]]] = {
    "rnnext": rnnext_model,
    "rnnext.functional": rnnext_functional,
    "numpy_loop": numpy_loop,
    "numpy_hoisted": numpy_hoisted,
    "torch": torch_rnn,
    "onnxruntime": onnxruntime_rnn,
    "jax": jax_rnn,
}


# ---------------------------------------------------------------- training
# Forward, then backward of sum(h_seq): every gradient, inputs included.
# Each returns dL/dW_h.


def rnnext_training(p: Problem) -> Callable[[], np.ndarray]:
    from .functional import rnn, rnn_backward

    ones = np.ones(p.shape[:2] + (p.shape[3],), np.float32)

    def run():
        _, _, cache = rnn(p.x, p.W_x, p.W_h, p.b_x, p.b_h, return_cache=True)
        return rnn_backward(cache, ones)["W_h"]

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


TRAINING_PEERS: Dict[str, Callable[[Problem], Callable[[], np.ndarray]]] = {
    "rnnext": rnnext_training,
    "torch": torch_training,
}


def available_training_peers(p: Problem, names: Optional[Sequence[str]] = None) -> Dict[str, Callable[[], np.ndarray]]:
    """The training peers that import; when torch does, rnnext's gradient is checked against it."""
    fns = {}
    for name, factory in TRAINING_PEERS.items():
        if names is not None and name not in names and not (name == "torch" and "rnnext" in names):
            continue
        try:
            fns[name] = factory(p)
        except ImportError:
            continue
    if "rnnext" in fns and "torch" in fns:
        ours, theirs = fns["rnnext"](), fns["torch"]()
        if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max()):
            raise AssertionError(f"rnnext's gradient disagrees with torch's at {p.shape}")
    return {k: v for k, v in fns.items() if names is None or k in names}


# ---------------------------------------------------------------- streaming


def step_peers(size: int = STEP_SIZE) -> Dict[str, Callable[[], object]]:
    """One time step per Python call at B = 1, I = H = size."""
    p = Problem(1, 1, size, size)
    x_t, state = p.x[:, 0], None
    peers: Dict[str, Callable[[], object]] = {}

    model = RNN(size, size)
    model.load_state_dict({"W_x": p.W_x, "W_h": p.W_h, "b_x": p.b_x, "b_h": p.b_h})
    rx_state = model.initial_state(1)
    peers["rnnext"] = lambda: model.step(x_t, rx_state)

    h = np.zeros((1, size), np.float32)
    W_x_T, W_h_T, b = np.ascontiguousarray(p.W_x.T), np.ascontiguousarray(p.W_h.T), p.b_x + p.b_h
    peers["numpy"] = lambda: np.tanh(x_t @ W_x_T + h @ W_h_T + b)
    try:
        import torch

        cell = torch.nn.RNNCell(size, size)
        xt, ht = torch.from_numpy(x_t), torch.zeros(1, size)

        def torch_step():
            with torch.inference_mode():
                return cell(xt, ht)

        peers["torch"] = torch_step
    except ImportError:
        pass
    try:
        peers["onnxruntime"] = onnxruntime_rnn(p)
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        step = jax.jit(lambda x, h, W_x, W_h, b: jnp.tanh(x @ W_x.T + h @ W_h.T + b))
        args = [jnp.asarray(a) for a in (x_t, h, p.W_x, p.W_h, p.b_x + p.b_h)]
        peers["jax"] = lambda: step(*args).block_until_ready()
    except ImportError:
        pass
    del state
    return peers


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


def available_forward_peers(p: Problem, names: Optional[Sequence[str]] = None) -> Dict[str, Callable[[], np.ndarray]]:
    """The peers whose libraries import, each checked against the reference."""
    expected = p.reference_h_n()
    fns = {}
    for name, factory in FORWARD_PEERS.items():
        if names is not None and name not in names:
            continue
        try:
            fn = factory(p)
        except ImportError:
            continue
        got = fn()
        error = np.max(np.abs(got - expected) - 1e-4 * np.abs(expected))
        if not error < 1e-5:  # float32 after up to a few hundred steps
            raise AssertionError(f"{name} disagrees with the reference at {p.shape}: error {error:.2e}")
        fns[name] = fn
    return fns


def _format_table(header: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def _ratio_vs_best(times: Dict[str, float]) -> Tuple[str, float]:
    peers = {k: v for k, v in times.items() if not k.startswith("rnnext")}
    best = min(peers, key=peers.get)
    return best, peers[best] / times["rnnext"]


def forward_target(case: Tuple[int, int, int, int], times: Dict[str, float]) -> str:
    """The speed issue's targets for a forward row, and whether this run met them."""
    B, T, I, H = case
    _, ratio = _ratio_vs_best(times)
    gflops = flops(case) / times["rnnext"] / 1e9
    checks = [f"faster than all: {'yes' if ratio > 1 else 'NO'}"]
    if B <= 8:
        checks.append(f">=3x best: {'yes' if ratio >= 3 else 'NO'}")
    if B * H >= 64 * 512:
        checks.append(f">=75% ceiling: {'yes' if gflops >= 0.75 * CEILING_GFLOPS else 'NO'}")
    return "; ".join(checks)


def training_target(case: Tuple[int, int, int, int], times: Dict[str, float]) -> str:
    if "torch" not in times:
        return "-"
    need = 10.0 if case[0] <= 8 else 1.2
    ratio = times["torch"] / times["rnnext"]
    return f">={need:g}x torch: {'yes' if ratio >= need else 'NO'}"


def run(cases: Sequence[Tuple[int, int, int, int]] = FORWARD_CASES, rounds: int = 3,
        print_fn: Callable[[str], None] = print, plot: Optional[str] = None,
        training: bool = True, streaming: bool = True) -> Dict[str, Dict]:
    """Runs the forward, training and streaming benchmarks, prints Markdown
    tables (with the targets of the speed work) and returns the timings
    (seconds); with ``plot``, also draws them."""
    info = _core.build_info()
    print_fn(f"rnnext {info['version']}, {info['isa']} kernels, {info['num_threads']} threads; float32 tanh RNN; "
             f"milliseconds per call (best round's median of {rounds} interleaved rounds)\n")
    results: Dict[str, Dict] = {"forward": {}, "training": {}, "step": {}}
    rows, names = [], []
    for case in cases:
        fns = available_forward_peers(Problem(*case))
        times = time_interleaved(fns, rounds=rounds)
        results["forward"][case] = times
        names = names or list(fns)
        best, ratio = _ratio_vs_best(times)
        rows.append([", ".join(map(str, case))] + [f"{times[n] * 1e3:.3g}" if n in times else "-" for n in names]
                    + [f"{flops(case) / times['rnnext'] / 1e9:.0f}", f"{ratio:.2f}x ({best})",
                       forward_target(case, times)])
    print_fn("Forward:\n")
    print_fn(_format_table(["B, T, I, H"] + names + ["rnnext GFLOP/s", "vs best peer", "targets"], rows))

    if training:
        rows, names = [], []
        for case in cases:
            fns = available_training_peers(Problem(*case))
            times = time_interleaved(fns, rounds=rounds)
            results["training"][case] = times
            names = names or list(fns)
            ratio = f"{times['torch'] / times['rnnext']:.1f}x" if "torch" in times else "-"
            rows.append([", ".join(map(str, case))] + [f"{times[n] * 1e3:.3g}" for n in names]
                        + [ratio, training_target(case, times)])
        print_fn("\nTraining: forward + backward of the whole sequence (every gradient):\n")
        print_fn(_format_table(["B, T, I, H"] + names + ["rnnext vs torch", "targets"], rows))

    if streaming:
        step = time_interleaved(step_peers(), rounds=rounds)
        results["step"] = step
        print_fn(f"\nStreaming, microseconds per one-step call (B=1, I=H={STEP_SIZE}):\n")
        met = "yes" if step["rnnext"] * 1e6 <= TARGET_STEP_US else "NO"
        print_fn(_format_table(list(step) + ["targets"],
                               [[f"{t * 1e6:.2f}" for t in step.values()] + [f"<={TARGET_STEP_US} us: {met}"]]))
    if plot:
        draw(results, plot)
        print_fn(f"\nChart written to {plot}")
    return results


def draw(results: Dict[str, Dict], path: str) -> None:
    """Milliseconds per call of every implementation across sizes (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(k, v) for k, v in (("forward", results["forward"]), ("training", results["training"])) if v]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False)
    for ax, (title, table) in zip(axes[0], panels):
        cases = list(table)
        names = sorted({n for times in table.values() for n in times}, key=lambda n: (not n.startswith("rnnext"), n))
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            values = [table[c].get(name, np.nan) * 1e3 for c in cases]
            ax.bar(np.arange(len(cases)) + i * width, values, width, label=name)
        ax.set_xticks(np.arange(len(cases)) + 0.4 - width / 2)
        ax.set_xticklabels([f"{c[0]}, {c[1]}\n{c[2]}x{c[3]}" for c in cases], fontsize=7)
        ax.set(yscale="log", ylabel="ms per call (lower is better)", title=f"{title}: B, T / I x H")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
