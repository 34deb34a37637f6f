"""Reduced-precision inference (API.md section 5): ``model.quantize``.

Accuracy against the float64 model over 100 steps (bfloat16 <= 1e-2, int8
<= 4e-2 norm-wise, out and h_n), every cell, activation and option; results
bitwise identical across thread counts and batch compositions; every
inference method; exact files and pickles; hostile files refused; training
refused; the emulated paths (RNNEXT_FORCE_ISA) against the native ones.
"""

from __future__ import annotations

import io
import json
import pickle
import struct

import numpy as np
import pytest
from helpers import run_python

import rnnext as rx
from rnnext.quantize import bfloat16_bits, bfloat16_values, int8_rows

PRECISIONS = ("bfloat16", "int8")
BOUND = {"bfloat16": 1e-2, "int8": 4e-2}

# (class, options): every cell, activation and GRU form.
KINDS = [(rx.RNN, {"activation": "tanh"}), (rx.RNN, {"activation": "sigmoid"}), (rx.RNN, {"activation": "relu"}),
         (rx.LSTM, {}), (rx.GRU, {"linear_before_reset": True}), (rx.GRU, {"linear_before_reset": False})]
KIND_IDS = ["rnn-tanh", "rnn-sigmoid", "rnn-relu", "lstm", "gru", "gru-onnx"]


def float64_twin(model):
    twin = type(model).from_config({**model.config, "dtype": "float64"})
    twin.load_state_dict(model.state_dict())
    return twin


def relative(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def states(state):
    return state if isinstance(state, tuple) else (state,)


# ---------------------------------------------------------------- accuracy


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("layout", ["one-layer", "stacked-bidirectional-head"])
def test_accuracy_against_float64(kind, precision, layout):
    cls, options = kind
    extra = {} if layout == "one-layer" else {"num_layers": 2, "bidirectional": True, "output_size": 5}
    model = cls(16, 64, seed=3, **options, **extra)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 100, 16)).astype(np.float32)
    lengths = np.array([100, 37, 100, 64])
    state_shape = (model.num_layers * model.num_directions, 4, 64)
    h0 = 0.5 * rng.standard_normal(state_shape).astype(np.float32)
    h0 = (h0, 0.5 * rng.standard_normal(state_shape).astype(np.float32)) if cls is rx.LSTM else h0
    expected, expected_state = float64_twin(model)(x.astype(np.float64), h0, lengths=lengths)
    q = model.quantize(precision)
    out, state = q(x, h0, lengths=lengths)
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert relative(out, expected) <= BOUND[precision]
    for got, want in zip(states(state), states(expected_state)):
        assert got.dtype == np.float32 and relative(got, want) <= BOUND[precision]
    # padding stays zero
    assert not out[1, 37:].any()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_large_sizes_within_bounds(precision):
    # Sizes where every kernel path runs: tiles of 32 rows, panels past one
    # cache group, reductions past one tile step.
    model = rx.LSTM(300, 200, seed=5)
    x = np.random.default_rng(6).standard_normal((40, 100, 300)).astype(np.float32)
    expected, (h, c) = float64_twin(model)(x.astype(np.float64))
    out, (qh, qc) = model.quantize(precision)(x)
    assert relative(out, expected) <= BOUND[precision]
    assert relative(qh, h) <= BOUND[precision] and relative(qc, c) <= BOUND[precision]


def test_int8_more_accurate_than_per_tensor_expectations():
    # The figures the README quotes: well inside the contract's bounds.
    model = rx.LSTM(256, 256, seed=1)
    x = np.random.default_rng(0).standard_normal((2, 100, 256)).astype(np.float32)
    expected, _ = float64_twin(model)(x.astype(np.float64))
    assert relative(model.quantize("bfloat16")(x)[0], expected) < 5e-3
    assert relative(model.quantize("int8")(x)[0], expected) < 2e-2


