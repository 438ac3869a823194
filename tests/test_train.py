"""The training plans (nncore._kernels.train.StepPlan and its twin
nncore.reference.StepPlan) against the layer-by-layer path (tests/layerwise.py), and the
step in phases.

The compiled plan and the layer path call the same kernels in the same order, so
weights and losses must be bitwise equal; against the NumPy plan the tolerance
is rounding only."""
from pathlib import Path

import numpy as np
import pytest

import layerwise
from conftest import run_with_simd
import nncore as nn
from nncore import functional as F

OPTIMIZERS = {
    "sgd": lambda: nn.optim.SGD(lr=0.1),
    "momentum": lambda: nn.optim.SGD(lr=0.1, momentum=0.9),
    "nesterov": lambda: nn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: nn.optim.Adam(lr=0.01, weight_decay=1e-3),
    "rmsprop": lambda: nn.optim.RMSprop(lr=0.01, weight_decay=1e-3),
    "rmsprop_momentum": lambda: nn.optim.RMSprop(lr=0.005, alpha=0.9, momentum=0.8),
}
# (loss, first hidden activation, output activation)
CASES = [("softmax_cross_entropy", "softmax", "identity"), ("hinge", "sigmoid", "identity"),
         ("mse", "softplus", "tanh"), ("binary_cross_entropy", "leaky_relu", "identity")]


def data(loss):
    X, labels = nn.datasets.spiral(50, 3)
    rng = np.random.default_rng(0)
    if loss in ("softmax_cross_entropy", "hinge"):
        return X, labels
    Y = rng.standard_normal((len(X), 3))
    return X, (Y if loss == "mse" else (Y > 0).astype(float))


def trained(loss, acts, opt, dtype, fused, hidden=(20, 12), batch_size=16, epochs=3, **fit):
    """A 2-h1-h2-3 network (the middle layer relu without bias) trained by the compiled
    fit (fused) or layer by layer."""
    X, y = data(loss)
    h1, h2 = hidden
    model = nn.Sequential([nn.Dense(2, h1, acts[0]), nn.Dense(h1, h2, "relu", bias=False),
                           nn.Dense(h2, 3, acts[1])], seed=0, dtype=dtype, l2=1e-3)
    run = model.fit if fused else lambda *a, **k: layerwise.fit(model, *a, **k)
    history = run(X, y, loss=loss, optimizer=OPTIMIZERS[opt](), epochs=epochs,
                  batch_size=batch_size, **fit)
    return model, history


# 2-20-12-3 in batches of 16 runs the team path; 2-4-3-3 in batches of 5 (every product
# at most 60 multiply-adds) runs grads_small / apply_small.
NETWORKS = {"team": dict(hidden=(20, 12), batch_size=16, epochs=3),
            "small": dict(hidden=(4, 3), batch_size=5, epochs=2)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss, first, last", CASES)
@pytest.mark.parametrize("net", sorted(NETWORKS))
def test_fused_equals_layer_by_layer(net, dtype, opt, loss, first, last):
    weights = np.linspace(0, 1, 150)
    a, ha = trained(loss, (first, last), opt, dtype, True, sample_weight=weights,
                    **NETWORKS[net])
    b, hb = trained(loss, (first, last), opt, dtype, False, sample_weight=weights,
                    **NETWORKS[net])
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p, q)
    assert ha["loss"] == hb["loss"]


