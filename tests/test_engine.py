"""One engine: the compiled plan whole or in phases, its NumPy twin, and the fit driver
returning to Python per batch, per epoch or never -- all the same training.

Compiled paths against each other: bitwise (the same kernels in the same order).
Compiled against the NumPy plan, float64: a few steps of sums of <= 32 terms, so
differences stay at rounding level (rtol 1e-10 leaves ~1e5 ulp of room for
reassociation in the GEMMs and loss sums; observed ~1e-14)."""
import io
import contextlib

import numpy as np
import pytest

import nncore as nn

OPTIMIZERS = {
    "sgd": lambda: nn.optim.SGD(lr=0.1),
    "nesterov": lambda: nn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: nn.optim.Adam(lr=0.01, weight_decay=1e-3),
    "rmsprop": lambda: nn.optim.RMSprop(lr=0.01, momentum=0.5, weight_decay=1e-3),
}
CASES = [("softmax_cross_entropy", "softmax", "identity"), ("hinge", "sigmoid", "identity"),
         ("mse", "softplus", "tanh"), ("binary_cross_entropy", "leaky_relu", "identity")]
N = 75                                     # batch 16: the last batch of an epoch has 11 rows


def data(loss):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 3))
    if loss in ("softmax_cross_entropy", "hinge"):
        return X, rng.integers(0, 4, N)
    Y = rng.standard_normal((N, 4))
    return X, (Y if loss == "mse" else (Y > 0).astype(float))


def model(acts, dtype="float64", backend="compiled"):
    return nn.Sequential([nn.Dense(3, 9, acts[0]), nn.Dense(9, 6, "relu", bias=False),
                          nn.Dense(6, 4, acts[1])], seed=2, dtype=dtype, l2=1e-3,
                         backend=backend)


class BatchEvents(nn.callbacks.Callback):
    def __init__(self):
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append((logs["epoch"], batch, logs["size"]))


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss, first, last", CASES)
def test_numpy_plan_matches_compiled_plan(opt, loss, first, last):
    X, y = data(loss)
    w = np.linspace(0.1, 1, N)
    runs = []
    for backend in ("compiled", "numpy"):
        m = model((first, last), backend=backend)
        h = m.fit(X, y, loss=loss, optimizer=OPTIMIZERS[opt](), epochs=3, batch_size=16,
                  sample_weight=w)
        runs.append((m, h))
    (a, ha), (b, hb) = runs
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-10)
    assert a.optimizer.t == b.optimizer.t == 3 * 5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["compiled", "numpy"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss, first, last", CASES)
def test_step_equals_gradients_then_apply(dtype, backend, opt, loss, first, last):
    X, y = data(loss)
    w = np.linspace(0, 1, N)                  # one zero weight
    a, b = model((first, last), dtype, backend), model((first, last), dtype, backend)
    oa, ob = OPTIMIZERS[opt](), OPTIMIZERS[opt]()
    for start in range(0, N, 16):
        rows = slice(start, start + 16)
        va = a.train_step(X[rows], y[rows], loss, oa, sample_weight=w[rows])
        vb = b.compute_gradients(X[rows], y[rows], loss, sample_weight=w[rows])
        b.apply_gradients(ob)
        assert va == vb
        for p, q in zip(a.parameters() + a.gradients(), b.parameters() + b.gradients()):
            assert np.array_equal(p, q)
    assert oa.t == ob.t == 5
    for sa, sb in zip(oa.state.values(), ob.state.values()):
        for p, q in zip(sa, sb):
            assert np.array_equal(p, q)


def test_compute_gradients_leaves_weights_and_matches_backward():
    X, y = data("softmax_cross_entropy")
    m = model(("tanh", "identity"))
    before = [p.copy() for p in m.parameters()]
    value = m.compute_gradients(X, y, "softmax_cross_entropy")
    assert all(np.array_equal(p, q) for p, q in zip(before, m.parameters()))
    # the same gradients by the layer API: forward, loss, backward, + l2 W
    got = [g.copy() for g in m.gradients()]
    out = m.forward(X)
    ref_value, grad = nn.losses.get("softmax_cross_entropy")(out, y)
    m.backward(grad)
    ref = [g + (m.l2 * p if is_weight else 0)
           for g, p, is_weight in zip(m.gradients(), m.parameters(), m.decay_mask())]
    ref_value += 0.5 * m.l2 * sum(float(np.sum(layer.weight ** 2)) for layer in m.layers)
    assert value == pytest.approx(ref_value, rel=1e-12)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)


def test_apply_gradients_uses_changed_gradients():
    """What users who clip gradients do: change them between the phases."""
    X, y = data("mse")
    a, b = model(("tanh", "identity")), model(("tanh", "identity"))
    a.compute_gradients(X, y, "mse")
    b.compute_gradients(X, y, "mse")
    for g in b.gradients():
        np.clip(g, -1e-3, 1e-3, out=g)
    a.apply_gradients(nn.optim.SGD(lr=1.0))
    b.apply_gradients(nn.optim.SGD(lr=1.0))
    moved = [np.max(np.abs(p - q)) for p, q in zip(a.parameters(), b.parameters())]
    assert max(moved) > 1e-3
    # clipped: a weight moves by at most lr * 1e-3 from where both started
    c = model(("tanh", "identity"))
    for p, q in zip(b.parameters(), c.parameters()):
        assert np.max(np.abs(p - q)) <= 1e-3 + 1e-12