# ---------------------------------------------------------------- invariance


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", KINDS[2:], ids=KIND_IDS[2:])
def test_batch_invariance_bitwise(kind, precision):
    cls, options = kind
    model = cls(24, 96, seed=7, **options).quantize(precision)
    x = np.random.default_rng(8).standard_normal((37, 20, 24)).astype(np.float32)
    lengths = np.random.default_rng(9).integers(1, 21, 37)
    whole, _ = model(x, lengths=lengths)
    one_by_one = np.concatenate([model(x[i:i + 1], lengths=lengths[i:i + 1])[0] for i in range(37)])
    split = np.concatenate([model(x[:20], lengths=lengths[:20])[0], model(x[20:], lengths=lengths[20:])[0]])
    assert np.array_equal(whole, one_by_one) and np.array_equal(whole, split)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("shape", [(2, 30, 300), (64, 10, 256), (3, 5, 1100)], ids=["sliced", "rows", "wide"])
def test_threads_bitwise(precision, shape):
    B, T, H = shape
    for cls in (rx.LSTM, rx.GRU, rx.RNN):
        model = cls(H, H, seed=10).quantize(precision)
        x = np.random.default_rng(11).standard_normal((B, T, H)).astype(np.float32)
        with rx.threads(1):
            one, s1 = model(x)
        with rx.threads(2):
            two, s2 = model(x)
        assert np.array_equal(one, two)
        assert all(np.array_equal(a, b) for a, b in zip(states(s1), states(s2)))


# ---------------------------------------------------------------- every inference method


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_step_predict_generate(kind, precision):
    cls, options = kind
    model = cls(6, 20, 6, num_layers=2, seed=12, **options).quantize(precision)
    x = np.random.default_rng(13).standard_normal((3, 9, 6)).astype(np.float32)
    out, _ = model(x)
    state, steps = None, []
    for t in range(9):
        y, state = model.step(x[:, t], state)
        steps.append(y)
    # one step is one row of the same products: the sequence, bit for bit
    assert np.array_equal(np.stack(steps, axis=1), out)
    assert np.array_equal(model.predict(x, batch_size=2), out)
    generated = model.generate(x[0, :3], 5)
    assert generated.shape == (5, 6) and generated.dtype == np.float32 and np.isfinite(generated).all()
    loss = model.evaluate(x, out, loss="mse")
    assert loss == 0.0


def test_unbatched_and_time_major():
    model = rx.GRU(4, 8, batch_first=False, seed=14).quantize("int8")
    x = np.random.default_rng(15).standard_normal((7, 3, 4)).astype(np.float32)
    out, h = model(x)
    single, h1 = model(x[:, 1])
    assert np.array_equal(out[:, 1], single) and np.array_equal(h[:, 1], h1)


def test_inputs_of_other_dtypes_are_float32_results():
    model = rx.LSTM(4, 8, dtype="float64", seed=16)
    q = model.quantize("bfloat16")
    assert q.dtype == np.float32 and q.config["dtype"] == "float32"
    x = np.random.default_rng(17).standard_normal((2, 5, 4))
    out64, _ = q(x)
    out32, _ = q(x.astype(np.float32))
    assert out64.dtype == np.float32 and np.array_equal(out64, out32)


# ---------------------------------------------------------------- the model object


def test_precision_params_and_repr():
    model = rx.LSTM(5, 7, 3, seed=18)
    assert model.precision == "float32" and rx.LSTM(2, 2, dtype="float64").precision == "float64"
    for precision in PRECISIONS:
        q = model.quantize(precision)
        assert type(q) is rx.LSTM and q.precision == precision and f"precision={precision!r}" in repr(q)
        assert list(q.params) == list(model.params)
        for name, value in q.params.items():
            assert value.dtype == np.float32 and not value.flags.writeable
            if name.startswith(("W_x", "W_h")):
                assert relative(value, model.params[name]) < (4e-3 if precision == "bfloat16" else 2e-2)
            else:  # biases and the head stay float32
                assert np.array_equal(value, model.params[name])
    assert model.precision == "float32"  # the model itself is unchanged


def test_quantized_values():
    w = np.array([[0.5, -1.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0], [3.0, 1e-40, -1e-3, 2.0]], np.float32)
    q, scale = int8_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert q[0].tolist() == [64, -127, 32, 0] and scale[1] == 0 and not q[1].any()
    assert np.abs(q.astype(np.float32) * scale[:, None] - w).max() <= scale.max() / 2 * 1.0001
    bits = bfloat16_bits(np.array([1.0, 1.00390625, 1.01171875, -0.0, 1e-40, np.inf, np.nan], np.float32))
    assert bits[:4].tolist() == [0x3F80, 0x3F80, 0x3F82, 0x8000]  # ties to even, up, signed zero
    assert bits[4] == 0 and bits[5] == 0x7F80 and np.isnan(bfloat16_values(bits[6:]))[0]


