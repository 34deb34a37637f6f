"""Model files: exact round trips, and damaged or hostile files refused with
ValueError, never a crash and never code execution."""

import io
import json
import pickle
import struct

import numpy as np
import pytest

import rnnext as rx


def models():
    return [
        rx.RNN(3, 5, seed=0),
        rx.RNN(3, 5, 2, activation="relu", dtype="float64", batch_first=False, seed=1),
        rx.RNN(4, 7, 4, bias=False, activation="sigmoid", seed=2),
    ]


@pytest.mark.parametrize("model", models(), ids=repr)
def test_round_trips_bit_exactly(tmp_path, model):
    path = tmp_path / "model.safetensors"
    model.save(path)
    buffer = io.BytesIO()
    model.save(buffer)
    for loaded in (rx.load(path), rx.load(str(path)), rx.load(io.BytesIO(buffer.getvalue())),
                   rx.from_bytes(model.to_bytes())):
        assert type(loaded) is rx.RNN
        assert loaded.config == model.config
        assert loaded.params.keys() == model.params.keys()
        for k in model.params:
            assert loaded.params[k].dtype == model.params[k].dtype
            assert loaded.params[k].tobytes() == model.params[k].tobytes()
    assert rx.from_bytes(path.read_bytes()).config == model.config


def test_file_is_plain_safetensors_with_config():
    from safetensors import safe_open

    model = rx.RNN(3, 5, 2, seed=0)
    data = model.to_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header["__metadata__"]
    assert meta["format"] == "rnnext" and meta["class"] == "RNN"
    assert json.loads(meta["config"]) == model.config
    assert {k: v["shape"] for k, v in header.items() if k != "__metadata__"} == {
        k: list(v.shape) for k, v in model.params.items()}
    assert b"pickle" not in data and pickle.PROTO not in data[:2]


def header_and_data(model):
    data = model.to_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def build(header, payload):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


def test_truncated_files_are_refused():
    data = rx.RNN(3, 5, 2, seed=0).to_bytes()
    for cut in sorted(set(np.linspace(0, len(data) - 1, 60).astype(int))):
        with pytest.raises(ValueError, match="not a valid rnnext model file"):
            rx.from_bytes(data[:cut])


def test_random_and_foreign_bytes_are_refused():
    rng = np.random.default_rng(0)
    for size in (0, 7, 8, 100, 5000):
        with pytest.raises(ValueError):
            rx.from_bytes(rng.bytes(size))
    with pytest.raises(ValueError):
        rx.from_bytes(pickle.dumps(rx.RNN(3, 5)))  # pickle is never unpickled
    with pytest.raises(ValueError):
        rx.from_bytes(struct.pack("<Q", 2**63) + b"{}")  # a hostile header size
    with pytest.raises(ValueError, match="not JSON"):
        rx.from_bytes(build({}, b"")[:8] + b"[" * 100000)
    nested = b"[" * 100000 + b"]" * 100000
    with pytest.raises(ValueError, match="not JSON"):
        rx.from_bytes(struct.pack("<Q", len(nested)) + nested)


def mutate(model, change):
    header, payload = header_and_data(model)
    payload = change(header, payload) or payload
    return build(header, payload)


def set_meta(key, value):
    def change(header, payload):
        header["__metadata__"][key] = value
    return change


def set_config(key, value):
    def change(header, payload):
        config = json.loads(header["__metadata__"]["config"])
        config[key] = value
        header["__metadata__"]["config"] = json.dumps(config)
    return change


INCONSISTENT = {
    "no metadata": lambda h, p: h.pop("__metadata__") and None,
    "not rnnext": set_meta("format", "pt"),
    "future format": set_meta("format_version", "99"),
    "unknown class": set_meta("class", "Transformer"),
    "config not json": set_meta("config", "{input_size: 3"),
    "config not object": set_meta("config", "[1, 2]"),
    "missing option": lambda h, p: h["__metadata__"].update(config=json.dumps({"input_size": 3})),
    "unknown option": set_config("layers", 2),
    "bad option value": set_config("activation", "gelu"),
    "bad size type": set_config("hidden_size", "5"),
    "shape mismatch": set_config("hidden_size", 6),
    "dtype mismatch": set_config("dtype", "float64"),
    "missing tensor": lambda h, p: h.pop("b_o") and None,
    "extra tensor": lambda h, p: h.update(W_q=dict(h["b_o"])),
    "wrong dtype": lambda h, p: h["W_x_l0"].update(dtype="I32"),
    "wrong shape": lambda h, p: h["W_x_l0"].update(shape=[3, 5]),
    "offsets outside": lambda h, p: h["b_o"].update(data_offsets=[0, 10**9]),
    "offsets wrong size": lambda h, p: h["b_o"].update(data_offsets=[0, 4]),
    "offsets not ints": lambda h, p: h["b_o"].update(data_offsets=["0", "8"]),
    "overlap": lambda h, p: h["b_h_l0"].update(data_offsets=h["b_x_l0"]["data_offsets"]),
    "trailing bytes": lambda h, p: p + b"\0" * 8,
    "tensor not object": lambda h, p: h.update(W_x_l0=[1, 2]),
}


