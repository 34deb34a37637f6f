"""One training epoch on scikit-learn's digits (8 steps x 8 features, LSTM H=64, Adam 3e-3,
batch 32), rnnext's fit against the same loop in torch from the same weights.

    pytest benchmarks/test_digits.py --benchmark-group-by=group

``python benchmarks/digits.py`` trains the whole 15 epochs of each and prints the held-out
accuracies beside the epoch times (issue 16: within 1 point of torch, at least 1.5x
faster). Under ``--benchmark-disable`` (CI) that comparison runs once for one epoch and
each side must have learned something.
"""

import pytest

pytest.importorskip("sklearn")

import digits  # noqa: E402 (benchmarks/ is on sys.path: conftest.py)


@pytest.fixture(scope="module")
def data():
    return digits.problem()


@pytest.mark.parametrize("peer", ["rnnext", "torch"])
def test_digits_epoch(benchmark, data, peer):
    if peer == "torch":
        pytest.importorskip("torch")
    run = digits.rnnext_run if peer == "rnnext" else digits.torch_run
    benchmark.group = "digits: one epoch, LSTM 8 -> 64 -> 10, batch 32"
    # A fresh model for every round, so each times the same first epoch.
    accuracy, _ = benchmark.pedantic(lambda model: run(model, *data, epochs=1),
                                     setup=lambda: ((digits.initial_model(),), {}), rounds=5)
    assert accuracy > 0.3  # chance is 0.1


def test_digits_script(request, capsys):
    if not request.config.getoption("benchmark_disable"):
        pytest.skip("the script's smoke run (--benchmark-disable); run python benchmarks/digits.py for figures")
    assert digits.main(["1"]) == 0
    text = capsys.readouterr().out
    assert "rnnext  held-out accuracy" in text