SMALL_WITH_GENERIC_KERNELS = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
import test_train as tt
from nncore._kernels import gemm
assert gemm.SIMD_PATH == "generic", gemm.SIMD_PATH
weights = np.linspace(0, 1, 150)
for dtype in ("float32", "float64"):
    for opt in sorted(tt.OPTIMIZERS):
        for loss, first, last in tt.CASES:
            runs = [tt.trained(loss, (first, last), opt, dtype, fused, sample_weight=weights,
                               **tt.NETWORKS["small"]) for fused in (True, False)]
            (a, ha), (b, hb) = runs
            same = all(np.array_equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
            print(dtype, opt, loss, "ok" if same and ha["loss"] == hb["loss"] else "DIFFERENT")
"""


def test_small_step_equals_layer_by_layer_with_generic_kernels():
    """The small step's portable build (no fma: NNCORE_SIMD=generic) against the layer
    path on the same kernels, every case of test_fused_equals_layer_by_layer."""
    out = run_with_simd(SMALL_WITH_GENERIC_KERNELS.format(tests=str(Path(__file__).parent)),
                        "generic").split("\n")
    lines = [line for line in out if line]
    assert len(lines) == 2 * len(OPTIMIZERS) * len(CASES)
    assert all(line.endswith(" ok") for line in lines), [l for l in lines if "ok" not in l]


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_fused_matches_numpy_backend_float64(opt):
    X, y = data("softmax_cross_entropy")
    models = []
    for backend in ("compiled", "numpy"):
        m = nn.MLP([2, 16, 3], activation="tanh", seed=1, dtype="float64", backend=backend)
        m.fit(X, y, loss="softmax_cross_entropy", optimizer=OPTIMIZERS[opt](), epochs=2,
              batch_size=32)
        models.append(m)
    # 10 steps of sums of <= 32 terms: rounding differences stay near 1e-15
    for p, q in zip(models[0].parameters(), models[1].parameters()):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)


def test_non_finite_loss_updates_nothing():
    model = nn.MLP([2, 4, 3], seed=0, dtype="float64")
    before = [p.copy() for p in model.parameters()]
    opt = nn.optim.Adam(lr=0.1)
    X = np.array([[1e308, 1e308]])
    with pytest.raises(nn.TrainingDiverged):
        model.train_step(X, [0], loss="softmax_cross_entropy", optimizer=opt)
    assert opt.t == 0
    for p, q in zip(before, model.parameters()):
        assert np.array_equal(p, q)


class Noop(nn.callbacks.Callback):
    """A callback with batch events: the plan hands control back after every batch."""

    def on_train_batch_end(self, batch, logs=None):
        pass


class EpochNoop(nn.callbacks.Callback):
    """A callback of epoch ends only: the plan hands control back after every epoch."""


class LayerwiseModel:
    """train_step and fit of a model through the layer-by-layer path."""

    def __init__(self, model):
        self.model = model

    def train_step(self, X, y, loss, optimizer):
        return layerwise.train_step(self.model, X, y, loss, optimizer)

    def fit(self, X, y, *, loss, optimizer, callbacks=(), **kw):
        return layerwise.fit(self.model, X, y, loss=loss, optimizer=optimizer, **kw)

    def __getattr__(self, name):
        return getattr(self.model, name)


def one_weight(weight, dtype="float32", fused=True):
    model = nn.Sequential([nn.Dense(1, 1)], dtype=dtype)
    model.layers[0].weight[...] = weight
    return model if fused else LayerwiseModel(model)


def state(model, opt):
    """Copies of the parameters, the optimizer's state arrays and its step count."""
    arrays = [a for v in opt.state.values() for a in v]
    return [p.copy() for p in model.parameters() + arrays], opt.t


def assert_same_state(a, b):
    assert a[1] == b[1]
    assert len(a[0]) == len(b[0])
    for p, q in zip(a[0], b[0]):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_update_is_all_or_nothing(fused, opt):
    model = one_weight(0.5, fused=fused)
    optimizer = OPTIMIZERS[opt]()
    model.train_step([[1.0]], [[1.0]], "mse", optimizer)      # a finite step: state != 0
    # a gradient that is not finite while the loss is (it is summed in float64):
    # out = 0.5e20, dw = out * x = 5e39 overflows float32
    before = state(model, optimizer)
    with pytest.raises(nn.TrainingDiverged, match="a gradient or the update would be NaN"):
        model.train_step([[1e20]], [[0.0]], "mse", optimizer)
    assert_same_state(state(model, optimizer), before)
    # finite gradients, but the update overflows: with w = 3e38 and x = 1, SGD with
    # lr 3 sends w to about -6e38; Adam with lr 1e39 (inf in float32) to -inf. The
    # weight is set between calls, so the plan has to measure it again.
    optimizer.lr = {"momentum": 3.0, "adam": 1e39}[opt]
    model.layers[0].weight[...] = 3e38
    before = state(model, optimizer)
    with pytest.raises(nn.TrainingDiverged, match="a gradient or the update would be NaN"):
        model.fit([[1.0]], [[0.0]], loss="mse", optimizer=optimizer, epochs=2)
    assert_same_state(state(model, optimizer), before)


@pytest.mark.parametrize("opt", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("callbacks", [[], [Noop()]], ids=["epochs", "batches"])
def test_huge_weights_update_when_finite(opt, callbacks):
    # |w| = 1e38 is above the bound under which the plan updates without looking
    # (max float / 16): each update is first checked on copies, then applied.
    # (No weight decay: Adam's (wd w)^2 would overflow, and rightly stop training.)
    X = np.array([[1e-30], [2e-30], [-1e-30]])
    y = np.array([[1.0], [0.0], [2.0]])
    runs = []
    for fused in (True, False):
        model = one_weight(1e38, fused=fused)
        optimizer = {"sgd": nn.optim.SGD(lr=0.1), "adam": nn.optim.Adam(lr=0.01),
                     "momentum": nn.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)}[opt]
        model.fit(X, y, loss="mse", optimizer=optimizer, epochs=4, batch_size=2,
                  shuffle=False, callbacks=callbacks)
        runs.append(model.parameters())
    assert runs[0][0][0, 0] == np.float32(1e38)             # w - tiny steps
    assert runs[0][1][0] != 0                                # the bias did learn
    for p, q in zip(*runs):
        assert np.array_equal(p, q)


def test_plan_checks_its_arrays():
    w = np.zeros((3, 2)); gw = np.zeros((3, 2)); gb = np.zeros(3)
    z = np.zeros((4, 3)); gz = np.zeros((4, 3)); gx = np.zeros((4, 2))
    spec = dict(n_in=2, n_out=3, activation="relu", slope=0.0, weight=w, bias=None,
                grad_weight=gw, grad_bias=gb, z=z, a=z.copy(), grad_z=gz, grad_x=gx)
    SGD = dict(hyper=dict(momentum=0.0, nesterov=False))
    F.train_plan([spec], loss="mse", batch_max=4, **SGD)    # a valid plan
    with pytest.raises(ValueError, match=r"grad_x'\] must have shape \(4, 2\)"):
        F.train_plan([dict(spec, grad_x=np.zeros((3, 2)))], loss="mse", batch_max=4, **SGD)
    with pytest.raises(TypeError, match=r"grad_weight'\] must have dtype float64"):
        F.train_plan([dict(spec, grad_weight=gw.astype(np.float32))], loss="mse", batch_max=4,
                     **SGD)
    with pytest.raises(ValueError, match=r"lacks the optimizer state state1"):
        F.train_plan([spec], loss="mse", batch_max=4, optimizer="adam",
                     hyper=dict(beta1=0.9, beta2=0.999, eps=1e-8))
    with pytest.raises(ValueError, match=r"hyper: adam needs beta1, beta2, eps"):
        F.train_plan([spec], loss="mse", batch_max=4, optimizer="adam")
    with pytest.raises(ValueError, match=r"hyper: sgd takes momentum, nesterov, not beta1"):
        F.train_plan([spec], loss="mse", batch_max=4, hyper=dict(beta1=0.9))
    with pytest.raises(ValueError, match=r"loss must be one of"):
        F.train_plan([spec], loss="l1", batch_max=4, **SGD)
    # one buffer for z and a only where f' follows from a
    shared = dict(spec, a=z, grad_z=None)
    F.train_plan([shared], loss="mse", batch_max=4, **SGD)
    F.train_plan([dict(shared, activation="leaky_relu", slope=0.1)], loss="mse", batch_max=4,
                 **SGD)
    for act, slope in (("softplus", 0.0), ("softmax", 0.0), ("leaky_relu", -0.5)):
        with pytest.raises(ValueError, match=rf"z is a, but {act}' needs z"):
            F.train_plan([dict(shared, activation=act, slope=slope)], loss="mse",
                         batch_max=4, **SGD)
    plan = F.train_plan([spec], loss="mse", batch_max=4, **SGD)
    x = np.zeros((4, 2)); t = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"outside \[1, 4\]"):
        plan.step(np.zeros((5, 2)), np.zeros((5, 3)), None, None, 0.1, 0, 1)
    with pytest.raises(TypeError, match=r"plan's dtype"):
        plan.step(x.astype(np.float32), t, None, None, 0.1, 0, 1)
    with pytest.raises(ValueError, match=r"exactly one of t and y"):
        plan.step(x, None, None, None, 0.1, 0, 1)
    wide = np.zeros((4, 6))
    for name, args in (("X", (wide[:, :2], t)), ("t", (x, wide[:, :3]))):
        with pytest.raises(ValueError, match=rf"StepPlan: {name} must be C-contiguous"):
            plan.step(*args, None, None, 0.1, 0, 1)
    for bad in ([0, 1, 2, 4], [-1, 1, 2, 3], [0, 1, 2, -2**62]):   # the last, the first
        with pytest.raises(ValueError, match=r"orders holds a row outside"):
            plan.run(x, t, None, None, np.array([[0, 1, 2, 3], bad], np.intp), 2,
                     np.ones(2), np.zeros((2, 3)), 0, 0, 0, 0.0, 0, 1)
    with pytest.raises(ValueError, match=r"start \(epoch 0, batch 2\) outside"):
        plan.run(x, t, None, None, None, 2, np.ones(1), np.zeros((1, 3)), 0, 2, 0, 0.0, 0, 1)
    status, value, acc, t_adam = plan.step(x, t, None, None, 0.1, 0, 1)
    assert status == 0 and value == 0.0                 # zero weights, zero targets


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("loss, first, last", CASES)
def test_epochs_in_one_call_equal_the_per_batch_loop(dtype, opt, loss, first, last):
    X, y = data(loss)
    weights = np.linspace(0, 1, len(X))
    runs = []
    for callbacks in ([], [Noop()]):
        model = nn.Sequential([nn.Dense(2, 20, first), nn.Dense(20, 3, last)], seed=3,
                              dtype=dtype, l2=1e-3)
        optimizer = OPTIMIZERS[opt]()
        optimizer.schedule = nn.optim.StepDecay(2, 0.5)
        history = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=5, batch_size=16,
                            sample_weight=weights, callbacks=callbacks)
        runs.append((model, history, optimizer))
    (a, ha, oa), (b, hb, ob) = runs
    for p, q in zip(a.parameters(), b.parameters()):
        assert np.array_equal(p, q)
    assert ha.history == hb.history
    assert oa.epoch == ob.epoch == 5 and oa.t == ob.t > 0