def test_training_and_assignment_refused():
    model = rx.GRU(3, 4, 2, seed=19).quantize("int8")
    x = np.zeros((2, 5, 3), np.float32)
    y = np.zeros((2, 5, 2), np.float32)
    calls = {
        "fit": lambda: model.fit(x, y, loss="mse", progress=False),
        "loss_and_grads": lambda: model.loss_and_grads(x, y),
        "assigning W_o": lambda: model.params.__setitem__("W_o", np.zeros((2, 4))),
        "load_state_dict": lambda: model.load_state_dict(model.state_dict()),
        "to_torch": lambda: model.to_torch(),
        "forward_cache": lambda: model.forward_cache(x),
    }
    for what, call in calls.items():
        with pytest.raises(ValueError, match=f"{what}: this model is quantized \\(int8\\) and is for inference"):
            call()


def test_quantize_errors():
    model = rx.RNN(3, 4, seed=20)
    with pytest.raises(ValueError, match="precision: expected 'bfloat16' or 'int8', got 'float16'"):
        model.quantize("float16")
    with pytest.raises(TypeError, match="precision: expected a string, got int"):
        model.quantize(8)
    with pytest.raises(ValueError, match="already quantized"):
        model.quantize("int8").quantize("bfloat16")
    model.params["W_h_l0"] = np.full((4, 4), np.nan)
    with pytest.raises(ValueError, match="int8: the weights hold NaN or Inf"):
        model.quantize("int8")
    assert np.isnan(model.quantize("bfloat16")(np.ones((1, 2, 3), np.float32))[0]).all()


def test_nonfinite_inputs_give_nan_rows_only():
    model = rx.LSTM(4, 8, seed=21).quantize("int8")
    x = np.random.default_rng(22).standard_normal((3, 6, 4)).astype(np.float32)
    clean, _ = model(x)
    x[1, 2, 0] = np.inf
    out, _ = model(x)
    assert np.isnan(out[1, 2:]).all() and np.array_equal(out[[0, 2]], clean[[0, 2]])


def test_build_info_precisions():
    paths = rx.build_info()["precisions"]
    assert set(paths) == {"bfloat16", "int8"}
    native = {"amx", "avx512_bf16", "avx512_vnni"}
    for path in paths.values():
        assert path in native or path.endswith("-emulated"), path


# ---------------------------------------------------------------- files and pickles


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_files_and_pickles_exact(kind, precision, tmp_path):
    cls, options = kind
    q = cls(3, 5, 2, num_layers=2, bidirectional=True, bias=kind[0] is not rx.RNN, seed=23,
            **options).quantize(precision)
    x = np.random.default_rng(24).standard_normal((2, 4, 3)).astype(np.float32)
    out, _ = q(x)
    q.save(tmp_path / "q.safetensors")
    buffer = io.BytesIO()
    q.save(buffer)
    copies = [rx.load(tmp_path / "q.safetensors"), rx.from_bytes(q.to_bytes()), pickle.loads(pickle.dumps(q)),
              rx.load(io.BytesIO(buffer.getvalue()))]
    precision_, tensors = q.quantized_tensors()
    for copy in copies:
        assert type(copy) is cls and copy.precision == precision and copy.config == q.config
        p2, t2 = copy.quantized_tensors()
        assert p2 == precision_ and list(t2) == list(tensors)
        assert all(t2[k].dtype == v.dtype and t2[k].tobytes() == v.tobytes() for k, v in tensors.items())
        assert np.array_equal(copy(x)[0], out)


def _file_parts(data: bytes):
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + size]), data[8 + size:]


