"""rx.optim: SGD, Adam and AdamW against torch.optim step by step, their
argument checks, their state (resumed training) and fit's optimizer and lr
arguments, schedules included."""

import copy

import numpy as np
import pytest

import rnnext as rx
from rnnext import optim

torch = pytest.importorskip("torch")

SHAPES = {"W": (7, 5), "b": (33,), "cube": (3, 4, 17), "scalar": ()}

# (rnnext class, torch class, options): every option of the API, alone and together.
CASES = [
    ("SGD", dict(lr=0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.5, nesterov=True)),
    ("SGD", dict(lr=0.01, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.7, 0.99))),
    ("Adam", dict(lr=0.01, betas=(0.3, 0.9), eps=1e-3)),
    ("Adam", dict(lr=0.01, betas=(0.6, 0.5), weight_decay=0.1)),  # 1 - beta1 >= 0.5: lerp's other branch
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.5, betas=(0.5, 0.95), eps=1e-6)),
    ("AdamW", dict(lr=0.01, weight_decay=0.0)),
]


def case_id(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


def run_both(name, options, dtype, steps, seed):
    """The same random gradients through rx.optim and torch.optim; returns
    both final parameter sets."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in params.values()]
    ours = getattr(optim, name)(**options)
    theirs = getattr(torch.optim, name)(tensors, foreach=False, **options)
    for _ in range(steps):
        # Gradients of scales from 1e-3 to 10, some steps tiny, some large.
        grads = {k: (rng.standard_normal(s) * 10 ** rng.uniform(-3, 1)).astype(dtype) for k, s in SHAPES.items()}
        params = ours.step(params, grads)
        for t, g in zip(tensors, grads.values()):
            t.grad = torch.tensor(g)
        theirs.step()
    return params, {k: t.detach().numpy() for k, t in zip(params, tensors)}


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_matches_torch_over_100_steps(case, dtype):
    name, options = case
    ours, theirs = run_both(name, options, dtype, 100, seed=len(case_id(case)))
    lr = options.get("lr", 1e-3)
    for k in ours:
        assert ours[k].dtype == dtype and ours[k].shape == SHAPES[k]
        if dtype == np.float32 and name == "SGD":
            # SGD's float32 arithmetic is torch's, fused multiply-adds included: the same bits.
            np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
        elif dtype == np.float32:
            # torch's float32 sqrt (MKL's) is not always correctly rounded: the
            # update may differ in its last bit, so atol is 1e-6 of one step.
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=1e-6 * lr, err_msg=k)
        else:
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-12, atol=1e-12 * lr, err_msg=k)


def test_step_leaves_its_inputs_alone(rng):
    params = {"W": rng.standard_normal((3, 4)).astype(np.float32)}
    grads = {"W": rng.standard_normal((3, 4)).astype(np.float32)}
    saved = copy.deepcopy((params, grads))
    for opt in (optim.SGD(0.1, momentum=0.9), optim.Adam(), optim.AdamW()):
        for _ in range(2):
            out = opt.step(params, grads)
        assert not np.shares_memory(out["W"], params["W"])
        np.testing.assert_array_equal(params["W"], saved[0]["W"])
        np.testing.assert_array_equal(grads["W"], saved[1]["W"])


@pytest.mark.parametrize("make,error,match", [
    (lambda: optim.SGD(0.0), ValueError, r"lr: expected a number in \(0"),
    (lambda: optim.SGD(-1.0), ValueError, "lr"),
    (lambda: optim.SGD(float("nan")), ValueError, "lr"),
    (lambda: optim.SGD("1"), TypeError, "lr"),
    (lambda: optim.SGD(0.1, momentum=-0.1), ValueError, "momentum"),
    (lambda: optim.SGD(0.1, nesterov=True), ValueError, "nesterov: Nesterov momentum needs momentum > 0"),
    (lambda: optim.SGD(0.1, momentum=0.9, nesterov=1), TypeError, "nesterov"),
    (lambda: optim.SGD(0.1, weight_decay=-1e-3), ValueError, "weight_decay"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda: optim.Adam(betas=0.9), TypeError, "betas"),
    (lambda: optim.Adam(eps=-1.0), ValueError, "eps"),
    (lambda: optim.AdamW(weight_decay=float("inf")), ValueError, "weight_decay"),
])
def test_argument_checks(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_torch_refuses_what_we_refuse():
    """The checks follow torch's (where torch has one)."""
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError):
        torch.optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        torch.optim.Adam(p, betas=(1.0, 0.999))
    with pytest.raises(ValueError):
        torch.optim.SGD(p, lr=0.1, momentum=-0.1)