def test_epochs_in_one_call_stop_on_divergence():
    X, y = data("mse")
    for callbacks in ([], [Noop()]):
        model = nn.MLP([2, 8, 3], seed=0, dtype="float64")
        with pytest.raises(nn.TrainingDiverged, match=r"at epoch \d+, batch \d+"):
            model.fit(X, y * 1e200, loss="mse", optimizer=nn.optim.SGD(lr=1.0), epochs=3,
                      batch_size=8, callbacks=callbacks)
        assert all(np.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("opt, state", [("adam", "v"), ("rmsprop", "square_avg")])
@pytest.mark.parametrize("callbacks", [[], [Noop()]], ids=["epochs", "batches"])
def test_negative_square_average_never_reaches_the_weights(opt, state, callbacks):
    """A mean of squares below 0 is finite (so it passes a finiteness check) but its
    square root is NaN: the update must be refused, not written."""
    X, y = data("softmax_cross_entropy")
    model = nn.MLP([2, 8, 3], seed=0, dtype="float32")
    optimizer = OPTIMIZERS[opt]()
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1)
    optimizer.state[state][0][0, 0] = -1.0
    before = [p.copy() for p in model.parameters()]
    with pytest.raises(nn.TrainingDiverged, match="a gradient or the update would be NaN"):
        model.fit(X, y, epochs=2, callbacks=callbacks)
    for p, q in zip(before, model.parameters()):
        assert np.array_equal(p, q)


