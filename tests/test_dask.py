"""rnnext.dask (API.md section 7) on a real distributed.LocalCluster: predict equal bit
for bit to model.predict, lazy, the model broadcast once, data larger than a worker's
memory, fit equal to model.fit, a worker killed mid-compute, and the refusals."""

import os
import signal
import time
import warnings

import numpy as np
import pytest

import rnnext as rx
from helpers import TOLERANCE, run_python

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import rnnext.dask as rd  # noqa: E402 (after the skips: it needs dask)
from rnnext import _dask_fit  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield cluster, client


@pytest.fixture
def client(cluster):
    """The module's client, both workers up (a test may have killed one)."""
    client = cluster[1]
    client.wait_for_workers(2, timeout=60)
    return client


def chunked(x, batch_first, rows):
    return da.from_array(x, chunks=(rows, -1, -1) if batch_first else (-1, rows, -1))


# ---------------------------------------------------------------- import


def test_import_rnnext_does_not_import_dask():
    result = run_python("""
        import rnnext, sys
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        assert not loaded, loaded
        import rnnext.dask
        assert "dask.array" in sys.modules
        print("ok")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "ok"


# ---------------------------------------------------------------- predict equality

CELLS = {
    "rnn_tanh": (rx.RNN, dict(activation="tanh")),
    "rnn_sigmoid": (rx.RNN, dict(activation="sigmoid")),
    "rnn_relu": (rx.RNN, dict(activation="relu")),
    "lstm": (rx.LSTM, {}),
    "lstm_proj": (rx.LSTM, dict(proj_size=3)),
    "gru": (rx.GRU, {}),
    "gru_onnx": (rx.GRU, dict(linear_before_reset=False)),
}


def variants(model, x, lengths, batch_first):
    """(lazy result, expected) for the options of predict, on uneven chunks."""
    X = chunked(x, batch_first, 4)  # 11 rows: chunks of 4, 4, 3
    L = da.from_array(lengths, chunks=5)  # rechunked to X's chunks by predict
    cases = [(None, True, None), (lengths, True, 3), (L, False, None), (lengths, False, 2)]
    for lens, seqs, size in cases:
        plain = None if lens is None else lengths
        expected = model.predict(x, lengths=plain) if seqs else model(x, lengths=plain, return_sequences=False)[0]
        yield rd.predict(model, X, lengths=lens, return_sequences=seqs, batch_size=size), expected


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_predict_equals_in_memory_bit_for_bit(client, cell):
    cls, options = CELLS[cell]
    rng = np.random.default_rng(len(cell))
    lazy, expected = [], []
    # Half of layers x directions x head x layout (even parity): every pair of them in all four combinations.
    combinations = [c for c in np.ndindex(2, 2, 2, 2) if sum(c) % 2 == 0]
    for number, (layers, bidirectional, head, batch_first) in enumerate(combinations):
        dtype = "float64" if number % 3 == 0 else "float32"
        model = cls(3, 5, 4 if head else None, num_layers=layers + 1, bidirectional=bool(bidirectional),
                    batch_first=bool(batch_first), dtype=dtype, seed=number, **options)
        x = rng.standard_normal((11, 7, 3) if batch_first else (7, 11, 3)).astype(np.float32)
        for out, want in variants(model, x, rng.integers(1, 8, 11), batch_first):
            assert out.shape == want.shape and out.dtype == want.dtype
            # Chunked like X along the batch axis (and time with return_sequences), one chunk of features.
            rows, steps, features = ((4, 4, 3),), ((7,),) if out.ndim == 3 else (), ((want.shape[-1],),)
            assert out.chunks == (rows + steps if batch_first or out.ndim == 2 else steps + rows) + features
            lazy.append(out)
            expected.append(want)
    got = dask.compute(*lazy)  # one round trip for every variant
    for result, want in zip(got, expected):
        assert result.dtype == want.dtype
        np.testing.assert_array_equal(result, want)


@pytest.mark.parametrize("precision", ["int8", "bfloat16"])
def test_predict_quantized_bit_for_bit(client, precision):
    rng = np.random.default_rng(1)
    lazy, expected = [], []
    for cls in (rx.RNN, rx.LSTM, rx.GRU):
        for batch_first in (True, False):
            model = cls(6, 8, 3, num_layers=2, bidirectional=True, batch_first=batch_first, seed=2).quantize(precision)
            x = rng.standard_normal((11, 5, 6) if batch_first else (5, 11, 6)).astype(np.float32)
            for out, want in variants(model, x, rng.integers(1, 6, 11), batch_first):
                lazy.append(out)
                expected.append(want)
    for result, want in zip(dask.compute(*lazy), expected):
        np.testing.assert_array_equal(result, want)


def test_predict_on_local_threads_without_a_client(client):
    model = rx.GRU(3, 5, 2, num_layers=2, seed=0)
    x = np.random.default_rng(0).standard_normal((9, 6, 3))
    with dask.config.set(scheduler="threads"):
        assert rd.active_client() is None
        out = rd.predict(model, chunked(x, True, 2))
        np.testing.assert_array_equal(out.compute(), model.predict(x))


# ---------------------------------------------------------------- laziness, graph size, threads


def test_predict_is_lazy(client, monkeypatch):
    calls = []
    block = rd.predict_block
    monkeypatch.setattr(rd, "predict_block", lambda *args, **kwargs: calls.append(1) or block(*args, **kwargs))
    model = rx.LSTM(3, 4, seed=0)
    x = np.random.default_rng(0).standard_normal((10, 5, 3)).astype(np.float32)
    with dask.config.set(scheduler="synchronous"):  # in this process, where calls can be counted
        out = rd.predict(model, chunked(x, True, 3), lengths=np.full(10, 5))
        assert calls == []  # building the graph ran nothing, meta included
        assert type(out._meta) is np.ndarray and out._meta.size == 0 and out.dtype == np.float32
        np.testing.assert_array_equal(out.compute(), model.predict(x))
    assert len(calls) == 4  # one per block


def test_predict_sends_nothing_to_the_scheduler_until_computed(client):
    model = rx.RNN(3, 4, seed=0)
    out = rd.predict(model, chunked(np.ones((8, 5, 3)), True, 2))

    def known(dask_scheduler, prefix=out.name):
        return sum(prefix in str(key) for key in dask_scheduler.tasks)

    assert client.run_on_scheduler(known) == 0
    held = out.persist()
    distributed.wait(held)
    assert client.run_on_scheduler(known) == 4
    np.testing.assert_array_equal(held.compute(), model.predict(np.ones((8, 5, 3))))


def test_large_model_broadcast_once_without_a_graph_warning(client):
    model = rx.LSTM(8, 1200, 4, seed=0)  # 23 MB of parameters: past distributed's 10 MB graph warning
    assert sum(p.nbytes for p in model.params.values()) > 20e6
    x = np.random.default_rng(0).standard_normal((8, 3, 8)).astype(np.float32)
    X = chunked(x, True, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Sending large graph" would fail here
        out = rd.predict(model, X)
        result = out.compute()
    np.testing.assert_array_equal(result, model.predict(x))
    # The same model put in the graph itself does warn: the check above can fail.
    embedded = da.map_blocks(rd.predict_block, X, None, model, True, None, 0, dtype=np.float32,
                             chunks=(X.chunks[0], (3,), (4,)), meta=np.empty((0, 0, 0), np.float32))
    with pytest.warns(UserWarning, match="Sending large graph"):
        embedded.compute()


def test_tasks_use_their_workers_thread_count(client):
    def in_task():
        import rnnext as rx
        import rnnext.dask as rd

        outside = rx.get_num_threads()
        with rd.task_threads() as n:
            return outside, n, rx.get_num_threads()

    before = client.run(rx.get_num_threads)
    client.run(rx.set_num_threads, 2)  # a process-wide count, as set at import or by hand
    try:
        results = [client.submit(in_task, pure=False).result() for _ in range(2)]
    finally:
        for address, n in before.items():
            client.run(rx.set_num_threads, n, workers=[address])
    assert results == [(2, 1, 1)] * 2  # the worker's nthreads (1), not the process's 2
    assert rd.worker_threads() is None  # the driver is no worker


# ---------------------------------------------------------------- larger than a worker's memory


def generated(block_id, rows=2048, steps=64, features=32):
    return np.random.default_rng(block_id[0]).standard_normal((rows, steps, features), dtype=np.float32)


def peak_rss():
    """This process's peak resident memory since it started (VmHWM: getrusage's
    ru_maxrss would count the parent a spawned worker was forked from)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