def _file(header, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def test_hostile_quantized_files_refused():
    data = rx.LSTM(2, 3, 2, seed=25).quantize("int8").to_bytes()
    header, payload = _file_parts(data)
    meta = header["__metadata__"]
    assert meta["format_version"] == "3" and meta["precision"] == "int8"

    def variant(edit):
        h = json.loads(json.dumps(header))
        p = edit(h)
        return _file(h, payload if p is None else p)

    def set_meta(key, value):
        return lambda h: h["__metadata__"].__setitem__(key, value)

    def set_tensor(name, key, value):
        return lambda h: h[name].__setitem__(key, value)

    def bad_scale(value):
        # the first scale of W_h_l0 replaced in the payload
        start = header["W_h_l0.scale"]["data_offsets"][0]
        return lambda h: payload[:start] + np.float32(value).tobytes() + payload[start + 4:]

    cases = {
        "precision 'float16'": set_meta("precision", "float16"),
        "no precision": lambda h: h["__metadata__"].pop("precision") and None,
        "dtype float64 config": set_meta("config", json.dumps({**json.loads(meta["config"]), "dtype": "float64"})),
        "int8 as bfloat16": set_meta("precision", "bfloat16"),
        "scale missing": lambda h: h.pop("W_x_l0.scale") and None,
        "weight as float32": set_tensor("W_x_l0", "dtype", "F32"),
        "weight as uint8": set_tensor("W_x_l0", "dtype", "U8"),
        "scale shape": set_tensor("W_x_l0.scale", "shape", [3]),
        "version 2 with int8 tensors": set_meta("format_version", "2"),
        "NaN scale": bad_scale(np.nan),
        "negative scale": bad_scale(-1.0),
        "infinite scale": bad_scale(np.inf),
        "scale whose products overflow": bad_scale(3e38),  # found by fuzz_load: -127 * 3e38 is inf
    }
    for what, edit in cases.items():
        with pytest.raises(ValueError, match="not a valid rnnext model file"):
            rx.from_bytes(variant(edit))
        assert what


def test_old_readers_refuse_quantized_files_by_version():
    # Version 3 exists so that a reader of versions 1 and 2 refuses the file.
    data = rx.GRU(2, 2, seed=26).quantize("bfloat16").to_bytes()
    header, _ = _file_parts(data)
    assert header["__metadata__"]["format_version"] == "3"
    assert rx.GRU(2, 2, seed=26).to_bytes()[8:].find(b'"format_version":"2"') >= 0


# ---------------------------------------------------------------- emulated paths

_EMULATION_SCRIPT = """
import sys
import numpy as np, rnnext as rx
rng = np.random.default_rng(0)
out = {}
models = [("lstm", rx.LSTM(20, 40, num_layers=2, output_size=3, seed=1)), ("gru", rx.GRU(20, 40, seed=2)),
          ("gru-onnx", rx.GRU(20, 40, linear_before_reset=False, bidirectional=True, seed=3)),
          ("rnn-relu", rx.RNN(20, 70, activation="relu", seed=4))]
for name, m in models:
    x = rng.standard_normal((37, 30, 20)).astype(np.float32)
    for p in ("bfloat16", "int8"):
        out[name + "-" + p] = m.quantize(p)(x, lengths=np.arange(37) % 30 + 1)[0]
np.savez(sys.argv[1], **out)
print(rx.build_info()["isa"], rx.build_info()["precisions"]["bfloat16"], rx.build_info()["precisions"]["int8"])
"""


def test_emulated_paths_match_native(tmp_path):
    """int8 sums are exact on every path, so the AVX-512 emulation equals
    VNNI and AMX bit for bit; on AVX2 and the baseline only the float32 gate
    arithmetic rounds differently (as for float32 models). bfloat16: AMX sums
    a tile's pairs more precisely than the pairwise rule the vector paths
    share (VDPBF16PS's, which the emulation repeats exactly), a difference at
    float32 rounding level."""
    script = tmp_path / "emulate.py"
    script.write_text(_EMULATION_SCRIPT)
    native = run_python(args=[str(script), str(tmp_path / "native.npz")], env={"RNNEXT_FORCE_ISA": ""})
    assert native.returncode == 0, native.output
    reference = np.load(tmp_path / "native.npz")
    for isa in rx.build_info()["isas_available"]:
        result = run_python(args=[str(script), str(tmp_path / f"{isa}.npz")], env={"RNNEXT_FORCE_ISA": isa})
        assert result.returncode == 0, result.output
        assert result.stdout.split()[1:] == [f"{isa}-emulated"] * 2, result.stdout
        emulated = np.load(tmp_path / f"{isa}.npz")
        for key in reference:
            a, b = reference[key], emulated[key]
            same_rule = key.endswith("int8") and isa in ("avx512", native.stdout.split()[0])
            if same_rule:
                assert np.array_equal(a, b), (isa, key)
            else:
                assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), (isa, key, np.abs(a - b).max())