@pytest.mark.parametrize("backend, threads", [("compiled", 1), ("compiled", 2), ("numpy", 1)])
@pytest.mark.parametrize("shuffled", [False, True], ids=["in-order", "shuffled"])
def test_run_checks_the_rows_of_its_first_epochs(backend, threads, shuffled):
    """check_epochs=1: the batch holding a NaN stops the run with status 4 before its
    step, the steps before it as a run that stops there; check_epochs=0 steps on it
    (its loss is NaN: status 1). A step of this size goes parallel at 2 threads."""
    rng = np.random.default_rng(1)
    n, batch, bad_row = 200, 64, 150
    X = rng.standard_normal((n, 96), dtype=np.float32)
    y = rng.integers(0, 10, n)
    X[bad_row, 7] = np.nan
    orders = np.stack([rng.permutation(n), rng.permutation(n)]) if shuffled else None
    bad_batch = (int(np.flatnonzero(orders[0] == bad_row)[0]) if shuffled else bad_row) // batch

    def run(check_epochs, max_batches=0):
        model = nn.MLP([96, 256, 10], seed=0, backend=backend)
        plan = model._plan(nn.losses.get("softmax_cross_entropy"),
                           nn.optim.SGD(lr=0.1, momentum=0.9), batch)
        sums = np.zeros((2, 3))
        got = plan.run(X, None, y, None, orders, batch, np.full(2, 0.1), sums, 0, 0,
                       max_batches, 0.0, 0, threads, check_epochs=check_epochs)
        return got, model.parameters()

    (e, b, status, _, _, step), params = run(1)
    assert (e, b, status, step) == (0, bad_batch, 4, bad_batch)
    (e0, b0, status0, _, _, step0), params0 = run(0)
    assert (e0, b0, step0) == (0, bad_batch, bad_batch) and status0 in (1, 2)
    _, before = run(0, max_batches=bad_batch)
    for p, p0, q in zip(params, params0, before):
        assert np.array_equal(p, q) and np.array_equal(p0, q)


