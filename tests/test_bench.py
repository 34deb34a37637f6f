"""python -m rnnext bench: the command line, the checks before timing, the verdicts."""

import re
import subprocess
import sys

import numpy as np
import pytest

from rnnext import bench
from rnnext.__main__ import main

VERDICT = re.compile(r"rnnext [\d.]+x faster than the fastest peer \(\w+\)|\w+ [\d.]+x faster here"
                     r"|rnnext and \w+ about even")


def run_cli(*args, code=""):
    command = f"import sys; {code}from rnnext.__main__ import main; sys.exit(main({['bench', *args]!r}))"
    return subprocess.run([sys.executable, "-c", command], capture_output=True, text=True, timeout=300)


def test_a_small_case_prints_a_table_and_verdicts():
    result = run_cli("--case", "1,10,8,8", "--case", "2,5,3,4", "--cell", "rnn", "--rounds", "1")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| forward")]
    assert [r.split("|")[2].strip() for r in rows] == ["1, 10, 8, 8", "2, 5, 3, 4"]
    header = next(line for line in result.stdout.splitlines() if line.startswith("| kind"))
    assert [c.strip() for c in header.split("|")[4:6]] == ["rnnext", "numpy"]
    assert all(VERDICT.search(r) for r in rows), result.stdout
    assert "## RNN" in result.stdout and "## LSTM" not in result.stdout


@pytest.mark.parametrize("case", ["1,2,3", "1,10,8,0", "a,b,c,d", "1,10,8,8,8"])
def test_a_bad_case_is_a_usage_error(case):
    result = run_cli("--case", case)
    assert result.returncode == 2
    assert "--case: expected four positive integers B,T,I,H" in result.stderr
    assert "| kind" not in result.stdout


def test_bad_options_are_usage_errors(capsys):
    for args in (["--cell", "lstmx"], ["--rounds", "0"], ["--threads", "0"], ["--precision", "int4"],
                 ["--quick", "--full"], ["--precision", "int8", "--case", "2,5,3,4"],
                 ["--precision", "bfloat16", "--plot", "chart.png"]):
        with pytest.raises(SystemExit) as exit:
            main(["bench", *args])
        assert exit.value.code == 2, args
        assert args[0] in capsys.readouterr().err


def test_reduced_precision_tables(capsys):
    main(["bench", "--precision", "int8", "--case", "2,5,8,8", "--cell", "lstm", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "int8 on " in out.splitlines()[0] and "## LSTM int8" in out
    row = next(line for line in out.splitlines() if line.startswith("| 2, 5, 8"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # rnnext float32 and int8 always run, each with its error in brackets
    for cell in cells[1:3]:
        time, error = cell.split(" (")
        assert float(time) > 0 and float(error.rstrip(")")) < 4e-2


def test_plot_without_matplotlib_is_a_clean_error():
    result = run_cli("--case", "1,4,3,2", "--plot", "chart.png", code="sys.modules['matplotlib'] = None; ")
    assert result.returncode == 2
    assert "--plot needs matplotlib" in result.stderr and "Traceback" not in result.stderr


def test_plot_and_float64(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "chart.png"
    main(["bench", "--case", "2,6,5,4", "--cell", "gru", "--rounds", "1", "--precision", "float64",
          "--plot", str(path)])
    out = capsys.readouterr().out
    assert "float64" in out.splitlines()[0]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if "| onnxruntime" not in out:  # ORT's recurrent operators are float32 only
        assert "onnxruntime left out" in out or "onnxruntime is not installed" in out


def test_plan():
    quick = bench.plan(["lstm"])
    assert [(k, c) for k, _, c in quick] == [("forward", c) for c in bench.QUICK_CASES] + [
        ("training", bench.QUICK_TRAINING[0]), ("step", (1, 1, bench.STEP_SIZE, bench.STEP_SIZE))]
    full = bench.plan(bench.CELLS, full=True)
    assert len(full) == 3 * (2 * len(bench.FORWARD_CASES) + 1)
    assert bench.plan(["rnn"], cases=[(1, 2, 3, 4)]) == [("forward", "rnn", (1, 2, 3, 4))]
    assert bench.plan(["rnn"], full=True, cases=[(1, 2, 3, 4)]) == [
        ("forward", "rnn", (1, 2, 3, 4)), ("training", "rnn", (1, 2, 3, 4))]


def test_verdict():
    assert bench.verdict({"rnnext": 1.0, "numpy": 2.3, "torch": 5.0}) == "rnnext 2.3x faster than the fastest peer (numpy)"
    assert bench.verdict({"rnnext": 1.0, "torch": 23.4}) == "rnnext 23x faster than the fastest peer (torch)"
    assert bench.verdict({"rnnext": 1.2, "onnxruntime": 1.0, "numpy": 3.0}) == "onnxruntime 1.2x faster here"
    assert bench.verdict({"rnnext": 1.0, "torch": 1.03}) == "rnnext and torch about even"
    assert bench.verdict({"rnnext": 1.0}) == "no peer ran"


@pytest.mark.parametrize("cell", bench.CELLS)
def test_every_peer_is_checked(cell):
    """A peer that computes something else is refused before it is timed."""
    p = bench.Problem(3, 6, 5, 4, cell=cell)
    fns = bench.prepare("forward", p)
    assert {"rnnext", "numpy"} <= set(fns)
    wrong = {"forward": {"rnnext": bench.PEERS["forward"]["rnnext"],
                         "off": lambda p: (lambda: np.asarray(bench.first(fns["numpy"]())) * 1.001)}}
    with pytest.raises(AssertionError, match="off .* disagrees with rnnext.reference"):
        bench.prepare("forward", p, wrong)

    def missing(p):
        raise bench.Unavailable("nothing here")

    notes = []
    assert list(bench.prepare("step", bench.Problem(1, 1, 4, 4, cell=cell), {"step": {
        "rnnext": bench.PEERS["step"]["rnnext"], "missing": missing}}, notes=notes)) == ["rnnext"]
    assert notes == ["missing left out: nothing here"]


def test_time_interleaved_rounds():
    calls = []
    times = bench.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2,
                                   repeats=1, min_time=0, pause=0, on_round=lambda: calls.append("|"))
    assert set(times) == {"a", "b"} and all(0 < t < 1 for t in times.values())
    assert "".join(calls) == "aabbab|ab|"  # warm-up and calibration, then each round times a, then b
