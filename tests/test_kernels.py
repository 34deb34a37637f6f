"""The SIMD building blocks: activations and the packed dense kernel."""

import numpy as np
import pytest
from helpers import DTYPES

from rnnext import _core, reference

ULP_BUDGET = 4  # the vector tanh/sigmoid/exp are accurate to a few ulp


def ulp_error(actual, expected64, dtype):
    """|actual - expected| in units of the last place of the result's dtype."""
    expected = expected64.astype(dtype)
    spacing = np.spacing(np.abs(expected).astype(dtype)).astype(np.float64)
    return np.abs(actual.astype(np.float64) - expected64) / spacing


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_activation_accuracy(name, dtype):
    # Dense grid over the interesting range plus tiny magnitudes where a
    # careless tanh loses its relative accuracy.
    grid = np.concatenate([
        np.linspace(-20, 20, 400_001),
        np.logspace(-30, 0, 3001), -np.logspace(-30, 0, 3001),
    ]).astype(dtype)
    got = _core.activation(name, grid)
    assert got.dtype == dtype and got.shape == grid.shape
    with np.errstate(over="ignore"):
        if name == "tanh":
            expected = np.tanh(grid.astype(np.longdouble)).astype(np.float64)
        else:
            expected = (1 / (1 + np.exp(-grid.astype(np.longdouble)))).astype(np.float64)
    errors = ulp_error(got, expected, dtype)
    worst = np.argmax(errors)
    assert errors[worst] <= ULP_BUDGET, f"{name}({grid[worst]!r}) = {got[worst]!r}, expected {expected[worst]!r}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_activation_special_values(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 700.0, -700.0,
                  tiny, tiny / 4, -tiny / 4, np.finfo(dtype).max, -np.finfo(dtype).max], dtype)
    with np.errstate(all="raise"):  # no overflow or invalid warnings from the kernel side
        tanh = _core.activation("tanh", x)
        sigmoid = _core.activation("sigmoid", x)
        relu = _core.activation("relu", x)
    np.testing.assert_array_equal(tanh[:5], [np.nan, 1, -1, 1, -1])
    np.testing.assert_array_equal(tanh[5:9], [0, 0, 1, -1])
    np.testing.assert_array_equal(tanh[9:12], x[9:12])  # tanh(x) = x for tiny x, denormals included
    np.testing.assert_array_equal(tanh[12:], [1, -1])
    np.testing.assert_array_equal(sigmoid[:8], [np.nan, 1, 0, 1, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(sigmoid, reference.activate("sigmoid", x), rtol=1e-6, atol=0)
    np.testing.assert_array_equal(relu, reference.activate("relu", x))
    assert np.isnan(relu[0])
    assert not np.signbit(relu[6])  # relu(-0) = +0


@pytest.mark.parametrize("n", [0, 1, 7, 8, 15, 16, 17, 33, 1000])
def test_activation_any_length(n):
    x = np.linspace(-3, 3, n)
    np.testing.assert_allclose(_core.activation("tanh", x), np.tanh(x), rtol=1e-15, atol=0)


@pytest.mark.parametrize("rows,out,inp", [(1, 1, 1), (3, 5, 7), (4, 32, 16), (5, 33, 17),
                                          (9, 64, 64), (17, 100, 3), (2, 257, 129), (0, 4, 3), (3, 4, 0)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_dense_kernel_against_naive_kernel(rng, rows, out, inp, dtype):
    x = rng.standard_normal((rows, inp)).astype(dtype)
    W = rng.standard_normal((out, inp)).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    naive = _core.dense_reference(x, W, b)
    packed = _core.pack_dense(W, b).forward(x)
    exact = x.astype(np.float64) @ W.astype(np.float64).T + b
    scale = np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64).T + np.abs(b)
    eps = np.finfo(dtype).eps
    # Both kernels sum in k order (the packed one may fuse multiply-adds), so
    # each is within the classic bound k * eps * sum|x_k W_k| of the exact value.
    for got in (naive, packed):
        assert got.dtype == dtype and got.shape == (rows, out)
        assert np.all(np.abs(got - exact) <= (inp + 1) * eps * scale + 1e-300)
    np.testing.assert_allclose(packed, naive, rtol=50 * eps, atol=50 * eps * max(1, scale.max(initial=0)))


def test_dense_any_leading_axes(rng):
    W = rng.standard_normal((6, 4))
    layer = _core.pack_dense(W, None)
    x = rng.standard_normal((2, 3, 5, 4))
    np.testing.assert_allclose(layer.forward(x), x @ W.T, rtol=1e-13)
    assert layer.forward(np.zeros((0, 4))).shape == (0, 6)
