"""Whole training runs: the compiled core step by step against the NumPy
reference backend, bitwise reproducibility across thread counts and runs,
and learning on small problems the tests make themselves.

Comparisons are norm-wise per parameter array: max |p - q| <= rtol max |q|
(the error relative to the array's largest entry, as in nncore.gradcheck),
and |L - L_ref| <= rtol |L_ref| for the per-step losses.

- float64: rtol = 1e-10. Each side rounds a length-k dot product (k <= 16
  here) to within k eps64 of its sum of magnitudes, ~4e-15 relative, and 20
  steps add such differences; the worst seen is ~2e-15.
- float32: rtol = STEPS * K * eps32 = 20 * 16 * 1.2e-7 ~ 3.8e-5. One step's
  gradient differs by at most ~K eps32 relative (the longest dot product,
  K = 16 = the batch and the widest fan-in, summed in a different order by
  each backend; the loss itself runs in double on both sides); the update
  passes that on scaled by lr and the next step's gradient inherits it, so
  the difference grows at most about linearly with the number of steps (Adam
  divides by sqrt(v), which keeps its update's relative error at the
  gradient's). The worst seen over the grid is ~1.3e-6, 30x below.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import layerwise
import nncore
from nncore import MLP, Dense, Sequential, datasets, optim

LOSSES = nncore.functional.LOSSES
STEPS = 20
BATCH, N_IN, K_OUT = 16, 6, 3
K = 16                               # longest dot product: batch 16, fan-ins 6, 16, 8
RTOL = {"float64": 1e-10, "float32": STEPS * K * float(np.finfo(np.float32).eps)}

OPTIMIZERS = {
    "sgd": lambda wd: optim.SGD(lr=0.1, weight_decay=wd),
    "momentum": lambda wd: optim.SGD(lr=0.05, momentum=0.9, weight_decay=wd),
    "nesterov": lambda wd: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd),
    "adam": lambda wd: optim.Adam(lr=0.01, weight_decay=wd),
}
# (weight_decay on the optimizer, l2 on the model)
REGULARIZATION = {"none": (0.0, 0.0), "weight_decay": (1e-2, 0.0), "l2": (0.0, 1e-2),
                  "both": (1e-2, 1e-2)}


def assert_close(got, want, rtol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(float(np.max(np.abs(want), initial=0.0)), np.finfo(np.float64).tiny)
    err = float(np.max(np.abs(got - want), initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative difference {err:.3g} > {rtol:.3g}"


def batch(rng, loss, n=BATCH):
    X = rng.standard_normal((n, N_IN))
    if loss in ("softmax_cross_entropy", "hinge"):
        return X, rng.integers(0, K_OUT, n)
    if loss == "mse":
        return X, rng.standard_normal((n, K_OUT))
    return X, (rng.random((n, K_OUT)) < 0.5).astype(np.float64)


def small_net(dtype, l2, backend):
    return Sequential([Dense(N_IN, 16, "relu"), Dense(16, 8, "tanh"), Dense(8, K_OUT)],
                      seed=3, dtype=dtype, l2=l2, backend=backend)


# ---- compiled core == NumPy reference, step by step ------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reg", list(REGULARIZATION))
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@pytest.mark.parametrize("loss", LOSSES)
def test_same_as_numpy_backend_step_by_step(loss, opt, reg, dtype):
    weight_decay, l2 = REGULARIZATION[reg]
    fast, ref = small_net(dtype, l2, "compiled"), small_net(dtype, l2, "numpy")
    opt_fast, opt_ref = OPTIMIZERS[opt](weight_decay), OPTIMIZERS[opt](weight_decay)
    for p, q in zip(fast.parameters(), ref.parameters()):
        assert np.array_equal(p, q)                      # same seed, same start
    rng = np.random.default_rng(0)
    rtol = RTOL[dtype]
    for step in range(STEPS):
        X, y = batch(rng, loss)
        value = fast.train_step(X, y, loss, opt_fast)
        value_ref = ref.train_step(X, y, loss, opt_ref)
        assert_close(value, value_ref, rtol, f"loss at step {step}")
        for i, (p, q) in enumerate(zip(fast.parameters(), ref.parameters())):
            assert p.dtype == q.dtype == np.dtype(dtype)
            assert_close(p, q, rtol, f"parameter {i} after step {step}")
    assert not np.array_equal(fast.parameters()[0], small_net(dtype, l2, "numpy").parameters()[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", nncore.functional.ACTIVATIONS)
def test_every_hidden_activation_same_as_numpy_backend(activation, dtype):
    def net(backend):
        return MLP([N_IN, 16, 8, K_OUT], activation, seed=5, dtype=dtype, l2=1e-2,
                   backend=backend)

    fast, ref = net("compiled"), net("numpy")
    opt_fast, opt_ref = optim.Adam(lr=0.01), optim.Adam(lr=0.01)
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        X, y = batch(rng, "softmax_cross_entropy")
        assert_close(fast.train_step(X, y, "softmax_cross_entropy", opt_fast),
                     ref.train_step(X, y, "softmax_cross_entropy", opt_ref),
                     RTOL[dtype], f"loss at step {step}")
        for i, (p, q) in enumerate(zip(fast.parameters(), ref.parameters())):
            assert_close(p, q, RTOL[dtype], f"parameter {i} after step {step}")


# ---- bitwise reproducibility ---------------------------------------------------

def fit_big(dtype, optimizer, n_threads):
    """784-256-10 on random data, batch 256: the GEMMs (2 * 256 * 256 * 784 flops
    > 2^20), the backward column pass and the activations (256 * 256 = 2^16
    elements) and the optimizer updates (200,704 weights) all run multi-threaded
    above one thread."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((512, 784))
    y = rng.integers(0, 10, 512)
    model = MLP([784, 256, 10], "relu", seed=11, dtype=dtype, l2=1e-4)
    with nncore.threads(n_threads):
        model.fit(X, y, loss="softmax_cross_entropy", optimizer=optimizer(),
                  batch_size=256, epochs=2)
    return model.parameters()