def test_predict_larger_than_a_workers_memory(client):
    limit = 300e6
    blocks = 44
    X = da.map_blocks(generated, dtype=np.float32, chunks=((2048,) * blocks, (64,), (32,)),
                      meta=np.empty((0, 0, 0), np.float32))
    assert X.nbytes > 2.4 * limit  # 740 MB, scored by two workers of 300 MB
    model = rx.RNN(32, 4, seed=0)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  memory_limit=limit, silence_logs=40) as small, distributed.Client(small) as c:
        workers = set(c.scheduler_info()["workers"])
        sums = rd.predict(model, X, return_sequences=False).sum(axis=1).compute()
        assert set(c.scheduler_info()["workers"]) == workers  # none was killed for its memory
        peaks = c.run(peak_rss)
    assert max(peaks.values()) < limit, peaks  # chunk by chunk: each worker's peak under its limit
    assert sums.shape == (2048 * blocks,)
    for k in (0, blocks - 1):
        expected = model(generated((k,)), return_sequences=False)[0].sum(axis=1)
        np.testing.assert_array_equal(sums[k * 2048:(k + 1) * 2048], expected)


# ---------------------------------------------------------------- fit

FITS = [
    # (model, loss, target kind, fit options)
    (lambda dt: rx.GRU(3, 6, 4, num_layers=2, bidirectional=True, dtype=dt, seed=0), "cross_entropy", "steps",
     dict(optimizer="adam", lr=1e-2, clip_norm=0.5)),
    (lambda dt: rx.LSTM(3, 5, 2, proj_size=3, batch_first=False, dtype=dt, seed=1), "mse", "last",
     dict(optimizer="sgd", lr=0.05)),
    (lambda dt: rx.RNN(3, 5, dtype=dt, seed=2), "mse", "steps", dict(shuffle=False, batch_size=16)),
]


