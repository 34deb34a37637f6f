"""rnnext.dask on a LocalCluster of 1 and 2 workers (one thread each): predict's
throughput against in-memory predict, and fit's step time (the parameters out and the
gradients back) against the in-memory step.

    pytest benchmarks/test_dask.py --benchmark-group-by=group

Compare "rnnext.dask.predict, 2 workers" with "1 worker" (issue 15: at least 1.7x the
throughput, each worker on its own core). ``python benchmarks/dask_scaling.py`` prints
the same as the README's table, the configurations alternated round by round. Under
``--benchmark-disable`` (CI) each runs once on small sizes and checks its result.
"""

import numpy as np
import pytest

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask_scaling as ds  # noqa: E402 (benchmarks/ is on sys.path: conftest.py)

import rnnext as rx  # noqa: E402


@pytest.fixture(scope="module")
def sizes(request):
    smoke = request.config.getoption("benchmark_disable")
    return (ds.SMOKE_PREDICT, ds.SMOKE_FIT) if smoke else (ds.PREDICT, ds.FIT)


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def cluster(request):
    local, client = ds.cluster(request.param)
    yield request.param, client
    client.close()
    local.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_predict_in_memory(benchmark, sizes, threads):
    model, x = ds.predict_problem(sizes[0])
    benchmark.group = "predict"
    benchmark.extra_info["sequences"] = len(x)

    def run():
        with rx.threads(threads):
            return model.predict(x)

    assert benchmark(run).shape == (len(x), x.shape[1], model.hidden_size)


def test_predict_dask(benchmark, sizes, cluster):
    n, client = cluster
    model, x = ds.predict_problem(sizes[0])
    run = ds.predict_on(client, model, ds.on_workers(client, x, sizes[0]["rows"]))
    benchmark.group = "predict"
    benchmark.extra_info["sequences"] = len(x)
    out = benchmark(run)
    np.testing.assert_array_equal(client.compute(out).result(), model.predict(x))


def test_fit_step_in_memory(benchmark, sizes):
    f = sizes[1]
    model, x, y = ds.fit_problem(f)
    benchmark.group = f"fit epoch of {-(-f['B'] // f['batch_size'])} steps"
    with rx.threads(1):
        steps = benchmark(ds.fit_steps(model, ds.fit_in_memory(model, x, y), f["batch_size"], f["B"]))
    assert steps == -(-f["B"] // f["batch_size"])


def test_fit_step_dask(benchmark, sizes, cluster):
    n, client = cluster
    f = sizes[1]
    model, x, y = ds.fit_problem(f)
    grads_of, parts = ds.fit_on(client, model, ds.on_workers(client, x, f["rows"]), y)
    try:
        # The distributed gradient is the in-memory one, within rounding.
        idx = np.arange(0, f["B"], 3)[: f["batch_size"]]
        params = {k: np.asarray(v) for k, v in model.params.items()}
        value, grads, _ = grads_of(params, idx)
        expected, expected_grads, _, _ = ds.train_loss_and_grads(model, x, y, idx)
        np.testing.assert_allclose(value, expected, rtol=1e-5)
        for k in grads:
            np.testing.assert_allclose(grads[k], expected_grads[k], rtol=1e-4, atol=1e-6)
        benchmark.group = f"fit epoch of {-(-f['B'] // f['batch_size'])} steps"
        assert benchmark(ds.fit_steps(model, grads_of, f["batch_size"], f["B"])) == -(-f["B"] // f["batch_size"])
    finally:
        parts.close()