def test_state_dict_round_trip_resumes_bit_for_bit(rng):
    params = {"W": rng.standard_normal((3, 4))}
    grads = [{"W": rng.standard_normal((3, 4))} for _ in range(6)]
    for make in (lambda: optim.SGD(0.1, momentum=0.9, nesterov=True), lambda: optim.Adam(0.01),
                 lambda: optim.AdamW(0.01, weight_decay=0.1)):
        straight, p = make(), params
        for g in grads:
            p = straight.step(p, g)
        first, q = make(), params
        for g in grads[:3]:
            q = first.step(q, g)
        saved = first.state_dict()
        first.step(q, grads[3])  # changes first, not the saved copy
        resumed = make()
        resumed.load_state_dict(saved)
        for g in grads[3:]:
            q = resumed.step(q, g)
        np.testing.assert_array_equal(p["W"], q["W"])
    with pytest.raises(ValueError, match="state_dict: missing"):
        optim.Adam().load_state_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="betas"):
        optim.Adam().load_state_dict(dict(optim.Adam().state_dict(), betas=(2.0, 0.5)))


def test_one_optimiser_per_model(rng):
    opt = optim.Adam()
    opt.step({"W": np.zeros((2, 3))}, {"W": np.ones((2, 3))})
    with pytest.raises(ValueError, match="optimizer: its state 'exp_avg' of parameter 'W' is float64 \\(2, 3\\)"):
        opt.step({"W": np.zeros((3, 3))}, {"W": np.ones((3, 3))})


def test_repr():
    assert repr(optim.SGD(0.1, momentum=0.9)) == "SGD(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0)"
    assert repr(optim.AdamW()) == "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"


# ---------------------------------------------------------------- fit with torch's loop


def parity(rng, n=24, T=6):
    x = rng.choice([-1.0, 1.0], size=(n, T, 1)).astype(np.float32)
    y = (np.cumsum(x[..., 0] < 0, axis=1) % 2).astype(np.int64)
    return x, y