def data_for(model, loss, kind, rng, B=37, T=9):
    x = rng.standard_normal((B, T, 3))
    lengths = rng.integers(1, T + 1, B)
    O = model.output_size or model.num_directions * model.spec.state_size
    if loss == "cross_entropy":
        y = rng.integers(0, O, (B, T) if kind == "steps" else (B,))
    else:
        y = rng.standard_normal((B, T, O) if kind == "steps" else (B, O))
    if not model.batch_first:
        x = x.swapaxes(0, 1).copy()
        y = y.swapaxes(0, 1).copy() if kind == "steps" else y
    return x, y, lengths


def twin(model):
    other = type(model).from_config(model.config)
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", range(len(FITS)))
def test_fit_equals_in_memory(client, case, dtype, monkeypatch):
    make, loss, kind, options = FITS[case]
    if case == 0:  # the parameters scattered each step, as a large model's are (the others: inside the tasks)
        monkeypatch.setattr(_dask_fit, "SCATTER_ABOVE", 0)
    model = make(dtype)
    x, y, lengths = data_for(model, loss, kind, np.random.default_rng(case))
    options = dict(dict(batch_size=8, epochs=2, seed=3, progress=False), **options)
    remote = twin(model)
    history = model.fit(x, y, loss=loss, lengths=lengths, validation_data=(x, y, lengths), **options)
    X = chunked(x, model.batch_first, 10)  # batches straddle chunks: 37 rows in 10, 10, 10, 7
    Y = da.from_array(y, chunks=5) if case == 0 else y  # dask (rechunked to X's chunks) or NumPy targets
    L = da.from_array(lengths, chunks=20) if case == 1 else lengths
    got = rd.fit(remote, X, Y, loss=loss, lengths=L, validation_data=(X, Y, L), **options)
    tol = TOLERANCE[np.dtype(dtype).type]
    assert got.keys() == history.keys() == {"loss", "val_loss"}
    for key in history:
        np.testing.assert_allclose(got[key], history[key], rtol=tol["rtol"], err_msg=key)
    for name in model.params:
        np.testing.assert_allclose(remote.params[name], model.params[name], **tol, err_msg=name)