@pytest.mark.parametrize("name", list(INCONSISTENT))
def test_inconsistent_files_are_refused(name):
    data = mutate(rx.RNN(3, 5, 2, seed=0), INCONSISTENT[name])
    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(data)


def test_flipped_bytes_never_crash():
    data = bytearray(rx.RNN(3, 5, 2, seed=0).to_bytes())
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(data)
        for i in rng.integers(0, len(data), 3):
            damaged[i] ^= 1 << int(rng.integers(0, 8))
        try:
            model = rx.from_bytes(bytes(damaged))
        except ValueError:
            continue
        assert isinstance(model, rx.RNN)  # damage in the tensor data itself gives other numbers


def test_argument_errors():
    with pytest.raises(TypeError, match="file"):
        rx.load(42)
    with pytest.raises(TypeError, match="data: expected bytes"):
        rx.from_bytes("text")
    with pytest.raises(TypeError, match="file"):
        rx.RNN(3, 5).save(3.5)


# ---------------------------------------------------------------- stacked and bidirectional models


def file_models():
    return [
        rx.LSTM(3, 5, 2, num_layers=2, bidirectional=True, dropout=0.25, seed=0),
        rx.LSTM(3, 5, dtype="float64", batch_first=False, bias=False, seed=1),
        rx.GRU(3, 5, 3, num_layers=3, seed=2),
        rx.GRU(4, 2, linear_before_reset=False, bidirectional=True, dtype="float64", seed=3),
        rx.RNN(3, 5, 4, num_layers=2, bidirectional=True, activation="relu", seed=4),
    ]


@pytest.mark.parametrize("model", file_models(), ids=repr)
def test_files_round_trip_bit_exactly(tmp_path, model):
    path = tmp_path / "model.safetensors"
    model.save(path)
    for loaded in (rx.load(path), rx.load(io.BytesIO(path.read_bytes())), rx.from_bytes(model.to_bytes())):
        assert type(loaded) is type(model)
        assert loaded.config == model.config
        assert list(loaded.params) == list(model.params)
        for k in model.params:
            assert loaded.params[k].dtype == model.params[k].dtype
            assert loaded.params[k].tobytes() == model.params[k].tobytes()


def test_files_refuse_a_class_that_does_not_match_the_tensors():
    import json
    import struct

    data = rx.LSTM(3, 5, 2, seed=0).to_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["class"] = "GRU"  # LSTM tensors are 4H tall, a GRU's 3H
    config = json.loads(header["__metadata__"]["config"])
    config["linear_before_reset"] = True
    del config["proj_size"]  # an LSTM option
    header["__metadata__"]["config"] = json.dumps(config)
    raw = json.dumps(header).encode()
    with pytest.raises(ValueError, match="not a valid rnnext model file.*shape"):
        rx.from_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def test_version_1_files_still_load():
    """A file written by rnnext 0.3 (one-layer RNN, tensors W_x ... b_o)."""
    import json

    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    tensors = {"W_x": rng.standard_normal((5, 3)).astype(np.float32),
               "W_h": rng.standard_normal((5, 5)).astype(np.float32),
               "b_x": rng.standard_normal(5).astype(np.float32), "b_h": rng.standard_normal(5).astype(np.float32),
               "W_o": rng.standard_normal((2, 5)).astype(np.float32), "b_o": rng.standard_normal(2).astype(np.float32)}
    config = dict(input_size=3, hidden_size=5, output_size=2, activation="tanh", bias=True, batch_first=True,
                  dtype="float32")
    data = save(tensors, metadata={"format": "rnnext", "format_version": "1", "class": "RNN",
                                   "config": json.dumps(config), "rnnext_version": "0.3.0"})
    model = rx.from_bytes(data)
    assert type(model) is rx.RNN and model.num_layers == 1 and not model.bidirectional
    for old, new in [("W_x", "W_x_l0"), ("W_h", "W_h_l0"), ("b_x", "b_x_l0"), ("b_h", "b_h_l0"),
                     ("W_o", "W_o"), ("b_o", "b_o")]:
        np.testing.assert_array_equal(model.params[new], tensors[old])
    with pytest.raises(ValueError, match="not a valid rnnext model file"):  # version 1 names only
        rx.from_bytes(save({"W_x_l0": tensors["W_x"]}, metadata={
            "format": "rnnext", "format_version": "1", "class": "RNN", "config": json.dumps(config)}))