def fit_deep(n_threads, fused=True, callbacks=()):
    """784-192-96-10 (softmax hidden layer), batch 96, shuffled and weighted: a step
    of ~46 MFLOP runs in one parallel region above one thread, where every GEMM
    but the last layer's, the column pass of layer 1 and the softmax rows are split."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 784)).astype(np.float32)
    y = rng.integers(0, 10, 300)
    model = Sequential([Dense(784, 192, "tanh"), Dense(192, 96, "softmax"), Dense(96, 10)],
                       seed=5, dtype="float32", l2=1e-4)
    kw = dict(loss="softmax_cross_entropy", optimizer=optim.SGD(lr=0.1, momentum=0.9),
              batch_size=96, epochs=2, sample_weight=np.linspace(0.5, 1, 300))
    with nncore.threads(n_threads):
        history = (model.fit(X, y, callbacks=list(callbacks), **kw) if fused
                   else layerwise.fit(model, X, y, **kw))
    return model.parameters(), history.history


class _Noop(nncore.callbacks.Callback):
    """A callback with batch events sends fit through one compiled call per step."""

    def on_train_batch_end(self, batch, logs=None):
        pass


def test_step_region_same_for_any_thread_count():
    ref = fit_deep(1, fused=False)                       # the layer-by-layer path
    for run in (fit_deep(1), fit_deep(2), fit_deep(3), fit_deep(2, callbacks=[_Noop()])):
        assert run[1] == ref[1]
        for p, q in zip(run[0], ref[0]):
            assert np.array_equal(p, q)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", [
    lambda: optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    lambda: optim.Adam(lr=1e-3)], ids=["nesterov", "adam"])
def test_bitwise_same_for_any_thread_count(dtype, optimizer):
    runs = {t: fit_big(dtype, optimizer, t) for t in (1, 2, 3)}
    again = fit_big(dtype, optimizer, 2)                  # same seed, second run
    start = MLP([784, 256, 10], "relu", seed=11, dtype=dtype).parameters()
    assert not np.array_equal(runs[1][0], start[0])       # it did train
    for other in (runs[2], runs[3], again):
        for p, q in zip(runs[1], other):
            assert np.array_equal(p, q)


def test_thread_count_may_change_between_plan_calls(monkeypatch):
    """fit's tuner (nncore._threads.Tuner) changes the thread count between calls of
    the plan; a fit whose calls alternate 1, 2 and 3 threads, one batch a call, gives
    the bits of a 1-thread fit."""
    import nncore._threads as threads_module
    ref = fit_deep(1)
    used = []

    class Alternating(threads_module.Tuner):
        def next(self, seconds):
            used.append(1 + len(used) % 3)
            return used[-1], 1e-9                  # stop after the first batch

    monkeypatch.setattr(nncore.training, "Tuner", Alternating)
    run = fit_deep(1)
    assert len(used) == 8                          # 2 epochs of 4 batches, a call each
    assert run[1] == ref[1]
    for p, q in zip(run[0], ref[0]):
        assert np.array_equal(p, q)


def test_many_threads_on_few_cores_finish_and_agree():
    """A step's barrier (csrc/nn_barrier.h) spins, then sleeps: 6 threads on the
    machine's cores (2 in CI: most waits end asleep) run fit_deep five times (40 steps,
    ~25 barriers each), in a child with a deadline (a lost wake-up would hang), to
    the 1-thread bits."""
    code = (
        "import hashlib, json, sys; sys.path.insert(0, %r)\n"
        "import numpy as np, test_training as t\n"
        "out = []\n"
        "for n in (1, 6, 6, 6, 6, 6):\n"
        "    params, history = t.fit_deep(n)\n"
        "    h = hashlib.sha256()\n"
        "    for p in params: h.update(np.ascontiguousarray(p).tobytes())\n"
        "    out.append(h.hexdigest())\n"
        "print(json.dumps(out))\n") % os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    one, *six = json.loads(proc.stdout.strip().splitlines()[-1])
    assert six == [one] * 5


# ---- learning --------------------------------------------------------------------

@pytest.mark.parametrize("loss,n_out", [("binary_cross_entropy", 1),
                                        ("softmax_cross_entropy", 2)])
def test_xor(loss, n_out):
    X, y = datasets.xor()
    model = MLP([2, 4, n_out], "tanh", seed=0)
    model.fit(X, y, loss=loss, optimizer=optim.Adam(lr=0.1), batch_size=None, epochs=200)
    assert np.array_equal(model.predict(X), y)


def test_spiral():
    """cs231n's three-arm spiral, one hidden layer of 100 ReLU, full-batch Adam."""
    X, y = datasets.spiral(100, 3)
    assert X.shape == (300, 2)
    model = MLP([2, 100, 3], "relu", seed=0)
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=optim.Adam(lr=0.05),
                        batch_size=None, epochs=200)
    assert np.mean(model.predict(X) == y) >= 0.98
    assert history["accuracy"][-1] >= 0.98


