"""Regression tests for what the fuzzers (fuzz/fuzz_load.py, fuzz/fuzz_api.py)
found, one test per bug, each running its minimised input.

Every open bug is ``xfail(strict=True)``: the suite stays green until it is
fixed, and then the test passes, strict xfail reports that as a failure, and
the marker (and the bug's entry in fuzz/fuzzlib.py's KNOWN_BUGS, which lets
the fuzzers run past it meanwhile) should go.

Inputs that kill the interpreter or never return run in a subprocess, so they
fail a test instead of the run.
"""

from __future__ import annotations

import json
import struct
import textwrap
import tracemalloc
import warnings

import numpy as np
import pytest
from helpers import run_python

import rnnext as rx
from rnnext import functional as F


# ---------------------------------------------------------------- helpers


def call_in_child(setup: str, call: str, timeout: float = 120.0):
    """run_python of ``call`` after ``setup`` (with numpy as np, rnnext as rx,
    its functional module as F and F32 = np.float32): it prints "returned"
    and the result, or the name and message of the exception it raised."""
    script = "\n".join(["import warnings", "import numpy as np, rnnext as rx", "from rnnext import functional as F",
                        "F32 = np.float32", textwrap.dedent(setup), 'print("ready", flush=True)', "try:",
                        f"    print('returned', {call})", "except Exception as e:", "    print(type(e).__name__, e)"])
    return run_python(script, timeout)  # (returncode, output)


def refused(out: str, *errors: str) -> bool:
    """Whether the child's call raised one of errors."""
    return any(line.split(" ")[0] in errors for line in out.splitlines())


