import zlib

import numpy as np
import pytest

import rnnext as rx

from helpers import CELLS, KINDS

# Fixtures. `cell` and `kind` parametrise a test that takes them over every
# cell (rnn, lstm, gru, gru_onnx: tests/helpers.py) or model class; a test
# that needs another set parametrizes "cell" itself.


@pytest.fixture(params=CELLS)
def cell(request):
    """Each cell in turn: rnn, lstm, gru, gru_onnx."""
    return request.param


@pytest.fixture(params=KINDS)
def kind(request):
    """Each model class name in turn: RNN, LSTM, GRU."""
    return request.param


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs and independent of test order.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = rx.get_num_threads()
    yield
    rx.set_num_threads(before)


# ---------------------------------------------------------------- hypothesis profiles
# For tests/test_properties.py. "ci" (the default): derandomized, the same
# examples on every run. "dev": many more random examples, selected with
# HYPOTHESIS_PROFILE=dev.
try:
    import os

    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test extra; the other tests run without it
    pass
else:
    _SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
    settings.register_profile("ci", derandomize=True, database=None, max_examples=40, deadline=None,
                              suppress_health_check=_SUPPRESSED, print_blob=True)
    settings.register_profile("dev", max_examples=500, deadline=None, suppress_health_check=_SUPPRESSED,
                              print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