@pytest.mark.parametrize("seed", [2, 6])
def test_curve(seed):
    """The three dose-response points fitted by 1-2-1 with softplus units: two
    softplus ramps make the bump. Fixed seeds: some initialisations (seed 9, say)
    fall into the flat minimum that outputs the mean 1/3 everywhere."""
    X, y = datasets.curve()
    model = MLP([1, 2, 1], "softplus", seed=seed)
    model.fit(X, y, loss="mse", optimizer=optim.Adam(lr=0.05), batch_size=None,
              epochs=600, shuffle=False)
    assert model.evaluate(X, y)["loss"] < 1e-4
    np.testing.assert_allclose(model.predict(X), y, atol=1e-2)


def test_digits():
    """The 8x8 digits (1797 images), 64-64-10 ReLU, 25% held out (stratified)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        random_state=0, stratify=y)
    model = MLP([64, 64, 10], "relu", seed=0, l2=1e-3)
    model.fit(X_train, y_train, loss="softmax_cross_entropy",
              optimizer=optim.Adam(lr=0.01, schedule=optim.ExponentialDecay(0.93)),
              batch_size=32, epochs=30)
    assert np.mean(model.predict(X_test) == y_test) >= 0.96


@pytest.mark.parametrize("batch_size", [None, 1, 32], ids=["batch", "stochastic", "minibatch"])
def test_batch_stochastic_minibatch_all_reduce_the_loss(batch_size):
    X, y = datasets.spiral(50, 3, seed=1)
    model = MLP([2, 32, 3], "tanh", seed=0)
    before = model.evaluate(X, y, loss="softmax_cross_entropy")["loss"]
    epochs = {None: 60, 1: 3, 32: 15}[batch_size]
    history = model.fit(X, y, loss="softmax_cross_entropy", optimizer=optim.SGD(lr=0.1),
                        batch_size=batch_size, epochs=epochs)
    after = model.evaluate(X, y)["loss"]
    assert after < 0.9 * before
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.parametrize("n, epochs", [(1, 4), (3, 1), (3, 500), (17, 9), (1000, 3)])
def test_shuffled_epochs_are_the_permutations_of_successive_calls(n, epochs):
    # fit draws a chunk of epochs' orders in one call; it must be the stream a loop of
    # rng.permutation(n) gives (the layer-by-layer twin's), leaving rng where it would.
    from nncore.training import epoch_orders
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    orders = epoch_orders(a, n, epochs)
    assert orders.shape == (epochs, n) and orders.flags.c_contiguous
    assert orders.dtype == np.intp
    assert np.array_equal(orders, np.stack([b.permutation(n) for _ in range(epochs)]))
    assert a.bit_generator.state == b.bit_generator.state
