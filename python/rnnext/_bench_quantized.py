"""Reduced-precision inference against its peers: ``python -m rnnext bench --precision
bfloat16`` (or ``int8``).

Per row, in one interleaved run: rnnext float32 and quantized, torch float32 and its
reduced precision (the module and input ``.to(torch.bfloat16)``; for int8
``torch.ao.quantization.quantize_dynamic`` on an ``nn.Sequential`` holding the module, as
a bare LSTM at the root is left unquantized), onnxruntime float32 and, for the int8
LSTM, its ``DynamicQuantizeLSTM`` (``onnxruntime.quantization.quantize_dynamic`` with
``op_types_to_quantize=["LSTM"]``, on the same single-node graph the float32 peer runs).
Each figure carries its accuracy: the norm-wise relative error of the output sequence
against the float64 reference.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core, reference
from ._bench_peers import Case, Problem, Unavailable, need, onnx_graph, onnxruntime_session, rnnext_model, torch_module

QUANT_CASES: List[Case] = [(1, 100, 256, 256), (8, 100, 512, 512), (32, 100, 256, 256), (64, 50, 512, 512),
                           (128, 50, 1024, 1024)]
QUICK_QUANT_CASES: List[Case] = [(1, 100, 256, 256), (8, 100, 512, 512), (64, 50, 512, 512)]
Run = Callable[[], np.ndarray]  # returns the output sequence (B, T, H)


def _rnnext(p: Problem, precision: Optional[str]) -> Run:
    model = rnnext_model(p)
    if precision is not None:
        model = model.quantize(precision)
    return lambda: model(p.x)[0]


def _torch(p: Problem, precision: Optional[str]) -> Run:
    torch, module = torch_module(p)
    x = torch.from_numpy(p.x)
    if precision == "bfloat16":
        module, x = module.to(torch.bfloat16), x.to(torch.bfloat16)
    elif precision == "int8":
        if p.cell == "rnn":
            raise Unavailable("torch has no dynamic int8 RNN (only LSTM and GRU)")
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {type(module)},
                                                           dtype=torch.qint8)
        module = quantized[0]

    def run() -> Any:
        with torch.inference_mode():
            return module(x)[0].float().numpy()

    return run


def _onnxruntime(p: Problem, quantize: bool) -> Run:
    """onnxruntime's fused operator; quantized: DynamicQuantizeLSTM (LSTM only)."""
    if quantize and p.cell != "lstm":
        raise Unavailable(f"onnxruntime quantizes only LSTM (no int8 {p.cell.upper()})")
    need("onnxruntime")
    model_bytes = onnx_graph(p, "Y")
    if quantize:
        need("onnxruntime.quantization")
        import os
        import tempfile

        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            source, target = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "int8.onnx")
            with open(source, "wb") as f:
                f.write(model_bytes)
            quantize_dynamic(source, target, op_types_to_quantize=["LSTM"], weight_type=QuantType.QInt8)
            with open(target, "rb") as f:
                model_bytes = f.read()
    session = onnxruntime_session(model_bytes)
    x = np.ascontiguousarray(p.x.transpose(1, 0, 2))
    return lambda: session.run(["Y"], {"X": x})[0][:, 0].transpose(1, 0, 2)


def peers(precision: str) -> Dict[str, Callable[[Problem], Run]]:
    """name -> factory, in column order."""
    return {
        "rnnext float32": lambda p: _rnnext(p, None),
        f"rnnext {precision}": lambda p: _rnnext(p, precision),
        "torch float32": lambda p: _torch(p, None),
        f"torch {precision}": lambda p: _torch(p, precision),
        "onnxruntime float32": lambda p: _onnxruntime(p, False),
        **({"onnxruntime int8": lambda p: _onnxruntime(p, True)} if precision == "int8" else {}),
    }


def expected_output(p: Problem) -> np.ndarray:
    w = [a.astype(np.float64) for a in p.weights]
    output: np.ndarray = getattr(reference, p.cell)(p.x.astype(np.float64), *w)[0]
    return output


def error(out: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(out, np.float64) - expected) / np.linalg.norm(expected))


def prepare(precision: str, p: Problem, notes: Optional[List[str]] = None
            ) -> Tuple[Dict[str, Run], Dict[str, float]]:
    """The implementations that run here and each one's error (checked: within the
    contract's bound for rnnext, finite for the peers)."""
    import logging
    import warnings

    expected = expected_output(p)
    fns, errors = {}, {}
    root = logging.getLogger()
    level = root.level
    for name, factory in peers(precision).items():
        try:
            # torch's quantize_dynamic warns of its deprecation, onnxruntime's
            # quantizer logs advice: neither is news to a benchmark reader.
            root.setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fns[name] = factory(p)
                fns[name]()
        except ImportError as e:
            if notes is not None:
                notes.append(f"{name} left out: {e}")
            continue
        finally:
            root.setLevel(level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errors[name] = error(fns[name](), expected)
    bound = {"bfloat16": 1e-2, "int8": 4e-2}[precision]
    if errors.get(f"rnnext {precision}", 0.0) > bound:
        raise AssertionError(f"rnnext {precision} {p.cell} at {p.shape}: error {errors[f'rnnext {precision}']:.2e}")
    return fns, errors


def table(rows: Dict[Case, Tuple[Dict[str, float], Dict[str, float]]], names: Sequence[str]) -> str:
    header = ["B, T, H"] + list(names)
    lines = [[", ".join(map(str, (c[0], c[1], c[3])))] +
             [f"{t[n] * 1e3:.3g} ({e[n]:.1e})" if n in t else "-" for n in names] for c, (t, e) in rows.items()]
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    line: Callable[[List[str]], str] = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in lines])


def run(precision: str, cells: Sequence[str], full: bool = False, cases: Optional[Sequence[Case]] = None,
        rounds: int = 3, progress: bool = True, out: Any = None) -> Dict[str, Dict[Case, Dict[str, float]]]:
    """Times every row interleaved and prints a table per cell (ms, error in brackets)."""
    from tqdm import tqdm

    from .bench import time_interleaved

    out = out or sys.stdout
    info = _core.build_info()
    print(f"rnnext {info['version']}, {precision} on {info['precisions'][precision]}, {info['num_threads']} threads; "
          f"ms per forward (I = H), norm-wise relative error of the output sequence against float64 in brackets; "
          f"the best round's median of {rounds} interleaved rounds\n", file=out, flush=True)
    grid = list(cases or (QUANT_CASES if full else QUICK_QUANT_CASES))
    timing: Dict[str, Any] = dict(repeats=5, min_time=0.02, pause=0.25) if full else dict(repeats=3, min_time=0.01, pause=0.15)
    results: Dict[str, Dict[Case, Dict[str, float]]] = {}
    notes: List[str] = []
    names = list(peers(precision))
    with tqdm(total=len(grid) * len(cells) * rounds, unit="round", disable=not progress, leave=False) as bar:
        for cell in cells:
            rows = {}
            for case in grid:
                bar.set_description(f"{cell} {precision} {','.join(map(str, case))}")
                fns, errors = prepare(precision, Problem(*case, cell=cell), notes)
                times = time_interleaved(fns, rounds, **timing, on_round=bar.update)
                rows[case] = (times, errors)
                results.setdefault(cell, {})[case] = times
            tqdm.write(f"## {cell.upper()} {precision}\n\n{table(rows, names)}\n", file=out)
    for note in dict.fromkeys(notes):
        print(f"Note: {note}", file=out)
    return results