def test_fit_without_a_client_and_callbacks(client):
    model = rx.GRU(3, 4, 2, dtype="float64", seed=0)
    x, y, lengths = data_for(model, "cross_entropy", "last", np.random.default_rng(0))
    remote = twin(model)
    seen = []
    stop = lambda epoch, logs: seen.append((epoch, dict(logs))) or epoch == 1  # noqa: E731
    history = model.fit(x, y, loss="cross_entropy", epochs=4, batch_size=6, seed=0, progress=False, callbacks=[stop])
    with dask.config.set(scheduler="threads"):
        got = rd.fit(remote, chunked(x, True, 8), y, loss="cross_entropy", epochs=4, batch_size=6, seed=0,
                     progress=False, callbacks=[stop])
    assert len(history["loss"]) == len(got["loss"]) == 2 and len(seen) == 4
    np.testing.assert_allclose(got["loss"], history["loss"], rtol=1e-10)
    for name in model.params:
        np.testing.assert_allclose(remote.params[name], model.params[name], rtol=1e-10, atol=1e-12)


def test_fit_takes_optimisers_schedules_metrics_and_callbacks(client):
    """Issue 16's options: the same as model.fit, the optimiser's state and
    epoch count carried across two calls, callbacks with their context."""
    model = rx.GRU(3, 4, 2, dtype="float64", seed=0)
    x, y, lengths = data_for(model, "cross_entropy", "steps", np.random.default_rng(1))
    remote = twin(model)
    X = chunked(x, True, 10)
    results = []
    for target, fit, data in ((model, model.fit, x), (remote, lambda *a, **k: rd.fit(remote, *a, **k), X)):
        opt = rx.optim.AdamW(0.02, weight_decay=0.1)
        stop = rx.callbacks.EarlyStopping(monitor="val_accuracy", patience=1)
        options = dict(loss="cross_entropy", lengths=lengths, batch_size=8, seed=0, progress=False,
                       optimizer=opt, lr=lambda epoch: 0.02 / (1 + epoch), metrics=["accuracy"],
                       validation_data=(data, y, lengths))
        first = fit(data, y, epochs=2, **options)
        second = fit(data, y, epochs=3, callbacks=[stop], **options)
        results.append((first, second, opt, stop))
    (h1, h2, opt, stop), (g1, g2, ropt, rstop) = results
    assert g1.keys() == h1.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for ours, theirs in ((g1, h1), (g2, h2)):
        assert len(ours["loss"]) == len(theirs["loss"])
        for key in theirs:
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-10, err_msg=key)
    assert ropt.epochs == opt.epochs and ropt.lr == opt.lr and rstop.best_epoch == stop.best_epoch
    for name in model.params:
        np.testing.assert_allclose(remote.params[name], model.params[name], rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="metrics: 'accuracy'"):
        rd.fit(remote, X, np.zeros((37, 9, 2)), loss="mse", metrics=["accuracy"])


def test_fit_keeps_no_data_on_the_workers_afterwards(client):
    model = rx.RNN(3, 4, seed=0)
    x, y, _ = data_for(model, "mse", "last", np.random.default_rng(0), B=12)
    rd.fit(model, chunked(x, True, 4), y, loss="mse", batch_size=4, progress=False)

    def held(dask_scheduler):
        return sum("make_part" in str(k) or "worker_grads" in str(k) for k in dask_scheduler.tasks)

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(held):  # releases travel asynchronously
        assert time.monotonic() < deadline, "the training data stayed on the workers"
        time.sleep(0.05)


# ---------------------------------------------------------------- refusals