def split_file(data: bytes):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def join_file(header, payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def model_file(edit) -> bytes:
    """A valid RNN(2, 3) file whose header edit(header) changed."""
    header, payload = split_file(rx.RNN(2, 3, seed=0).to_bytes())
    edit(header)
    return join_file(header, payload)


def with_config(**changes):
    def edit(header):
        meta = header["__metadata__"]
        meta["config"] = json.dumps({**json.loads(meta["config"]), **changes})
    return edit


F32 = np.float32


# ---------------------------------------------------------------- model files (fuzz_load.py)


@pytest.mark.parametrize("where", ["class", "dtype"])
def test_from_bytes_unhashable_class_or_dtype(where):
    def edit(header):
        if where == "class":
            header["__metadata__"]["class"] = ["RNN"]
        else:
            header["W_x_l0"]["dtype"] = ["F32"]

    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(model_file(edit))


@pytest.mark.parametrize("config", [{"hidden_size": 10**7}, {"num_layers": 10**9}, {"num_layers": 2**40}],
                         ids=["hidden_size=1e7", "num_layers=1e9", "num_layers=2**40"])
def test_from_bytes_huge_declared_model(config):
    data = model_file(with_config(**config))
    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(data)


def test_from_bytes_allocates_declared_model_first():
    data = model_file(with_config(input_size=1, hidden_size=4096))  # about 1.6 kB, declares 16.8 M parameters
    assert len(data) < 2000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="not a valid rnnext model file"):
            rx.from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"refusing a {len(data)}-byte file took {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("dtype", [",loat32", "f4,(", "(f4", "[('a', 'f4')]x"])
def test_dtype_strings_numpy_cannot_parse(dtype):
    # np.dtype(",loat32") raises SyntaxError (it parses comma strings with
    # ast.literal_eval); from_bytes let it through, and so did the constructors.
    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(model_file(with_config(dtype=dtype)))
    for cls in (rx.RNN, rx.LSTM, rx.GRU):
        with pytest.raises(ValueError, match="dtype"):
            cls(2, 3, dtype=dtype)


def test_numbers_past_float_range_are_valueerrors():
    # math.isfinite(10**400) raises OverflowError: JSON configurations (and
    # callers) can hold such ints.
    with pytest.raises(ValueError, match="not a valid rnnext model file"):
        rx.from_bytes(model_file(with_config(dropout=10**400)))
    with pytest.raises(ValueError, match="dropout"):
        rx.RNN(2, 3, dropout=10**400)
    model = rx.RNN(2, 3, 2)
    x = np.zeros((1, 3, 2), F32)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(x, 2, mode="sample", temperature=10**400)
    with pytest.raises(ValueError, match="lr"):
        model.fit(x, x, loss="mse", epochs=1, lr=10**400)


def test_generate_output_past_memory_raises_before_computing():
    model = rx.RNN(2, 3, 2)
    with pytest.raises(MemoryError, match="generate"):
        model.generate(np.zeros((4, 3, 2), F32), 2**60)


# ---------------------------------------------------------------- crashes (fuzz_api.py)

HUGE_VIEW_CASES = {
    # x cannot be copied (4 TiB); its output, (1, 2**20, 3), could be.
    "functional.rnn x": "F.rnn(view((1, 2**20, 2**20)), np.zeros((3, 2**20), F32), np.zeros((3, 3), F32))",
    "functional.rnn W_x": "F.rnn(view((1, 1, 2**40)), view((3, 2**40)), np.zeros((3, 3), F32))",
    "functional.lstm W_x": "F.lstm(view((1, 1, 2**40)), view((4, 2**40)), np.zeros((4, 1), F32))",
    "functional.gru W_x": "F.gru(view((1, 1, 2**40)), view((3, 2**40)), np.zeros((3, 1), F32))",
    "model.step x_t": "rx.RNN(2, 3).step(view((2**40, 2)))",
}


@pytest.mark.parametrize("case", sorted(HUGE_VIEW_CASES))
def test_huge_view_argument_does_not_crash(case):
    code, out = call_in_child("def view(shape):  # nothing allocated\n    return np.broadcast_to(F32(0), shape)",
                              HUGE_VIEW_CASES[case])
    assert code == 0 and refused(out, "MemoryError", "ValueError"), f"exit code {code}:\n{out[-2000:]}"

CAST_OVERFLOW_CASES = {
    "functional.rnn": "F.rnn(x, np.zeros((3, 2), F32), np.zeros((3, 3), F32))",
    "functional.lstm": "F.lstm(x, np.zeros((12, 2), F32), np.zeros((12, 3), F32))",
    "functional.gru": "F.gru(x, np.zeros((9, 2), F32), np.zeros((9, 3), F32))",
    "RNN()": "rx.RNN(2, 3)(x)",
    "LSTM(num_layers=2)": "rx.LSTM(2, 3, num_layers=2)(x)",
    "RNN.step": "rx.RNN(2, 3).step(x[:, 0])",
}


@pytest.mark.parametrize("case", sorted(CAST_OVERFLOW_CASES))
def test_cast_overflow_under_warnings_error_does_not_crash(case):
    code, out = call_in_child("""
        x = np.full((1, 2, 2), 1e300)  # float64, finite, beyond float32
        warnings.simplefilter("error")  # as pytest's filterwarnings = ["error"] does
        """, CAST_OVERFLOW_CASES[case])
    assert code == 0 and "returned" in out, f"exit code {code}:\n{out[-2000:]}"


# ---------------------------------------------------------------- warnings (fuzz_api.py)

WARNING_CASES = {
    "functional.rnn x": lambda: F.rnn(np.full((1, 2, 2), 1e300), np.zeros((3, 2), F32), np.zeros((3, 3), F32)),
    "RNN() x": lambda: rx.RNN(2, 3)(np.full((1, 2, 2), 1e300)),
    "loss_and_grads target": lambda: rx.RNN(2, 3, 2).loss_and_grads(np.zeros((1, 2, 2), F32),
                                                                     np.full((1, 2, 2), 1e300)),
    "parameter assignment": lambda: setattr(rx.RNN(2, 3), "W_x", np.full((3, 2), 1e300)),
}


@pytest.mark.parametrize("case", sorted(WARNING_CASES))
def test_cast_overflow_emits_no_warning(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        WARNING_CASES[case]()
    assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]


def test_bidirectional_backward_with_inf_emits_no_warning():
    model = rx.RNN(2, 1, bidirectional=True, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, grads = model.loss_and_grads(np.ones((1, 3, 2), F32), np.full((1, 2), np.inf, F32))
    assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]


# ---------------------------------------------------------------- exceptions (fuzz_api.py)


@pytest.mark.parametrize("lengths", [3, np.int64(2), np.array(2)], ids=["int", "np.int64", "0-d array"])
def test_predict_scalar_lengths_raises_valueerror(lengths):
    model = rx.RNN(2, 3)
    with pytest.raises(ValueError, match="lengths"):
        model.predict(np.zeros((2, 3, 2), F32), lengths=lengths, batch_size=1)


@pytest.mark.parametrize("lengths, error", [
    (np.array([1.0, 2.0]), TypeError),
    (np.array([1, 2, 3]), ValueError),
    (np.array([1, 0]), ValueError),
    (np.array([3, 4]), ValueError),
], ids=["float", "too many", "zero", "past T"])
def test_predict_checks_lengths_before_the_first_batch(lengths, error, monkeypatch):
    model = rx.RNN(2, 3)
    calls = []
    original = type(model).__call__
    monkeypatch.setattr(type(model), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    with pytest.raises(error, match="lengths"):
        model.predict(np.zeros((2, 3, 2), F32), lengths=lengths, batch_size=1)
    assert not calls, "a batch was computed before lengths was checked"


# ---------------------------------------------------------------- hangs (fuzz_api.py)


@pytest.mark.parametrize("shape", [(2**31 - 1, 2**31 - 1), (2**62,)], ids=["(B, T0)", "(T0,)"])
def test_generate_huge_class_id_prompt_raises_before_scanning(shape):
    # It scanned the ids (min/max over 2**62 entries of a broadcast view) before
    # finding that their one-hot encoding cannot exist.
    code, out = call_in_child(f"""
        model = rx.LSTM(3, 3, num_layers=2)
        x0 = np.broadcast_to(np.int8(1), {shape!r})  # nothing allocated
        """, 'model.generate(x0, 3, mode="sample")', timeout=10)
    assert code == 0 and refused(out, "MemoryError"), \
        f"exit code {code} (None: still running after 10 s):\n{out[-2000:]}"


@pytest.mark.parametrize("shape", [(2**40, 0), (0, 2**40, 0)], ids=["T=2**40 unbatched", "B=2**40 T=0"])
def test_rnn_zero_hidden_size_does_not_loop_over_empty_steps(shape):
    code, out = call_in_child(f"x = np.zeros({shape!r}, F32)  # holds nothing",
                              "F.rnn(x, np.zeros((0, 0), F32), np.zeros((0, 0), F32), batch_first=False)[1].shape",
                              timeout=10)
    assert code == 0 and "returned" in out, f"exit code {code} (None: still running after 10 s):\n{out[-2000:]}"


def test_huge_num_layers_raises_memoryerror_promptly():
    code, out = call_in_child("", "rx.RNN(1, 1, num_layers=2**32)", timeout=10)
    assert code == 0 and refused(out, "MemoryError"), f"exit code {code} (None: after 10 s):\n{out[-2000:]}"


def test_predict_output_past_memory_raises_before_computing():
    code, out = call_in_child("""
        model = rx.RNN(4, 2)
        x = np.broadcast_to(F32(0), (2**40, 5, 4))  # 2**40 sequences, nothing allocated
        """, "model.predict(x, batch_size=1)", timeout=10)
    assert code == 0 and refused(out, "MemoryError"), f"exit code {code} (None: after 10 s):\n{out[-2000:]}"


# ---------------------------------------------------------------- found by review (same classes)


def test_list_of_huge_views_is_a_memoryerror_not_a_typeerror():
    # py::array::ensure cleared the MemoryError of np.asarray([view]) and the
    # binding reported "expected an array of real numbers, got list".
    view = np.broadcast_to(F32(0), (2**40, 2))
    with pytest.raises(MemoryError):
        F.rnn([view], np.zeros((3, 2), F32), np.zeros((3, 3), F32))


@pytest.mark.parametrize("make", [
    lambda: rx.RNN(1, 1, num_layers=10**400),  # the message's GiB overflowed a float: OverflowError
    lambda: rx.GRU(1, 10**2200),  # its digits are past Python's 4300-digit str limit: ValueError
    lambda: rx.RNN(2, 3, 2).generate(np.zeros((1, 1, 2), F32), 10**400),
    lambda: rx.RNN(2, 3, 2).generate(np.zeros((1, 1, 2), F32), np.int64(2**62)),  # int64 product wrapped to 0
], ids=["num_layers=10**400", "hidden_size=10**2200", "steps=10**400", "steps=np.int64(2**62)"])
def test_sizes_past_memory_of_any_magnitude_are_memoryerrors(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MemoryError):
            make()


def test_generate_with_no_sequences_returns_at_once():
    # B = 0 passed the memory check (0 bytes), then visited every one of the steps.
    code, out = call_in_child("model = rx.RNN(2, 3, 2)", "model.generate(np.zeros((0, 1, 2), F32), 2**40).shape",
                              timeout=10)
    assert code == 0 and f"returned (0, {2**40}, 2)" in out, \
        f"exit code {code} (None: still running after 10 s):\n{out[-2000:]}"


def test_sampling_and_adam_emit_no_warnings_on_extreme_values():
    model = rx.RNN(2, 3, 2, seed=0)
    model.b_o = np.array([np.inf, 0], F32)  # Inf logits
    x = np.ones((2, 3, 2), F32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.generate(x[:, :1], 3, mode="sample", temperature=1e-320, seed=0)
        rx.RNN(2, 3, 2, seed=0).fit(x, np.full((2, 3, 2), 1e25, F32), loss="mse", epochs=1, optimizer="adam",
                                    clip_norm=None, progress=False)
    assert not caught, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]


def test_from_bytes_tensor_sizes_do_not_wrap():
    # np.prod of (2**32, 2**32) wraps to 0 in int64: empty data_offsets passed
    # the loader's own checks (safetensors refused the file later).
    def edit(header):
        with_config(input_size=2**32, hidden_size=2**32, bias=False)(header)
        for name in ("b_x_l0", "b_h_l0"):
            del header[name]
        for name in ("W_x_l0", "W_h_l0"):
            header[name].update(shape=[2**32, 2**32], data_offsets=[0, 0])

    header, _ = split_file(model_file(edit))
    with pytest.raises(ValueError, match="data_offsets"):
        rx.from_bytes(join_file(header, b""))
