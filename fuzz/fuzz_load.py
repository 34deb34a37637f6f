#!/usr/bin/env python3
"""Fuzz target: model files (``rnnext.from_bytes``, ``rnnext.load``).

API.md, "Persistence": a truncated, corrupted, inconsistent or hostile file
raises ``ValueError`` and never executes code or crashes. So, for any bytes:

- ``from_bytes`` (given bytes, a bytearray or a memoryview) and ``load`` of a
  ``BytesIO`` either return a model or raise ``ValueError``, and agree;
  any other exception (TypeError, KeyError, MemoryError, json or numpy
  errors, ...) propagates and is reported;
- nothing is executed or opened while loading (an audit hook watches for
  exec/pickle/subprocess/open events);
- loading is bounded by the file: a file declaring a model far larger than
  itself is refused before that model is built (tests/test_fuzz_regressions.py
  measures the allocation; here the address space is capped);
- a model that loads is consistent: one of RNN/LSTM/GRU, parameters shaped as
  its configuration says, of its dtype and read-only, round-trips bitwise
  through ``to_bytes``, and runs a tiny forward with the documented shapes.

A structure-aware mutator (half the time) parses the safetensors header and
changes its JSON (metadata, configuration values, tensor dtypes, shapes,
offsets), so mutations get past the JSON parser; the other half are
libFuzzer's byte mutations.

    python fuzz/fuzz_load.py -atheris_runs=100000 fuzz/corpus/load
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import struct
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzlib  # noqa: E402

import numpy as np  # noqa: E402
import rnnext as rx  # noqa: E402


# ---------------------------------------------------------------- audit

# Not "compile": np.dtype parses the configuration's dtype string, and its
# comma-string syntax ("(2,3)f4") goes through ast.literal_eval, which
# compiles (parses) but never runs it.
_WATCHED_EVENTS = ("exec", "pickle.find_class", "os.system", "subprocess.Popen", "os.exec",
                   "os.posix_spawn", "os.spawn", "os.fork", "open", "socket.connect", "ctypes.dlopen",
                   "urllib.Request", "shutil.rmtree", "os.remove")
_audit = {"on": False, "events": []}


def _hook(event, args):
    if _audit["on"] and event in _WATCHED_EVENTS:
        _audit["events"].append((event, repr(args)[:200]))


sys.addaudithook(_hook)


def _watched(function, *args):
    _audit["on"], _audit["events"] = True, []
    try:
        return function(*args)
    finally:
        _audit["on"] = False
        if _audit["events"]:
            raise AssertionError(f"loading a model file triggered {_audit['events']}")


# ---------------------------------------------------------------- helpers

def _split(data: bytes):
    """(header dict, payload) of a safetensors file, or None."""
    if len(data) < 8:
        return None
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, RecursionError):
        return None
    return (header, data[8 + n:]) if isinstance(header, dict) else None


def _declared_cost(data: bytes):
    """The cost of the model the file's configuration declares (see
    fuzzlib.declared_cost), or None."""
    parts = _split(data)
    if parts is None:
        return None
    meta = parts[0].get("__metadata__")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), str):
        return None
    try:
        config = json.loads(meta["config"])
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, dict):
        return None
    cls = meta.get("class")
    return fuzzlib.declared_cost(cls if isinstance(cls, str) else "", config)


def _check_model(model, data: bytes) -> None:
    assert type(model) in (rx.RNN, rx.LSTM, rx.GRU), type(model)
    dtype = model.dtype
    assert dtype in (np.float32, np.float64), dtype
    shapes = model.spec.param_shapes()
    assert list(model.params) == list(shapes), (list(model.params), list(shapes))
    for name, value in model.params.items():
        assert value.shape == shapes[name] and value.dtype == dtype, (name, value.shape, value.dtype)
        assert not value.flags.writeable, name
    # Bitwise round trip (NaN payloads included).
    again = rx.from_bytes(model.to_bytes())
    assert type(again) is type(model) and again.config == model.config
    for name, value in model.params.items():
        assert again.params[name].tobytes() == value.tobytes(), name
    quantized = model.quantized_tensors()
    if quantized is not None:  # the stored tensors themselves, exactly
        precision, tensors = quantized
        assert model.precision == precision and dtype == np.float32
        again_precision, again_tensors = again.quantized_tensors()
        assert again_precision == precision and list(again_tensors) == list(tensors)
        for name, value in tensors.items():
            assert again_tensors[name].tobytes() == value.tobytes(), name
    # A tiny forward, when the model is small.
    I, D, L = model.input_size, model.num_directions, model.num_layers
    H = model.config.get("proj_size", 0) or model.hidden_size  # the width of h
    if sum(v.size for v in model.params.values()) <= 20000 and L * D <= 16:
        x = np.zeros((1, 2, I) if model.batch_first else (2, 1, I), dtype)
        with np.errstate(all="ignore"):
            out, state = model(x)
        O = model.output_size or D * H
        assert out.shape == (x.shape[0], x.shape[1], O) and out.dtype == dtype, (out.shape, out.dtype)
        h_n = state[0] if isinstance(state, tuple) else state
        assert h_n.shape == (L * D, 1, H) and h_n.dtype == dtype, (h_n.shape, h_n.dtype)


def TestOneInput(data: bytes) -> None:
    cost = _declared_cost(data)
    wrapped = (bytes, bytearray, memoryview)[len(data) % 3](data)
    try:
        model = _watched(rx.from_bytes, wrapped)
    except ValueError:
        model = None
    except Exception as e:
        if fuzzlib.known_exception(e):
            return
        raise
    try:
        loaded = _watched(rx.load, io.BytesIO(data))
    except ValueError:
        loaded = None
    if (model is None) != (loaded is None):
        raise AssertionError(f"from_bytes gave {model!r}, load(BytesIO) gave {loaded!r}")
    if model is not None:
        # A file cannot hold more parameters than it has bytes: loading never
        # builds a model the file does not hold (it is refused first).
        assert cost is None or cost - 500 * model.num_layers * model.num_directions <= len(data), (cost, len(data))
        _check_model(model, data)


# ---------------------------------------------------------------- mutator

_JSON_ODDITIES = [None, True, False, 0, -1, 1, 2, 3, 2**31, 2**32 + 1, 2**63, -2**63, 2**64, 10**30, 1.5, -0.0,
                  1e308, float("inf"), float("nan"), "", "RNN", "LSTM", "GRU", "rnnext", "1", "2", "float32",
                  "float64", "F32", "F64", "F16", "BF16", "I64", "tanh", "relu", "sigmoid", [], [1], [[]], {},
                  {"a": 1}, ["RNN"], {"dtype": "F32"}, "\ud800", "x" * 300, ",f4", "f4,(", "<f4", "float16",
                  10**400, -10**400, 1e-320, "I8", "U16", "U8", "int8", "bfloat16", "float16", "3"]


def _oddity(rng: random.Random, old=None):
    choice = rng.random()
    if isinstance(old, bool) and choice < 0.3:
        return not old
    if isinstance(old, int) and not isinstance(old, bool) and choice < 0.5:
        return old + rng.choice([-1, 1, -old, old, 2**31, 2**62, -2**63])
    if isinstance(old, list) and old and choice < 0.5:
        i = rng.randrange(len(old))
        new = list(old)
        op = rng.randrange(4)
        if op == 0:
            new[i] = _oddity(rng, old[i])
        elif op == 1:
            del new[i]
        elif op == 2:
            new.insert(i, _oddity(rng, old[i]))
        else:
            new = new[::-1]
        return new
    # A copy: the mutations edit lists and dicts in place, and a shared one
    # could end up inside itself.
    return copy.deepcopy(rng.choice(_JSON_ODDITIES))


def _mutate_header(header: dict, payload: bytes, rng: random.Random):
    meta = header.get("__metadata__")
    tensors = [k for k in header if k != "__metadata__"]
    op = rng.randrange(10)
    if op < 4 and isinstance(meta, dict):
        config = None
        if isinstance(meta.get("config"), str):
            try:
                config = json.loads(meta["config"])
            except ValueError:
                pass
        if isinstance(config, dict) and op < 3:
            keys = list(config) + ["seed", "activation", "linear_before_reset", "proj_size"]
            key = rng.choice(keys)
            if rng.random() < 0.15:
                config.pop(key, None)
            else:
                config[key] = _oddity(rng, config.get(key))
            meta["config"] = json.dumps(config)
        else:
            key = rng.choice(list(meta) + ["format", "format_version", "class", "config", "precision"])
            meta[key] = _oddity(rng, meta.get(key)) if rng.random() < 0.8 else json.dumps(_oddity(rng))
    elif op < 8 and tensors:
        name = rng.choice(tensors)
        info = header[name]
        if isinstance(info, dict) and rng.random() < 0.85:
            key = rng.choice(["dtype", "shape", "data_offsets", "data_offsets", "extra"])
            info[key] = _oddity(rng, info.get(key))
        elif rng.random() < 0.5:
            header[name] = _oddity(rng)
        else:
            new = rng.choice([name + "_reverse", name.replace("_l0", ""), name.replace("l0", "l1"), "W_o",
                              "b_o", "__metadata__", "", name + ".scale", name.replace(".scale", "")])
            header[new] = header.pop(name)
    elif op == 8:
        cut = rng.randrange(len(payload) + 1)
        payload = payload[:cut] if rng.random() < 0.5 else payload + bytes(rng.randrange(1, 64))
    else:
        if rng.random() < 0.5 and meta is not None:
            header.pop("__metadata__")
        else:
            header = _oddity(rng)
    return header, payload


def CustomMutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    parts = _split(data) if rng.random() < 0.5 else None
    if parts is None:
        return atheris.Mutate(data, max_size)
    header, payload = parts
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if not isinstance(header, dict):
            break
        header, payload = _mutate_header(header, payload, rng)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if rng.random() < 0.5:
        text += b" " * (-len(text) % 8)
    size = len(text)
    if rng.random() < 0.05:
        size += rng.choice([-1, 1, 8, -8, 2**32])
    out = struct.pack("<Q", size % 2**64) + text + payload
    return out if len(out) <= max_size else atheris.Mutate(data, max_size)


def main() -> None:
    fuzzlib.instrument("rnnext", "__main__")
    fuzzlib.limit_process()
    fuzzlib.print_summary_at_exit()
    # Import everything lazily imported by a load once, outside the audit.
    rx.from_bytes(rx.RNN(1, 1).to_bytes())
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=CustomMutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