def test_small_path_is_taken_only_for_small_steps():
    from nncore._kernels import train
    small = nn.Sequential([nn.Dense(2, 4), nn.Dense(4, 3, "relu", bias=False),
                           nn.Dense(3, 3)], seed=0)
    big = nn.MLP([2, 20, 3], seed=0)
    plans = {}
    for name, model in (("small", small), ("big", big)):
        model.train_step(np.zeros((5, 2)), [0, 1, 2, 0, 1], "softmax_cross_entropy",
                         nn.optim.SGD(lr=0.1))
        plans[name] = model._plan_cache[1]
    assert train.runs_small(plans["small"], 5, 2)
    assert train.runs_small(plans["small"], 21, 2)        # 21 x 4 x 3 = 252 madds
    assert not train.runs_small(plans["small"], 22, 2)    # 264 > TINY_MAX_MADDS
    assert not train.runs_small(plans["big"], 5, 2)        # 5 x 20 x 3 = 300


def test_plan_threads_counts_a_thread_per_quantum_of_flops():
    """StepPlan.threads(rows, n): one thread per FLOPS_PER_THREAD of a step of rows rows
    (forward 2 n n_in n_out a layer, 3x that above the first), 1 below two quanta, at
    most n (1 without OpenMP); the NumPy twin runs its steps on the calling thread."""
    from nncore._kernels import train
    model = nn.MLP([784, 128, 64, 10], seed=0)
    model.train_step(np.zeros((256, 784), np.float32), np.zeros(256, np.intp),
                     "softmax_cross_entropy", nn.optim.SGD(lr=0.1))
    plan = model._plan_cache[1]
    per_row = 2 * (784 * 128 * 2 + 128 * 64 * 3 + 64 * 10 * 3)
    omp = nn.openmp_enabled()
    for rows, n in ((256, 2), (256, 64), (1, 4), (128, 1)):
        quanta = -(-rows * per_row // train.FLOPS_PER_THREAD)
        want = 1 if quanta < 2 or not omp else min(n, quanta)
        assert plan.threads(rows, n) == want
    assert plan.threads(256, 2) == (2 if omp else 1)        # (a case where threads count)
    twin = nn.MLP([784, 128, 64, 10], seed=0, backend="numpy")
    twin.train_step(np.zeros((256, 784), np.float32), np.zeros(256, np.intp),
                    "softmax_cross_entropy", nn.optim.SGD(lr=0.1))
    assert twin._plan_cache[1].threads(256, 2) == 1


@pytest.mark.parametrize("rows, hidden", [(5, 4), (40, 20)], ids=["small", "team"])
def test_plan_refuses_a_label_outside_the_outputs(rows, hidden):
    """A direct StepPlan call (the Python API checks labels first) with a label >= the
    number of outputs: ValueError, nothing updated, on the small path and the team's."""
    from nncore._kernels import train
    model = nn.Sequential([nn.Dense(2, hidden), nn.Dense(hidden, 3)], seed=0, dtype="float64")
    X = np.random.default_rng(0).standard_normal((rows, 2))
    y = np.arange(rows, dtype=np.intp) % 3
    model.train_step(X, y, "softmax_cross_entropy", nn.optim.SGD(lr=0.1))
    plan = model._plan_cache[1]
    assert train.runs_small(plan, rows, 1) == (rows == 5)
    before = [p.copy() for p in model.parameters()]
    y[-1] = 3
    with pytest.raises(ValueError, match=r"a label is outside \[0, n_outputs\)"):
        plan.step(X, None, y, None, 0.1, 1, 1)
    for p, q in zip(model.parameters(), before):
        assert np.array_equal(p, q)
