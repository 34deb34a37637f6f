"""Writes the seed corpus of fuzz_load.py: small valid model files of every
kind (RNN, LSTM, GRU; one or two layers; one or two directions; with and
without a head and biases; float32 and float64; both layouts; a version 1
file as rnnext 0.3 wrote it), plus a few hand-mutated ones that exercise each
check of the loader; and, when onnx is installed, fuzz_onnx.py's: the ONNX
graphs ``to_onnx`` writes for some of the same models (with and without the
``lengths`` and state inputs).

    python fuzz/make_corpus.py            # rewrites fuzz/corpus/load/ (and fuzz/corpus/onnx/)

Deterministic (seeded), so the committed corpus can be regenerated exactly.
"""

from __future__ import annotations

import json
import os
import struct
import sys

import numpy as np

import rnnext as rx

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "load")
ONNX_OUT = os.path.join(HERE, "corpus", "onnx")


def split(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header, payload: bytes, pad: bool = True) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:  # safetensors pads the header with spaces to a multiple of 8
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + payload


def models():
    yield "rnn_tanh_f32", rx.RNN(2, 3, seed=0)
    yield "rnn_relu_head_f64", rx.RNN(3, 2, 2, activation="relu", dtype="float64", seed=1)
    yield "rnn_sigmoid_nobias_tf", rx.RNN(1, 2, activation="sigmoid", bias=False, batch_first=False, seed=2)
    yield "rnn_2layer_bidir_head", rx.RNN(2, 2, 3, num_layers=2, bidirectional=True, dropout=0.5, seed=3)
    yield "lstm_f32", rx.LSTM(2, 2, seed=4)
    yield "lstm_head_f64", rx.LSTM(1, 2, 1, dtype="float64", seed=5)
    yield "lstm_2layer_bidir", rx.LSTM(2, 1, num_layers=2, bidirectional=True, seed=6)
    yield "lstm_nobias_head", rx.LSTM(1, 1, 2, bias=False, batch_first=False, seed=7)
    yield "lstm_proj_2layer_bidir_head", rx.LSTM(2, 3, 2, num_layers=2, bidirectional=True, proj_size=1, seed=17)
    yield "gru_f32", rx.GRU(2, 2, seed=8)
    yield "gru_onnx_head_f64", rx.GRU(2, 1, 2, linear_before_reset=False, dtype="float64", seed=9)
    yield "gru_3layer", rx.GRU(1, 1, num_layers=3, seed=10)
    yield "gru_bidir_head_nobias", rx.GRU(1, 2, 1, bidirectional=True, bias=False, seed=11)
    # Quantized models (format version 3): int8 with scales, bfloat16 bits.
    yield "lstm_int8_head", rx.LSTM(2, 2, 1, seed=13).quantize("int8")
    yield "gru_bf16_2layer_bidir", rx.GRU(1, 2, num_layers=2, bidirectional=True, seed=14).quantize("bfloat16")
    yield "rnn_relu_int8_onnx", rx.RNN(2, 1, activation="relu", bias=False, seed=15).quantize("int8")
    yield "gru_onnx_bf16", rx.GRU(1, 1, linear_before_reset=False, seed=16).quantize("bfloat16")


def version1(model) -> bytes:
    """The file rnnext 0.3 wrote for a one-layer RNN: tensors W_x, W_h, ...,
    no num_layers/bidirectional/dropout in the configuration."""
    header, payload = split(model.to_bytes())
    meta = header.pop("__metadata__")
    config = json.loads(meta["config"])
    for key in ("num_layers", "bidirectional", "dropout"):
        config.pop(key)
    meta.update(format_version="1", config=json.dumps(config, sort_keys=True), rnnext_version="0.3.0")
    renamed = {k.replace("_l0", ""): v for k, v in header.items()}
    return join({"__metadata__": meta, **renamed}, payload)


def mutants(base: bytes):
    """Invalid files, one per kind of check (each must raise ValueError)."""
    header, payload = split(base)
    meta = header["__metadata__"]
    name = next(k for k in header if k != "__metadata__")

    def edit(fn):
        h = json.loads(json.dumps(header))
        fn(h)
        return h

    yield "bad_truncated", base[: len(base) // 2]
    yield "bad_header_size", struct.pack("<Q", 2**63) + base[8:]
    yield "bad_trailing", base + b"\0" * 8
    yield "bad_format", join(edit(lambda h: h["__metadata__"].update(format="pickle")), payload)
    yield "bad_version", join(edit(lambda h: h["__metadata__"].update(format_version="3")), payload)
    yield "bad_class", join(edit(lambda h: h["__metadata__"].update({"class": "Seq2Seq"})), payload)
    cfg = json.loads(meta["config"])
    yield "bad_config_size", join(edit(lambda h: h["__metadata__"].update(
        config=json.dumps({**cfg, "hidden_size": cfg["hidden_size"] + 1}))), payload)
    yield "bad_config_type", join(edit(lambda h: h["__metadata__"].update(
        config=json.dumps({**cfg, "bias": "yes"}))), payload)
    yield "bad_dtype", join(edit(lambda h: h[name].update(dtype="F16")), payload)
    yield "bad_shape", join(edit(lambda h: h[name].update(shape=h[name]["shape"][::-1] + [1])), payload)
    yield "bad_offsets", join(edit(lambda h: h[name].update(data_offsets=[0, 4])), payload)
    yield "bad_extra_tensor", join(edit(lambda h: h.update(extra={"dtype": "F32", "shape": [0],
                                                                  "data_offsets": [0, 0]})), payload)
    yield "bad_not_json", base[:8] + b"[" + base[9:]


def onnx_graphs():
    """fuzz_onnx.py's seeds: the float models above as ONNX graphs, each with
    the graph inputs chosen by its index (lengths, initial states, both);
    not the LSTM with projections, which ONNX cannot express."""
    exportable = (m for m in models() if m[1].quantized_tensors() is None and not m[1].config.get("proj_size", 0))
    for i, (name, model) in enumerate(exportable):
        lengths, state = bool(i % 2), bool(i % 3 == 0)
        yield name + "_lengths" * lengths + "_state" * state, model.to_onnx(lengths=lengths, state=state)


def write(out: str, files) -> None:
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(files)} files, {sum(map(len, files.values()))} bytes in {out}")


def main() -> int:
    files = {}
    for name, model in models():
        files[name] = model.to_bytes()
    files["rnn_version1"] = version1(rx.RNN(2, 2, 1, seed=12))
    files.update(mutants(files["rnn_2layer_bidir_head"]))
    write(OUT, files)
    try:
        import onnx  # noqa: F401
    except ImportError:
        print(f"onnx is not installed: {ONNX_OUT} left as it is")
    else:
        write(ONNX_OUT, dict(onnx_graphs()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