def test_apply_gradients_refuses_non_finite_and_changes_nothing():
    X, y = data("mse")
    m = model(("tanh", "identity"))
    opt = nn.optim.Adam(lr=0.1)
    m.compute_gradients(X, y, "mse")
    m.apply_gradients(opt)
    m.compute_gradients(X, y, "mse")
    m.layers[1].grad_weight[0, 0] = np.nan
    before = [p.copy() for p in m.parameters()] + [s.copy() for v in opt.state.values()
                                                   for s in v]
    with pytest.raises(nn.TrainingDiverged, match="weights are unchanged"):
        m.apply_gradients(opt)
    after = m.parameters() + [s for v in opt.state.values() for s in v]
    assert opt.t == 1
    assert all(np.array_equal(p, q) for p, q in zip(before, after))


@pytest.mark.parametrize("opt", ["nesterov", "adam", "rmsprop"])
def test_verbose_callbacks_and_silent_fit_are_bitwise_equal(opt):
    X, y = data("softmax_cross_entropy")
    runs = []
    for kind in ("silent", "verbose1", "verbose2", "epoch-callback", "batch-callback",
                 "validation"):
        m = model(("relu", "identity"), dtype="float32")
        kw = dict(loss="softmax_cross_entropy", optimizer=OPTIMIZERS[opt](), epochs=4,
                  batch_size=16, sample_weight=np.linspace(0.5, 1, N))
        events = BatchEvents()
        if kind.startswith("verbose"):
            kw["verbose"] = int(kind[-1])
        elif kind == "epoch-callback":
            kw["callbacks"] = [nn.callbacks.LambdaCallback(on_epoch_end=lambda *a: None)]
        elif kind == "batch-callback":
            kw["callbacks"] = [events]
        elif kind == "validation":
            kw["validation_data"] = (X[:10], y[:10])
        with contextlib.redirect_stdout(io.StringIO()):
            h = m.fit(X, y, **kw)
        runs.append((kind, m, {k: v for k, v in h.history.items() if not k.startswith("val")}))
        if kind == "batch-callback":
            # every batch reported once, in order, with its size (the last one partial)
            assert events.seen == [(e, b, 16 if b < 4 else 11) for e in range(4)
                                   for b in range(5)]
    _, ref, ref_h = runs[0]
    for kind, m, h in runs[1:]:
        assert h == ref_h, kind
        for p, q in zip(ref.parameters(), m.parameters()):
            assert np.array_equal(p, q), kind


def test_plan_resumes_anywhere_bitwise():
    """StepPlan.run stopped after any number of batches and resumed gives the same run."""
    X, y = data("softmax_cross_entropy")
    X = X.astype(np.float32)
    results = []
    for max_batches in (0, 1, 3, 7):
        m = model(("tanh", "identity"), dtype="float32")
        opt = nn.optim.Adam(lr=0.01)
        plan = m._plan(nn.losses.get("softmax_cross_entropy"), opt, 16)
        orders = np.stack([np.random.default_rng(e).permutation(N) for e in range(3)])
        sums = np.zeros((3, 3))
        e = b = step = 0
        while e < 3:
            e, b, status, _, _, step = plan.run(X, None, y.astype(np.intp), None, orders, 16,
                                                np.full(3, 0.01), sums, e, b, max_batches,
                                                0.0, step, 1)
            assert status == 0
        results.append(([p.copy() for p in m.parameters()], sums, step))
    for params, sums, step in results[1:]:
        assert step == results[0][2] == 15
        assert np.array_equal(sums, results[0][1])
        assert all(np.array_equal(p, q) for p, q in zip(params, results[0][0]))


def test_plan_returns_on_its_deadline():
    X = np.random.default_rng(0).standard_normal((20000, 8))
    y = np.zeros(20000, np.intp)
    m = nn.MLP([8, 64, 2], seed=0, dtype="float64")
    plan = m._plan(nn.losses.get("softmax_cross_entropy"), nn.optim.SGD(lr=0.01), 1)
    sums = np.zeros((50, 3))
    e, b, status, _, _, step = plan.run(X, None, y, None, None, 1, np.full(50, 0.01), sums,
                                        0, 0, 0, 0.01, 0, 1)
    # 1M batches would take many seconds; the deadline stops it after a few thousand
    assert status == 0 and 0 < step < 20000 * 50 and (e, b) != (50, 0)
    assert sums[:, 1].sum() == step


def test_rmsprop_fit_saves_and_resumes(tmp_path):
    X, y = data("softmax_cross_entropy")
    a = model(("relu", "identity"))
    a.fit(X, y, loss="softmax_cross_entropy", optimizer=nn.optim.RMSprop(lr=0.01, momentum=0.9),
          epochs=2, batch_size=16)
    a.save(tmp_path / "m.npz")
    b = nn.load(tmp_path / "m.npz")
    assert b.optimizer.config() == a.optimizer.config()
    a.fit(X, y, epochs=2, batch_size=16)
    b.fit(X, y, epochs=2, batch_size=16)
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p, q)