def test_bad_chunking_and_arguments_are_refused(client):
    model = rx.LSTM(3, 4, seed=0)
    x = np.zeros((8, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"X: must be chunked along the batch axis \(axis 0\) only.*time axis 1"):
        rd.predict(model, da.from_array(x, chunks=(4, 2, 3)))
    with pytest.raises(ValueError, match=r"X: .*feature axis 2.*rechunk\(\(rows, -1, -1\)\)"):
        rd.predict(model, da.from_array(x, chunks=(4, 5, 1)))
    with pytest.raises(ValueError, match=r"X: .*axis 1.*time axis 0"):  # batch_first=False: batch is axis 1
        rd.predict(rx.LSTM(3, 4, batch_first=False, seed=0), da.from_array(x, chunks=(2, 8, 3)))
    with pytest.raises(TypeError, match="X: expected a dask array"):
        rd.predict(model, x)
    with pytest.raises(ValueError, match="X: expected a 3-D"):
        rd.predict(model, da.zeros((8, 3), chunks=4))
    with pytest.raises(ValueError, match="X: expected 3 features"):
        rd.predict(model, da.zeros((8, 5, 2), chunks=(4, 5, 2)))
    with pytest.raises(TypeError, match="X: expected an array of real numbers"):
        rd.predict(model, da.from_array(x.astype(complex), chunks=(4, 5, 3)))
    with pytest.raises(TypeError, match="model: rnnext.dask.predict expects"):
        rd.predict(object(), da.from_array(x, chunks=(4, 5, 3)))
    X = da.from_array(x, chunks=(4, 5, 3))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(8,\)"):
        rd.predict(model, X, lengths=np.ones(7, int))
    with pytest.raises(TypeError, match="lengths: expected an integer array"):
        rd.predict(model, X, lengths=da.ones(8, chunks=4))
    with pytest.raises(ValueError, match=r"lengths\[5\] = 6 is outside \[1, T\] with T = 5"):
        rd.predict(model, X, lengths=np.array([1, 2, 3, 4, 5, 6, 1, 1]))  # NumPy: checked now
    lazy = rd.predict(model, X, lengths=da.from_array(np.array([1, 2, 3, 4, 5, 0, 1, 1]), chunks=8))
    with pytest.raises(ValueError, match=r"lengths\[5\] = 0 is outside"):  # dask: by its index in the whole
        lazy.compute()
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        rd.predict(model, X, batch_size=0)
    with pytest.raises(TypeError, match="return_sequences: expected a bool"):
        rd.predict(model, X, return_sequences="yes")


def test_fit_refusals(client):
    model = rx.GRU(3, 4, 2, seed=0)
    X = da.from_array(np.zeros((8, 5, 3)), chunks=(4, 5, 3))
    y = np.zeros((8, 5), int)
    with pytest.raises(TypeError, match="tbptt is not supported"):
        rd.fit(model, X, y, loss="cross_entropy", tbptt=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        rd.fit(model, X, y, loss="cross_entropy", epoch=2)
    with pytest.raises(ValueError, match="dropout=0.5 is not supported"):
        rd.fit(rx.GRU(3, 4, num_layers=2, dropout=0.5, seed=0), X, y, loss="cross_entropy")
    with pytest.raises(ValueError, match="quantized"):
        rd.fit(model.quantize("int8"), X, y, loss="cross_entropy")
    with pytest.raises(ValueError, match=r"y: expected shape \(8, 5\)"):
        rd.fit(model, X, np.zeros((8, 4), int), loss="cross_entropy")
    with pytest.raises(TypeError, match="y: cross_entropy expects integer class ids"):
        rd.fit(model, X, np.zeros((8, 5)), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"target: class ids must be in \[0, 2\)"):  # checked on the workers
        rd.fit(model, X, np.full((8, 5), 2), loss="cross_entropy", progress=False)
    with pytest.raises(ValueError, match="X: must be chunked along the batch axis"):
        rd.fit(model, X.rechunk((4, 1, 3)), y, loss="cross_entropy")
    with pytest.raises(ValueError, match="lr: expected a positive number"):
        rd.fit(model, X, y, loss="cross_entropy", lr=0)
    with pytest.raises(ValueError, match=r"lengths\[0\] = 0 is outside"):
        rd.fit(model, X, y, loss="cross_entropy", lengths=np.zeros(8, int))
    with pytest.raises(ValueError, match="validation_data: expected"):
        rd.fit(model, X, y, loss="cross_entropy", validation_data=(X,))


# ---------------------------------------------------------------- a worker killed mid-predict (last: it restarts one)


def test_worker_killed_mid_predict_is_retried(client):
    model = rx.LSTM(32, 192, 8, seed=0)
    x = np.random.default_rng(0).standard_normal((384, 100, 32)).astype(np.float32)
    expected = model.predict(x)
    out = rd.predict(model, chunked(x, True, 32))  # 12 blocks of a few tenths of a second each
    pids = client.run(os.getpid)
    future = client.compute(out)

    def holders(dask_scheduler, prefix=out.name):
        return sorted({ws.address for key, ts in dask_scheduler.tasks.items()
                       if prefix in str(key) and ts.state == "memory" for ws in ts.who_has})

    deadline = time.monotonic() + 60
    while not (held := client.run_on_scheduler(holders)):  # a block done: kill the worker that holds it
        assert time.monotonic() < deadline and not future.done()
        time.sleep(0.02)
    victim = held[0]
    os.kill(pids[victim], signal.SIGKILL)
    result = future.result(timeout=120)
    assert victim not in client.scheduler_info()["workers"]  # it really died; its blocks were computed again
    np.testing.assert_array_equal(result, expected)