@pytest.mark.parametrize("name,options", [("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.1, momentum=0.9)),
                                          ("AdamW", dict(lr=0.01, weight_decay=0.1)),
                                          ("SGD", dict(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.01))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_follows_a_torch_training_loop(rng, name, options, dtype):
    x, y = parity(rng)
    x = x.astype(dtype)
    model = rx.LSTM(1, 8, 2, dtype=dtype, seed=0)
    module, head = model.to_torch()
    model.fit(x, y, loss="cross_entropy", epochs=3, batch_size=8, shuffle=False, progress=False,
              optimizer=getattr(rx.optim, name)(**options))
    params = list(module.parameters()) + list(head.parameters())
    opt = getattr(torch.optim, name)(params, foreach=False, **options)
    for _ in range(3):
        for start in range(0, len(x), 8):
            xb, yb = torch.tensor(x[start:start + 8]), torch.tensor(y[start:start + 8])
            opt.zero_grad()
            logits = head(module(xb)[0])
            torch.nn.functional.cross_entropy(logits.reshape(-1, 2), yb.reshape(-1)).backward()
            opt.step()
    expected = rx.from_torch(module, head)
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-10, 1e-12)  # float32: the gradients' rounding
    for k in model.params:
        np.testing.assert_allclose(model.params[k], expected.params[k], rtol=rtol, atol=atol, err_msg=k)


# ---------------------------------------------------------------- state across fit calls


@pytest.mark.parametrize("optimizer", [lambda: rx.optim.Adam(0.01), lambda: rx.optim.SGD(0.05, momentum=0.9),
                                       lambda: rx.optim.AdamW(0.01)])
@pytest.mark.parametrize("schedule", [None, lambda epoch: 0.02 / (1 + epoch)])
def test_two_fits_continue_one(rng, optimizer, schedule):
    x, y = parity(rng)
    one, two = rx.GRU(1, 6, 2, seed=0), rx.GRU(1, 6, 2, seed=0)
    opt_one, opt_two = optimizer(), optimizer()
    kwargs = dict(loss="cross_entropy", batch_size=8, shuffle=False, progress=False, lr=schedule)
    h1 = one.fit(x, y, epochs=2, optimizer=opt_one, **kwargs)
    h2a = two.fit(x, y, epochs=1, optimizer=opt_two, **kwargs)
    h2b = two.fit(x, y, epochs=1, optimizer=opt_two, **kwargs)
    assert h1["loss"] == h2a["loss"] + h2b["loss"]
    assert opt_one.epochs == opt_two.epochs == 2
    for k in one.params:
        np.testing.assert_array_equal(one.params[k], two.params[k], err_msg=k)
    if schedule is not None:
        assert opt_two.lr == 0.02 / 2


def test_a_name_starts_afresh_each_fit(rng):
    x, y = parity(rng)
    one, two = rx.GRU(1, 6, 2, seed=0), rx.GRU(1, 6, 2, seed=0)
    kwargs = dict(loss="cross_entropy", batch_size=8, shuffle=False, progress=False)
    one.fit(x, y, epochs=2, **kwargs)
    two.fit(x, y, epochs=1, **kwargs)
    two.fit(x, y, epochs=1, **kwargs)
    assert not np.array_equal(one.params["W_h_l0"], two.params["W_h_l0"])  # Adam's bias correction restarted


def test_lr_and_an_optimiser_object(rng):
    x, y = parity(rng, 8)
    model = rx.RNN(1, 4, 2, seed=0)
    opt = rx.optim.SGD(0.5)
    model.fit(x, y, loss="cross_entropy", optimizer=opt, progress=False)
    assert opt.lr == 0.5  # None: the object's own
    model.fit(x, y, loss="cross_entropy", optimizer=opt, lr=0.1, progress=False)
    assert opt.lr == 0.1  # a float replaces it, and stays
    # The string optimisers: lr defaults to 1e-3, SGD has momentum 0.9.
    a, b = rx.RNN(1, 4, 2, seed=0), rx.RNN(1, 4, 2, seed=0)
    a.fit(x, y, loss="cross_entropy", optimizer="sgd", shuffle=False, progress=False)
    b.fit(x, y, loss="cross_entropy", optimizer=rx.optim.SGD(1e-3, momentum=0.9), shuffle=False, progress=False)
    np.testing.assert_array_equal(a.params["W_h_l0"], b.params["W_h_l0"])
    c = rx.RNN(1, 4, 2, seed=0)
    c.fit(x, y, loss="cross_entropy", optimizer="adamw", shuffle=False, progress=False)
    d = rx.RNN(1, 4, 2, seed=0)
    d.fit(x, y, loss="cross_entropy", optimizer=rx.optim.AdamW(), shuffle=False, progress=False)
    np.testing.assert_array_equal(c.params["W_h_l0"], d.params["W_h_l0"])


def test_schedule_sets_each_epochs_rate(rng):
    x, y = parity(rng, 8)
    seen = []

    def schedule(epoch):
        seen.append(epoch)
        return 0.1 * 0.5**epoch

    opt = rx.optim.SGD(1.0)
    rates = []
    rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", epochs=3, optimizer=opt, lr=schedule, progress=False,
                                callbacks=[lambda epoch, logs: rates.append(opt.lr)])
    assert seen == [0, 1, 2] and rates == [0.1, 0.05, 0.025]
    # Same as three one-epoch fits at those rates by hand.
    a, b = rx.RNN(1, 4, 2, seed=0), rx.RNN(1, 4, 2, seed=0)
    a.fit(x, y, loss="cross_entropy", epochs=2, optimizer="sgd", lr=lambda e: [0.3, 0.1][e], shuffle=False,
          progress=False)
    by_hand = rx.optim.SGD(0.3, momentum=0.9)
    b.fit(x, y, loss="cross_entropy", optimizer=by_hand, shuffle=False, progress=False)
    b.fit(x, y, loss="cross_entropy", optimizer=by_hand, lr=0.1, shuffle=False, progress=False)
    np.testing.assert_array_equal(a.params["W_h_l0"], b.params["W_h_l0"])


@pytest.mark.parametrize("schedule,error,match", [
    (lambda epoch: 0.0, ValueError, "lr: the schedule returned 0.0 for epoch 0; expected a positive finite"),
    (lambda epoch: float("nan") if epoch == 1 else 0.1, ValueError, "lr: the schedule returned nan for epoch 1"),
    (lambda epoch: float("inf"), ValueError, "lr: the schedule returned inf"),
    (lambda epoch: "0.1", TypeError, "lr: the schedule returned str for epoch 0"),
    (lambda epoch: None, TypeError, "lr: the schedule returned NoneType"),
])
def test_schedule_values_are_checked(rng, schedule, error, match):
    x, y = parity(rng, 8)
    with pytest.raises(error, match=match):
        rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", epochs=2, lr=schedule, progress=False)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(optimizer="rmsprop"), ValueError, "optimizer: expected 'sgd', 'adam', 'adamw' or an rnnext.optim"),
    (dict(optimizer=torch.optim.Adam), TypeError, "optimizer: expected"),
    (dict(optimizer=None), TypeError, "optimizer"),
    (dict(lr="fast"), TypeError, "lr: expected a positive number or a callable"),
    (dict(lr=-0.1), ValueError, "lr: expected a positive number"),
    (dict(lr=lambda e: 0.1, callbacks=[rx.callbacks.ReduceLROnPlateau("loss")]), ValueError,
     "callbacks: ReduceLROnPlateau and a callable lr"),
])
def test_fit_optimizer_errors(rng, kwargs, error, match):
    x, y = parity(rng, 8)
    with pytest.raises(error, match=match):
        rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", progress=False, **kwargs)


def test_an_optimiser_lr_is_not_changed_by_a_refused_fit(rng):
    x, y = parity(rng, 8)
    opt = rx.optim.Adam(0.01)
    with pytest.raises(ValueError, match="epochs"):
        rx.RNN(1, 4, 2, seed=0).fit(x, y, loss="cross_entropy", optimizer=opt, lr=0.5, epochs=0, progress=False)
    assert opt.lr == 0.01 and opt.state == {} and opt.epochs == 0
