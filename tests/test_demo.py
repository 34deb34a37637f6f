"""python -m rnnext demo runs its three parts and its models learn; the many-to-one part
on scikit-learn's digits, or on its synthetic task without scikit-learn."""

import importlib.util
import re
import sys

import numpy as np
import pytest
from helpers import run_python

from rnnext import demo


def test_demo_learns():
    lines = []
    assert demo.main(say=lines.append) == 0
    text = "\n".join(lines)
    accuracy = float(re.search(r"held-out accuracy ([\d.]+)%", text).group(1))
    assert accuracy > 90
    assert ("scikit-learn's digits" in text) == (importlib.util.find_spec("sklearn") is not None)
    bits, unigram = map(float, re.search(r"held-out ([\d.]+) bits per character \(character frequencies "
                                         r"alone: ([\d.]+)\)", text).groups())
    assert bits < 0.6 * unigram
    exact = float(re.search(r"held-out exact match ([\d.]+)%", text).group(1))
    assert exact > 80
    assert "(vanishes)" in text and "(explodes)" in text
    clipped = float(re.search(r"clip_norm=1.0 .*accuracy ([\d.]+)%", text).group(1))
    unclipped = float(re.search(r"without clipping .*accuracy ([\d.]+)%", text).group(1))
    assert clipped > unclipped + 15


def test_demo_command_with_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    result = run_python(args=["-m", "rnnext", "demo", "--plot", str(png)], timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Many to one" in result.stdout and "One to many" in result.stdout and "Many to many" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_many_to_one_without_sklearn_falls_back_to_its_synthetic_task(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as if scikit-learn were not installed
    lines = []
    demo.many_to_one(np.random.default_rng(0), lines.append)
    text = "\n".join(lines)
    assert "ascending order" in text and "pip install scikit-learn" in text
    assert float(re.search(r"held-out accuracy ([\d.]+)%", text).group(1)) > 90


def test_one_to_many_without_license_texts_falls_back_to_waves(monkeypatch):
    monkeypatch.setattr(demo, "license_text", lambda chars=None: "")
    lines = []
    demo.one_to_many(np.random.default_rng(1), lines.append)
    text = "\n".join(lines)
    rms, baseline = map(float, re.search(r"RMS error ([\d.]+) \(repeating the last prompt value: ([\d.]+)", text).groups())
    assert rms < 0.5 * baseline


def test_license_text_is_real_text():
    text = demo.license_text(30_000)
    if not text:
        pytest.skip("this NumPy installation has no license files")
    assert len(text) == 30_000 and "Redistribution" in text
