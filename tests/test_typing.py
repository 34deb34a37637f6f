"""The package's types as a user's type checker sees them (API.md section 9):
mypy --strict on a snippet, once, whose reveal_type lines must resolve to the
precise types (the return_cache overloads, each model's state, evaluate's
metrics) and whose misuses must be errors.

.ci/typecheck checks the package itself and the README's tour; this checks
that the overloads say what they should, which a clean run cannot show.
"""

import os
import re
import sys
import sysconfig
import textwrap

import pytest

import rnnext as rx

mypy_api = pytest.importorskip("mypy.api")

F = "numpy.ndarray[tuple[Any, ...], numpy.dtype[numpy.floating[Any]]]"  # rnnext._typing.FloatArray
CACHE = "rnnext._core.Cache32 | rnnext._core.Cache64"

PRELUDE = """\
import numpy as np
import rnnext as rx

x = np.zeros((2, 3, 4), np.float32)
W = np.zeros((4, 4), np.float32)  # rnn: H = I = 4; gru and lstm stack 3 and 4 gate blocks
W3, W4 = np.zeros((12, 4), np.float32), np.zeros((16, 4), np.float32)
y = np.zeros((2, 3, 3), np.float32)
flag: bool = bool(x.size)
"""

# (line, expectation): ("reveal", the type mypy must reveal, F for FloatArray)
# or ("error", the error code the line must raise). Every other line must be clean.
CASES = [
    ("reveal_type(rx.functional.rnn(x, W, W))", ("reveal", "tuple[F, F]")),
    ("reveal_type(rx.functional.rnn(x, W, W, return_cache=False))", ("reveal", "tuple[F, F]")),
    ("reveal_type(rx.functional.rnn(x, W, W, return_cache=True))", ("reveal", f"tuple[F, F, {CACHE}]")),
    ("reveal_type(rx.functional.gru(x, W3, W3, return_cache=flag))",
     ("reveal", f"tuple[F, F] | tuple[F, F, {CACHE}]")),
    ("reveal_type(rx.functional.lstm(x, W4, W4))", ("reveal", "tuple[F, tuple[F, F]]")),
    ("reveal_type(rx.functional.lstm(x, W4, W4, return_cache=True))", ("reveal", f"tuple[F, tuple[F, F], {CACHE}]")),
    ("reveal_type(rx.functional.lstm_backward(rx.functional.lstm(x, W4, W4, return_cache=True)[2]))",
     ("reveal", "dict[str, numpy.ndarray[tuple[Any, ...], numpy.dtype[Any]]]")),
    ("reveal_type(rx.RNN(4, 5)(x))", ("reveal", "tuple[F, F]")),
    ("reveal_type(rx.GRU(4, 5).step(x[:, 0]))", ("reveal", "tuple[F, F]")),
    ("reveal_type(rx.LSTM(4, 5)(x, return_sequences=False))", ("reveal", "tuple[F, tuple[F, F]]")),
    ("reveal_type(rx.LSTM(4, 5).initial_state(2))", ("reveal", "tuple[F, F]")),
    ('reveal_type(rx.GRU(4, 5, 3).evaluate(x, y, loss="mse"))', ("reveal", "float")),
    ('reveal_type(rx.GRU(4, 5, 3).evaluate(x, y, loss="mse", metrics=[]))',
     ("reveal", "dict[str, float]")),
    ('reveal_type(rx.LSTM(4, 5).quantize("int8"))', ("reveal", "rnnext.models.LSTM")),
    ("reveal_type(rx.GRU.from_config(rx.GRU(4, 5).config))", ("reveal", "rnnext.models.GRU")),
    ("reveal_type(rx.RNN(4, 5).to_onnx())", ("reveal", "bytes")),
    ('reveal_type(rx.build_info()["usable_cpus"])', ("reveal", "int")),
    ("reveal_type(rx.RNN(4, 5).output_size)", ("reveal", "int | None")),
    ('rx.set_num_threads("two")', ("error", "arg-type")),
    ("h_seq, h_n = rx.functional.rnn(x, W, W, return_cache=True)", ("error", "misc")),
    ("h_seq, h_n, cache = rx.functional.rnn(x, W, W)", ("error", "misc")),
    ("rx.functional.rnn_backward(rx.functional.rnn(x, W, W))", ("error", "arg-type")),
    ('rx.GRU(4, 5, 3).evaluate(x, y, loss="mse")["loss"]', ("error", "index")),
]


def _mypypath():
    """What makes mypy read the rnnext these tests import: the source tree by
    MYPYPATH, or (None) the installed package, through this interpreter
    (mypy refuses site-packages on its path)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(rx.__file__)))
    site = {os.path.abspath(p) for p in (sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"])}
    return None if package_parent in site else package_parent


def test_public_types_resolve(tmp_path, monkeypatch):
    lines = PRELUDE.splitlines()
    first = len(lines) + 1
    lines += [code for code, _ in CASES]
    snippet = tmp_path / "snippet.py"
    snippet.write_text("\n".join(lines) + "\n")
    config = tmp_path / "mypy.ini"  # none of the repository's settings: a user's --strict
    config.write_text("[mypy]\n")
    path = _mypypath()
    if path is not None:
        monkeypatch.setenv("MYPYPATH", path)
    stdout, stderr, _ = mypy_api.run([
        "--strict", "--no-error-summary", "--show-error-codes", "--no-color-output", "--config-file", str(config),
        "--cache-dir", str(tmp_path / "mypy-cache"), "--python-executable", sys.executable,
        "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", str(snippet)])
    assert not stderr, stderr
    found = {}
    for report in stdout.splitlines():
        match = re.match(r".*snippet\.py:(\d+): (error|note): (.*)", report)
        assert match, report
        found.setdefault(int(match.group(1)), []).append((match.group(2), match.group(3)))
    for number in range(1, first):
        assert number not in found, (lines[number - 1], found[number])
    for number, (code, (kind, expected)) in enumerate(CASES, first):
        reports = found.get(number, [])
        if kind == "reveal":
            revealed = [text for what, text in reports if what == "note" and text.startswith("Revealed type is ")]
            assert [r for r in reports if r[0] == "error"] == [], (code, reports)
            assert revealed == [f'Revealed type is "{expected.replace("F", F)}"'], (code, reports)
        else:
            assert any(what == "error" and text.endswith(f"[{expected}]") for what, text in reports), (code, reports)


def test_snippet_runs():
    # The snippet's revealed calls are real calls: what the types promise is what runs.
    namespace = {"reveal_type": lambda value: value}
    exec(textwrap.dedent(PRELUDE), namespace)
    for code, (kind, _) in CASES:
        if kind == "reveal":
            exec(code, namespace)
