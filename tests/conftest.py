import zlib

import numpy as np
import pytest

import rnnext as rx

# Tolerances of the test suite (see README): float64 agrees with the float64
# reference to 1e-10 relative; float32 to 1e-5 relative (atol 1e-6 for values
# near zero) on well-scaled problems, after up to 100 steps.
TOLERANCE = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-10, atol=1e-12),
}

ACTIVATIONS = ["tanh", "sigmoid", "relu"]
DTYPES = [np.float32, np.float64]


def tolerance(dtype):
    return TOLERANCE[np.dtype(dtype).type]


def assert_close(actual, expected, dtype, what=""):
    actual = np.asarray(actual)
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype}, expected {np.dtype(dtype)}"
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape}, expected {np.shape(expected)}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **tolerance(dtype))


def rnn_weights(rng, input_size, hidden_size, dtype=np.float64, bias=True):
    """PyTorch-scaled random weights: U(-1/sqrt(H), 1/sqrt(H))."""
    k = 1.0 / np.sqrt(hidden_size)
    w = {
        "W_x": rng.uniform(-k, k, (hidden_size, input_size)).astype(dtype),
        "W_h": rng.uniform(-k, k, (hidden_size, hidden_size)).astype(dtype),
    }
    if bias:
        w["b_x"] = rng.uniform(-k, k, hidden_size).astype(dtype)
        w["b_h"] = rng.uniform(-k, k, hidden_size).astype(dtype)
    return w


def as64(weights):
    return {k: np.asarray(v, np.float64) for k, v in weights.items()}


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
