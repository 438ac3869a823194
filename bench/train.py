"""Training throughput: nncore against its NumPy backend, PyTorch (eager and torch.compile),
scikit-learn and JAX (a jitted step, and the epoch in one jitted lax.scan) (bench/WORKLOADS.md W1-W5).

    python bench/train.py                  # WORKLOADS.md sizes, 1 and 2 threads (several minutes)
    python bench/train.py --quick          # small sizes, fewer repeats: ~5 minutes on 2 cores,
                                           # most of it torch.compile compiling (--skip it)
    python bench/train.py --threads 1,2,4,8,16 --no-rss --skip torch-compile

Every tool trains the same network on the same synthetic data (X ~ N(0,1) float32, seed 0;
random integer labels) with minibatch SGD, lr 0.01, momentum 0.9, no weight decay, one epoch
over pre-shuffled batches taken in order; weights are initialised once, outside the timing.
W3 is 3 points, full batch, one step per epoch; W5 is one forward pass over 10,000 samples.

    nncore           fit(X, y, epochs=E, batch_size=B, shuffle=False), float32 (W1 also float64)
    numpy backend    the same with Sequential(..., backend="numpy")
    PyTorch eager    zero_grad, forward, loss, backward, torch.optim.SGD.step per batch
    torch.compile    the same loop on torch.compile(model, dynamic=False) (needs a C++
                     compiler; the partial last batch compiles a second graph, in the warm-up)
    scikit-learn     MLPClassifier/MLPRegressor(solver="sgd", learning_rate_init=0.01,
                     momentum=0.9, nesterovs_momentum=False, alpha=0, batch_size=B,
                     shuffle=False, warm_start=True, max_iter=E, n_iter_no_change=huge)
                     .fit(X, y): each call continues from the current weights and optimizer
                     state and runs exactly E epochs of the same in-order minibatches
                     (partial_fit would also give one epoch, but W3 would then pay input
                     validation on every step). Inputs are float32, which sklearn keeps.
    JAX jit step     jax.jit of one step -- forward, loss, jax.value_and_grad, the SGD-momentum
                     update of the (W, b) pytree (v = 0.9 v + g; p -= 0.01 v), state donated --
                     called from Python once per batch; the batches are device arrays made
                     outside the timing. Losses are nncore's (W3: 1/2 the mean squared error).
    JAX lax.scan     the whole timed unit in one call of a jitted lax.scan: over the full
                     batches of the epoch, then the partial last batch, inside the same jit;
                     W3: over all its epochs (one full-batch step each).
                     JAX starts from nncore's initial weights (seed 0); runs in float32.
    W5 (inference)   nncore/numpy backend model.forward, torch model(X) under inference_mode
                     (torch.compile: the compiled model), JAX the jitted forward, sklearn
                     predict_proba (its only public forward pass; adds a 10-column softmax).

JAX (`pip install jax`) and torch.compile are optional: a tool that is not installed is
skipped with a note, and one that fails to build or compile is dropped with a note (--skip
leaves tools out). Compilation happens in the untimed warm-up; its time (the first call) and
each compiled tool's CPU-seconds per second of its timed blocks are printed.

Each thread count runs in its own process with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS set, plus torch.set_num_threads and nncore.set_num_threads. XLA's CPU client
ignores those and sizes its pool by the CPUs the process may run on, so a process with fewer
threads than CPUs is pinned (sched_setaffinity, before exec) to the first that many CPUs --
every tool in it, as with taskset -c --, and at 1 thread XLA_FLAGS also turns off its
multi-threaded Eigen; the results record each process's CPUs and its OS threads. Within a
process the tools alternate in blocks (the order rotates every round); with several threads
each block starts after 0.2 s of sleep so the other libraries' spinning worker threads give
the cores back (KERNEL-NOTES). A warm-up (two untimed calls of each unit) builds plans and caches,
compiles, and sizes the blocks; each figure is the median over all timed calls.

Ratios: nncore f32 against every other tool, in the JSON; the table shows nncore against the
fastest other library on the row (named), and against PyTorch eager and the NumPy backend.

Same computation (a check, not timed): from nncore's initial weights, nncore's fit, JAX's
step and scan and PyTorch run one timed unit; the losses (the last epoch's mean batch loss
and the loss over the data after it) must agree with nncore's within CHECK_RTOL (float32,
other summation orders), and the largest weight difference is reported.

Fixed cost (with W3): microseconds per call of model.fit(X, y, epochs=1, batch_size=None) on
W3's 3 points, beside nncore's train_step and one step of the other tools, median of
FIXED_ROUNDS x FIXED_BLOCK calls in alternating blocks; and the steps/s of one fit of
LONG_EPOCHS epochs against JAX's lax.scan over as many.

Default threads: one more process, with no thread settings and only nncore, alternates
nncore at its default thread count (one per core) with nncore at 1 thread on every workload:
the default must never be slower. (In the processes above, the other libraries' thread pools
share the cores, which also slows nncore's one-thread code paths.) The same on a busy
machine (another process spinning, two trainings at once): bench/contention.py.

Peak RSS: one fresh process per tool and workload, at 1 thread, builds the model and runs one
timed unit (an epoch, or the forward pass). We report resource.getrusage(RUSAGE_SELF).ru_maxrss
after it minus ru_maxrss after the imports and the data creation (the data is created directly
in its final dtype, so nothing transient inflates the baseline), and the same growth measured
after a warm-up run of a tiny 4-3-k net of the same tool, which leaves out the library's
one-time first-use memory (PyTorch: ~80 MiB). RSS counts everything the process touches
(C allocations of torch and OpenBLAS too), not only Python-side allocations.

Results go to bench/results/train-<date>-<cpu>-<cores>c-t<threads>[-quick][-runN].json and .md
(-runN: the Nth run of that name, never overwritten).
"""
import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclass(frozen=True)
class Workload:
    name: str
    sizes: tuple          # layer widths, input first
    activation: str       # hidden layers; the output layer is linear
    loss: str             # "xent" (softmax cross-entropy, 10 classes), "mse", or None (inference)
    batch: int
    samples: int          # training / inference samples (W3: 3 points)
    epochs: int           # W3: steps (one full-batch step per epoch)
    quick_samples: int
    quick_epochs: int

    @property
    def unit(self):
        return "steps/s" if self.samples == self.batch and self.loss else "samples/s"


W1_SIZES = (784, 128, 64, 10)
WORKLOADS = {
    "W1": Workload("mnist-mlp", W1_SIZES, "relu", "xent", 128, 60_000, 1, 10_000, 1),
    "W2": Workload("3b1b", (784, 16, 16, 10), "sigmoid", "xent", 32, 60_000, 1, 10_000, 1),
    "W3": Workload("tiny-curve", (1, 2, 1), "sigmoid", "mse", 3, 3, 10_000, 3, 2_000),
    "W4": Workload("wide", (784, 1024, 1024, 10), "relu", "xent", 256, 20_000, 1, 2_000, 1),
    "W5": Workload("inference", W1_SIZES, "relu", None, 10_000, 10_000, 1, 10_000, 1),
}


def make_data(w, n, dtype):
    """X ~ N(0,1) (n, n_in) in dtype; integer labels in [0, n_out), or N(0,1) targets for mse."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, w.sizes[0]), dtype=dtype)
    if w.loss == "mse":
        return X, rng.standard_normal((n, w.sizes[-1]), dtype=dtype)
    return X, rng.integers(0, w.sizes[-1], n)


# ---- one function per tool and workload kind: build outside the timing, return the timed unit

def nncore_train(w, X, y, epochs, dtype="float32", backend="compiled"):
    import nncore as nn
    model = nn.MLP(w.sizes, activation=w.activation, seed=0, dtype=dtype, backend=backend)
    opt = nn.optim.SGD(lr=0.01, momentum=0.9)
    loss = "mse" if w.loss == "mse" else "softmax_cross_entropy"

    def run():
        h = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=w.batch,
                      shuffle=False)
        assert len(h) == epochs                 # (the epochs logged; the lists unread)
    return run


def nncore_infer(w, X, y, epochs, dtype="float32", backend="compiled"):
    import nncore as nn
    model = nn.MLP(w.sizes, activation=w.activation, seed=0, dtype=dtype, backend=backend)
    return lambda: model.forward(X)


def _torch_model(w):
    import torch
    torch.manual_seed(0)
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}[w.activation]
    layers = []
    for i, (a, b) in enumerate(zip(w.sizes[:-1], w.sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([act()] if i < len(w.sizes) - 2 else [])
    return torch.nn.Sequential(*layers)


def torch_train(w, X, y, epochs, compile=False):
    import torch
    model = _torch_model(w)
    if compile:
        model = torch.compile(model, dynamic=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.functional.mse_loss if w.loss == "mse" else torch.nn.functional.cross_entropy
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    n = len(X)

    def run():
        for _ in range(epochs):
            for i in range(0, n, w.batch):
                opt.zero_grad()
                loss = loss_fn(model(Xt[i:i + w.batch]), yt[i:i + w.batch])
                loss.backward()
                opt.step()
    return run


def torch_infer(w, X, y, epochs, compile=False):
    import torch
    model = _torch_model(w)
    if compile:
        model = torch.compile(model, dynamic=False)
    Xt = torch.from_numpy(X)

    def run():
        with torch.inference_mode():
            model(Xt)
    return run


def _sklearn_model(w, max_iter):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    cls = MLPRegressor if w.loss == "mse" else MLPClassifier
    act = {"relu": "relu", "sigmoid": "logistic"}[w.activation]
    return cls(hidden_layer_sizes=w.sizes[1:-1], activation=act, solver="sgd",
               learning_rate="constant", learning_rate_init=0.01, momentum=0.9,
               nesterovs_momentum=False, alpha=0.0, batch_size=w.batch, shuffle=False,
               max_iter=max_iter, warm_start=True, tol=0.0, n_iter_no_change=2**31 - 1,
               random_state=0)


def sklearn_train(w, X, y, epochs):
    from sklearn.exceptions import ConvergenceWarning
    model = _sklearn_model(w, epochs)
    y = y.ravel()                       # MLPRegressor wants (n,) for one output

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)   # max_iter reached: intended
            model.fit(X, y)
        assert model.n_iter_ == epochs
    return run


def sklearn_infer(w, X, y, epochs):
    model = _sklearn_model(w, 1)
    k = w.sizes[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # batch_size > k samples: clipped
        model.partial_fit(X[:k], np.arange(k), classes=np.arange(k))    # initialise the weights
    return lambda: model.predict_proba(X)


def initial_weights(w):
    """nncore's initial weights (seed 0) as [(W, b), ...] float32 arrays, W (n_out, n_in):
    JAX starts from them, and the same-computation check gives them to every tool."""
    import nncore as nn
    model = nn.MLP(w.sizes, activation=w.activation, seed=0, dtype="float32")
    return [(layer.weight.copy(), layer.bias.copy()) for layer in model.layers]


def _jax_step_fn(w):
    """(forward, loss, step) for JAX: step((params, velocity), (x, y)) -> (new state,
    batch loss) is forward, loss, grad and PyTorch's SGD-momentum update, as nncore's:
    v = 0.9 v + g; p -= 0.01 v. The losses are nncore's: mean softmax cross-entropy of
    the logits, or 1/2 the mean over rows of the squared error summed over outputs."""
    import jax
    import jax.numpy as jnp
    act = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}[w.activation]

    def forward(params, x):
        for i, (W, b) in enumerate(params):
            x = x @ W.T + b
            if i < len(params) - 1:
                x = act(x)
        return x

    def loss(params, x, y):
        o = forward(params, x)
        if w.loss == "mse":
            return 0.5 * jnp.mean(jnp.sum((o - y) ** 2, axis=1))
        return jnp.mean(jax.nn.logsumexp(o, axis=1)
                        - jnp.take_along_axis(o, y[:, None], axis=1)[:, 0])

    def step(state, batch):
        params, velocity = state
        value, grads = jax.value_and_grad(loss)(params, *batch)
        velocity = jax.tree_util.tree_map(lambda v, g: 0.9 * v + g, velocity, grads)
        params = jax.tree_util.tree_map(lambda p, v: p - 0.01 * v, params, velocity)
        return (params, velocity), value
    return forward, loss, step


def _jax_state(w):
    import jax
    import jax.numpy as jnp
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in initial_weights(w)]
    return (params, jax.tree_util.tree_map(jnp.zeros_like, params))


def _jax_targets(y):
    return y.astype(np.int32) if y.dtype.kind in "iu" else y   # JAX runs without x64


def jax_step_train(w, X, y, epochs):
    """A jitted step (forward, loss, grad, update) called from Python once per batch; the
    batches are device arrays made outside the timing, like torch's slices of one tensor."""
    import jax
    _, _, step = _jax_step_fn(w)
    step = jax.jit(step, donate_argnums=0)
    y = _jax_targets(y)
    batches = [(jax.device_put(X[i:i + w.batch]), jax.device_put(y[i:i + w.batch]))
               for i in range(0, len(X), w.batch)]
    state = [_jax_state(w)]

    def run():
        s = state[0]
        for _ in range(epochs):
            for batch in batches:
                s, _ = step(s, batch)
        state[0] = jax.block_until_ready(s)
    return run


def jax_epochs_fn(w, n, epochs):
    """The jitted whole run: `epochs` epochs in one lax.scan (over the epochs when there is
    one batch, W3; else over the full batches of each epoch, then the partial last batch);
    returns the new state and the batch losses, (epochs, n_batches)."""
    import jax
    import jax.numpy as jnp
    _, _, step = _jax_step_fn(w)
    nb, rest = divmod(n, w.batch)

    def epoch(state, X, y):
        if nb == 1 and not rest:
            state, value = step(state, (X, y))
            return state, value[None]
        full = (X[:nb * w.batch].reshape(nb, w.batch, -1),
                y[:nb * w.batch].reshape((nb, w.batch) + y.shape[1:]))
        state, values = jax.lax.scan(step, state, full)
        if rest:
            state, last = step(state, (X[nb * w.batch:], y[nb * w.batch:]))
            values = jnp.concatenate([values, last[None]])
        return state, values

    def run(state, X, y):
        if epochs == 1:
            return epoch(state, X, y)
        return jax.lax.scan(lambda s, _: epoch(s, X, y), state, None, length=epochs)

    return jax.jit(run, donate_argnums=0)


def jax_scan_train(w, X, y, epochs):
    """The whole unit (one epoch; W3: all epochs) in one call of a jitted lax.scan."""
    import jax
    fn = jax_epochs_fn(w, len(X), epochs)
    X, y = jax.device_put(X), jax.device_put(_jax_targets(y))
    state = [_jax_state(w)]

    def run():
        state[0] = jax.block_until_ready(fn(state[0], X, y)[0])
    return run


def jax_infer(w, X, y, epochs):
    import jax
    forward, _, _ = _jax_step_fn(w)
    forward = jax.jit(forward)
    params, _ = _jax_state(w)
    X = jax.device_put(X)
    return lambda: jax.block_until_ready(forward(params, X))


@dataclass(frozen=True)
class Tool:
    label: str
    module: str           # what must be importable
    train: object
    infer: object
    dtype: str = "float32"
    only: tuple = ()      # workloads it runs (empty: all)
    options: tuple = ()   # extra keyword arguments, as pairs
    other: bool = True    # another library (False: nncore itself in another mode)


TRAINING = ("W1", "W2", "W3", "W4")
TOOLS = {
    "nncore": Tool("nncore f32", "nncore", nncore_train, nncore_infer, other=False),
    "nncore-f64": Tool("nncore f64", "nncore", nncore_train, nncore_infer, "float64", ("W1",),
                       (("dtype", "float64"),), other=False),
    "numpy": Tool("numpy backend", "nncore", nncore_train, nncore_infer,
                  options=(("backend", "numpy"),), other=False),
    "torch": Tool("PyTorch", "torch", torch_train, torch_infer),
    "torch-compile": Tool("torch.compile", "torch", torch_train, torch_infer,
                          options=(("compile", True),)),
    "sklearn": Tool("scikit-learn", "sklearn", sklearn_train, sklearn_infer),
    "jax-step": Tool("JAX jit step", "jax", jax_step_train, jax_infer),
    "jax-scan": Tool("JAX lax.scan", "jax", jax_scan_train, None, only=TRAINING),
}
# Tools whose failure (in building or in the warm-up, e.g. a compiler missing) drops them
# from the run with a note instead of ending it.
OPTIONAL = ("torch-compile", "jax-step", "jax-scan")
# Ratios nncore f32 / tool, kept per row in the JSON; the Markdown table shows the one
# against the fastest other library and these two.
RATIOS = [("torch", "nncore/PyTorch"), ("numpy", "nncore/numpy")]


def available(tool):
    return importlib.util.find_spec(TOOLS[tool].module) is not None


def size(w, quick):
    """(samples, epochs) of a workload in this mode."""
    return (w.quick_samples, w.quick_epochs) if quick else (w.samples, w.epochs)


def make_unit(tool, w, X, y, epochs):
    """The timed unit of `tool` on workload `w` (model built now, outside the timing)."""
    t = TOOLS[tool]
    fn = t.infer if w.loss is None else t.train
    return fn(w, X, y, epochs, **dict(t.options))


def build(tool, wname, quick):
    """(timed unit, work per call: samples, or steps for W3)."""
    w = WORKLOADS[wname]
    n, epochs = size(w, quick)
    unit = make_unit(tool, w, *make_data(w, n, TOOLS[tool].dtype), epochs)
    return unit, epochs * (1 if w.unit == "steps/s" else n)


# ---- timing ---------------------------------------------------------------------------

def alternate(units, repeats, settle, block_s, notes=None):
    """{name: (median seconds per call, all the timed calls, seconds of the first call,
    CPU-seconds of this process per second of its timed blocks)} of each unit ({name:
    callable}), timed in alternating blocks.

    Two untimed calls of each unit warm it up: the first builds plans and caches and
    compiles (JAX's jit, torch.compile; its time is kept apart), the second sizes its
    block (enough calls for ~block_s). Then `repeats` rounds; each round runs one block per
    unit, starting from a different unit every round, each block after `settle` seconds of
    sleep. A unit of an OPTIONAL tool that raises in the warm-up is dropped, with a line
    in `notes`."""
    calls, first = {}, {}
    for name in list(units):
        time.sleep(settle)
        try:
            t0 = time.perf_counter()
            units[name]()
            t1 = time.perf_counter()
            units[name]()
        except Exception as e:
            if name not in OPTIONAL or notes is None:
                raise
            notes.append(f"{TOOLS[name].label} dropped: {type(e).__name__}: {e}"[:300])
            del units[name]
            continue
        first[name] = t1 - t0
        calls[name] = max(1, math.ceil(block_s / (time.perf_counter() - t1)))
    names = list(units)
    times = {name: [] for name in names}
    busy = {name: [0.0, 0.0] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(settle)
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                units[name]()
                times[name].append(time.perf_counter() - t0)
            busy[name][0] += time.process_time() - c0
            busy[name][1] += time.perf_counter() - w0
    return {name: (float(np.median(t)), t, first[name], busy[name][0] / busy[name][1])
            for name, t in times.items()}


# The same-computation check: float32 runs of the same steps from the same weights, with
# the sums taken in other orders, must give losses within CHECK_RTOL (relative), or weights
# within CHECK_WTOL of nncore's (relative to its largest weight): a loss trained down to
# float32 rounding (W3 reaches ~1e-10) differs by more than 1e-4 of itself between tools
# whose weights agree to 1e-6.
CHECK_RTOL = 1e-4
CHECK_WTOL = 1e-5


def _torch_from(w, init):
    """PyTorch's model of w with the weights `init` ([(W, b), ...])."""
    import torch
    model = _torch_model(w)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, (W, b) in zip(linears, init):
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
    return model, [(lin.weight, lin.bias) for lin in linears]


def same_computation(wname, quick):
    """Are the JAX units the computation the others time? nncore (fit), JAX's jitted step,
    JAX's scan and PyTorch (if installed; with nncore's loss, 1/2 mean squared error on W3)
    run one timed unit (an epoch; W3: all its steps) from nncore's initial weights: the
    mean batch loss of the last epoch (as fit's History reports it), the loss over the
    data after training, and the largest weight difference from nncore's (relative to
    nncore's largest weight) after it."""
    import jax
    import nncore as nn
    w = WORKLOADS[wname]
    n, epochs = size(w, quick)
    X, y = make_data(w, n, "float32")
    init = initial_weights(w)
    rows = np.array([min(w.batch, n - i) for i in range(0, n, w.batch)], dtype=np.float64)
    model = nn.MLP(w.sizes, activation=w.activation, seed=0)
    loss = "mse" if w.loss == "mse" else "softmax_cross_entropy"
    h = model.fit(X, y, loss=loss, optimizer=nn.optim.SGD(lr=0.01, momentum=0.9),
                  epochs=epochs, batch_size=w.batch, shuffle=False)
    ref = [(layer.weight, layer.bias) for layer in model.layers]
    got = {"nncore": (h["loss"][-1], model.evaluate(X, y)["loss"], ref)}

    forward, jloss, step = _jax_step_fn(w)
    yj = _jax_targets(y)
    state, values = jax_epochs_fn(w, n, epochs)(_jax_state(w), X, yj)
    last = np.asarray(values, dtype=np.float64).reshape(epochs, -1)[-1]
    got["jax-scan"] = (float(last @ rows / n), float(jloss(state[0], X, yj)), state[0])
    state, step = _jax_state(w), jax.jit(step)
    for _ in range(epochs):
        values = []
        for i in range(0, n, w.batch):
            state, v = step(state, (X[i:i + w.batch], yj[i:i + w.batch]))
            values.append(v)
    got["jax-step"] = (float(np.asarray(values, dtype=np.float64) @ rows / n),
                       float(jloss(state[0], X, yj)), state[0])
    if importlib.util.find_spec("torch"):
        import torch
        tmodel, params = _torch_from(w, init)
        opt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        if w.loss == "mse":
            def tloss(o, t):
                return 0.5 * ((o - t) ** 2).sum(1).mean()
        else:
            tloss = torch.nn.functional.cross_entropy
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        for _ in range(epochs):
            values = []
            for i in range(0, n, w.batch):
                opt.zero_grad()
                v = tloss(tmodel(Xt[i:i + w.batch]), yt[i:i + w.batch])
                v.backward()
                opt.step()
                values.append(v.item())
        with torch.no_grad():
            final = tloss(tmodel(Xt), yt).item()
        got["torch"] = (float(np.asarray(values) @ rows / n), final,
                        [(W.detach().numpy(), b.detach().numpy()) for W, b in params])

    scale = max(float(np.abs(W).max()) for W, _ in ref)
    out = dict(workload=wname, epochs=epochs, rtol=CHECK_RTOL, epoch_loss={}, final_loss={},
               weight_diff={})
    for tool, (epoch_loss, final, params) in got.items():
        out["epoch_loss"][tool] = epoch_loss
        out["final_loss"][tool] = final
        out["weight_diff"][tool] = max(
            float(np.abs(np.asarray(a) - r).max()) for p, q in zip(params, ref)
            for a, r in zip(p, q)) / scale
    base = got["nncore"]
    out["wtol"] = CHECK_WTOL
    out["ok"] = all(all(abs(v[i] - base[i]) <= CHECK_RTOL * abs(base[i]) for i in (0, 1))
                    or out["weight_diff"][tool] <= CHECK_WTOL for tool, v in got.items())
    return out


# The fixed cost of a call: W3's 3 points, FIXED_ROUNDS rounds of FIXED_BLOCK calls of each.
FIXED_ROUNDS, FIXED_BLOCK = 20, 100
# W3 in one long fit: epochs of one fit call, against JAX's scan over all of them.
LONG_EPOCHS = 20_000


def fixed_cost(tools, quick, settle):
    """W3 (1-2-1, 3 points): microseconds per call of model.fit(X, y, epochs=1,
    batch_size=None) -- the fixed cost of a tiny fit -- beside nncore's train_step and one
    step of the other tools (PyTorch's step, JAX's jitted step, scikit-learn's fit of one
    epoch), median over FIXED_ROUNDS x FIXED_BLOCK calls in alternating blocks; and the
    steps/s of one fit of LONG_EPOCHS epochs against JAX's lax.scan over all of them."""
    import nncore as nn
    w = WORKLOADS["W3"]
    X, y = make_data(w, w.samples, "float32")
    model = nn.MLP(w.sizes, activation=w.activation, seed=0)
    model.fit(X, y, loss="mse", optimizer=nn.optim.SGD(lr=0.01, momentum=0.9), epochs=1,
              batch_size=None)
    units = {"nncore fit": lambda: model.fit(X, y, epochs=1, batch_size=None),
             "nncore train_step": lambda: model.train_step(X, y)}
    for tool, name in (("torch", "PyTorch step"), ("jax-step", "JAX jit step"),
                       ("sklearn", "scikit-learn fit")):
        if tool in tools:
            units[name] = make_unit(tool, w, X, y, 1)
    for unit in units.values():
        for _ in range(FIXED_BLOCK):                # warm-up (and JAX's compilation)
            unit()
    times = {name: [] for name in units}
    names = list(units)
    for r in range(FIXED_ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(settle)
            unit, ts = units[name], times[name]
            for _ in range(FIXED_BLOCK):
                t0 = time.perf_counter()
                unit()
                ts.append(time.perf_counter() - t0)
    per_call = {name: dict(median_us=float(np.median(t)) * 1e6,
                           p10_us=float(np.percentile(t, 10)) * 1e6,
                           p90_us=float(np.percentile(t, 90)) * 1e6, calls=len(t))
                for name, t in times.items()}
    long = {"nncore": make_unit("nncore", w, X, y, LONG_EPOCHS)}
    if "jax-scan" in tools:
        long["jax-scan"] = make_unit("jax-scan", w, X, y, LONG_EPOCHS)
    timed = alternate(long, 5, settle, 0.0)
    return dict(workload="W3", per_call=per_call, long_epochs=LONG_EPOCHS,
                long_steps_per_s={t: LONG_EPOCHS / v[0] for t, v in timed.items()},
                long_first_call_s={t: round(v[2], 3) for t, v in timed.items()})


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("nncore", "torch", "sklearn", "jax", "jaxlib", "threadpoolctl"):
        if importlib.util.find_spec(mod):
            out[mod] = __import__(mod).__version__
    return out


def cpu_seconds():
    """(CPU-seconds all processes have run, CPU-seconds the hypervisor stole, this process's own
    CPU-seconds): their growth over a run says how much else competed for the cores."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = sum(ticks[i] for i in (0, 1, 2, 5, 6))    # user nice system irq softirq
    return busy / hz, ticks[7] / hz, own.ru_utime + own.ru_stime


# torch.compile is left out of the later workloads of a process once compiling one took
# longer than this (seconds).
COMPILE_LIMIT_S = 120


def worker(threads, tools, workloads, quick, repeats):
    cpu0, wall0 = cpu_seconds(), time.time()
    import nncore
    nncore.set_num_threads(threads)
    if "torch" in tools:
        import torch
        torch.set_num_threads(threads)
    settle = 0.2 if threads > 1 else 0.0
    rows, notes = [], []
    for wname in workloads:
        units, work = {}, {}
        for tool in tools:
            if not TOOLS[tool].only or wname in TOOLS[tool].only:
                try:
                    units[tool], work[tool] = build(tool, wname, quick)
                except Exception as e:
                    if tool not in OPTIONAL:
                        raise
                    notes.append(f"{wname}: {TOOLS[tool].label} dropped: "
                                 f"{type(e).__name__}: {e}"[:300])
        timed = alternate(units, repeats, settle, 0.1 if quick else 0.3, notes)
        if "torch-compile" in timed and timed["torch-compile"][2] > COMPILE_LIMIT_S:
            tools = [t for t in tools if t != "torch-compile"]
            notes.append(f"torch.compile dropped after {wname}: its first call (compiling) "
                         f"took {timed['torch-compile'][2]:.0f} s > {COMPILE_LIMIT_S} s")
        for tool, (t, all_t, first, busy) in timed.items():
            rows.append(dict(workload=wname, threads=threads, tool=tool, seconds=t,
                             rate=work[tool] / t, unit=WORKLOADS[wname].unit, calls=len(all_t),
                             first_call_s=round(first, 3), cpu_per_wall=round(busy, 2),
                             all_seconds=all_t))
            del units[tool]                     # free the model before the next workload
    checks = [same_computation(w, quick) for w in workloads
              if w in TRAINING and any(t.startswith("jax") for t in tools)]
    fixed = fixed_cost(tools, quick, settle) if "W3" in workloads else None
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS")}
    env["nncore.get_num_threads"] = nncore.get_num_threads()
    if "torch" in tools:
        env["torch.get_num_threads"] = torch.get_num_threads()
    env["affinity"] = sorted(os.sched_getaffinity(0))
    env["XLA_FLAGS"] = os.environ.get("XLA_FLAGS")
    if "jax" in sys.modules:
        import jax
        env["jax.devices"] = [str(d) for d in jax.devices()]
    env["os_threads"] = os_threads()
    try:
        from threadpoolctl import threadpool_info
        env["threadpools"] = [{k: p.get(k) for k in ("prefix", "version", "num_threads",
                                                     "architecture")} for p in threadpool_info()]
    except ImportError:
        pass
    cpu1 = cpu_seconds()
    load = None if cpu0 is None else dict(
        wall_s=round(time.time() - wall0, 1),
        other_cpu_s=round(cpu1[0] - cpu0[0] - (cpu1[2] - cpu0[2]), 1),
        steal_s=round(cpu1[1] - cpu0[1], 1))
    return dict(threads=threads, settings=env, load=load, versions=versions(),
                nncore_config=nncore.config(), rows=rows, notes=notes, checks=checks,
                fixed=fixed)


def os_threads():
    """{CPUs allowed: number of this process's OS threads}: every thread a library started
    (XLA's pool, OpenMP, OpenBLAS) with the CPUs it may run on."""
    out = {}
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/status") as f:
                cpus = next(line.split(":")[1].strip() for line in f
                            if line.startswith("Cpus_allowed_list"))
            out[cpus] = out.get(cpus, 0) + 1
    except (OSError, StopIteration):
        pass
    return out


def self_worker(workloads, quick, repeats):
    """nncore at its default thread count against itself at 1 thread: one process with
    no thread settings and no other library, the two alternating in blocks."""
    import nncore
    default = nncore.get_num_threads()
    rows = []
    for wname in workloads:
        run, work = build("nncore", wname, quick)

        def at_1(run=run):
            with nncore.threads(1):
                run()
        # "default": no setting at all, so fit's tuner may lower it (nncore._threads.Tuner);
        # short blocks, many rounds: both settings see the same machine states
        med = alternate({"1": at_1, "default": run}, 4 * repeats, 0.0, 0.05)
        rows.append(dict(workload=wname, default_threads=default,
                         rate_1=work / med["1"][0], rate_default=work / med["default"][0]))
    return rows


def rss_worker(tool, wname, quick):
    """Peak RSS growth (KiB) of building the model and running one unit, in this fresh process:
    from the first use of the library on, and after a warm-up run of a tiny net (4-3-k)."""
    __import__(TOOLS[tool].module)
    if tool == "sklearn":
        import sklearn.neural_network  # noqa: F401  (import before the baseline)
    w, dtype = WORKLOADS[wname], TOOLS[tool].dtype
    tiny = replace(w, sizes=(4, 3, w.sizes[-1]), batch=8)
    n, epochs = size(w, quick)
    tiny_data, (X, y) = make_data(tiny, 16, dtype), make_data(w, n, dtype)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    make_unit(tool, tiny, *tiny_data, 1)()
    warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    make_unit(tool, w, X, y, epochs)()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(workload=wname, tool=tool, baseline_kib=base, peak_kib=peak,
                growth_kib=peak - base, after_warmup_kib=peak - warm,
                data_kib=(X.nbytes + y.nbytes) // 1024)


# ---- driver -------------------------------------------------------------------------------

# XLA's CPU client ignores the thread variables above; at 1 thread these flags keep its
# Eigen pool out of the way, and the CPU pinning (pin_cpus) does the rest.
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def thread_env(threads):
    """The environment of a child at `threads` threads (None: no thread settings)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is None:
        return env
    t = str(threads)
    env = dict(env, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)
    if threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + XLA_ONE_THREAD).strip()
    return env


def pin_cpus(threads):
    """The CPUs a child at `threads` threads is pinned to: the first `threads` of the CPUs
    this process may use, or None (no pinning) when that is all of them. XLA sizes its
    thread pool by the CPUs it may run on, so this is how its thread count is matched."""
    allowed = sorted(os.sched_getaffinity(0))
    if threads is None or threads >= len(allowed):
        return None
    return allowed[:threads]


def run_child(args, threads, pin=True):
    cmd = [sys.executable, os.path.abspath(__file__)] + args
    cpus = pin_cpus(threads) if pin else None
    out = subprocess.run(cmd, env=thread_env(threads), check=True, stdout=subprocess.PIPE,
                         text=True, preexec_fn=None if cpus is None else
                         (lambda: os.sched_setaffinity(0, cpus))).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_slug(model):
    """Vendor and brand for a file name: "Intel(R) Xeon(R) Processor" -> "intel-xeon",
    "AMD EPYC 7763 64-Core Processor" -> "amd-epyc"."""
    words = re.sub(r"\((r|tm)\)", " ", model.lower()).split()
    return re.sub(r"[^a-z0-9]+", "-", " ".join(words[:2])).strip("-") or "cpu"


def cpu_simd():
    """'family F model M; avx2 fma avx512f ...': which CPU generation this is (AMD family 25
    is Zen 3, 26 Zen 5), and its vector extensions -- XLA compiles for the host's widest,
    so JAX's figures depend on them more than nncore's (simd in nncore.config())."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        return ""
    simd = [f for f in info.get("flags", "").split()
            if f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")]
    return f"family {info.get('cpu family', '?')} model {info.get('model', '?')}; " + " ".join(simd)


def fmt(x):
    return "—" if x is None else f"{x:,.0f}"


def md_table(head, rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)


def nncore_ratios(results, tools):
    """{(workload, threads): ({tool: nncore f32 rate / tool rate}, fastest other tool)}."""
    rate = {(r["workload"], r["threads"], r["tool"]): r["rate"]
            for res in results for r in res["rows"]}
    out = {}
    for (wname, th, tool), mine in rate.items():
        if tool != "nncore":
            continue
        ratios = {t: mine / rate[(wname, th, t)] for t in tools
                  if t != "nncore" and (wname, th, t) in rate}
        others = [t for t in ratios if TOOLS[t].other]
        out[(wname, th)] = ratios, min(others, key=ratios.get) if others else None
    return out


def table(results, tools):
    """Rates and ratios, one row per workload and thread count: nncore against the fastest
    other library on the row (named), and against PyTorch and its own NumPy backend."""
    ratios = [(t, label) for t, label in RATIOS if t in tools]
    rate = {(r["workload"], r["threads"], r["tool"]): r["rate"]
            for res in results for r in res["rows"]}
    against = nncore_ratios(results, tools)
    rows = []
    for wname in WORKLOADS:
        for th in [res["threads"] for res in results if (wname, res["threads"], "nncore") in rate]:
            r, fastest = against[(wname, th)]
            rows.append([wname, WORKLOADS[wname].unit, str(th)]
                        + [fmt(rate.get((wname, th, t))) for t in tools]
                        + [f"{r[fastest]:.2f}× ({TOOLS[fastest].label})" if fastest else "—"]
                        + [f"{r[t]:.2f}×" if t in r else "—" for t, _ in ratios])
    return md_table(["workload", "unit", "threads"] + [TOOLS[t].label for t in tools]
                    + ["nncore / fastest other"] + [label for _, label in ratios], rows)


def fixed_table(results):
    """The fixed cost of a call on W3, µs, per thread count; W3 in one long fit."""
    res = [r for r in results if r.get("fixed")]
    if not res:
        return []
    names = list(res[0]["fixed"]["per_call"])
    rows = [[str(r["threads"])] + [f"{r['fixed']['per_call'][n]['median_us']:,.1f}"
                                   for n in names] for r in res]
    md = ["The fixed cost of a call on W3 (1-2-1, 3 points), µs, median of "
          f"{FIXED_ROUNDS} × {FIXED_BLOCK} calls in alternating blocks: nncore fit is "
          "`model.fit(X, y, epochs=1, batch_size=None)` (one step); the others are one step "
          "(scikit-learn: fit of one epoch, warm_start).", "",
          md_table(["threads"] + [f"{n} (µs)" for n in names], rows), ""]
    long = []
    for r in res:
        rates = r["fixed"]["long_steps_per_s"]
        long.append([str(r["threads"])] + [fmt(rates.get(t)) for t in ("nncore", "jax-scan")]
                    + [f"{rates['nncore'] / rates['jax-scan']:.2f}×" if "jax-scan" in rates
                       else "—"])
    md += [f"W3 in one call of {res[0]['fixed']['long_epochs']:,} epochs (steps/s, median of "
           "5, alternating): nncore fit against JAX's lax.scan over all the epochs.", "",
           md_table(["threads", "nncore fit", "JAX lax.scan", "nncore / JAX scan"], long), ""]
    return md


def usage_lines(results):
    """What the compiled tools used: CPU-seconds per wall-second of their timed blocks
    (about 1 when a tool keeps to one core), the first call's seconds (compilation)."""
    md = []
    for res in results:
        rows = [r for r in res["rows"] if r["tool"] in OPTIONAL]
        if rows:
            md.append(f"- {res['threads']} thread(s), CPUs {res['settings']['affinity']}: "
                      + "; ".join(f"{r['workload']} {TOOLS[r['tool']].label} "
                                  f"{r['cpu_per_wall']:.2f} CPU-s/s, first call "
                                  f"{r['first_call_s']:.1f} s" for r in rows))
    if not md:
        return []
    return ["CPU-seconds per second of the timed blocks (1.00: one core busy) and the untimed "
            "first call (compilation) of the compiled tools:", ""] + md + [""]


def check_lines(results):
    """The same-computation check, one line per workload (from the first thread count)."""
    checks = next((r["checks"] for r in results if r.get("checks")), [])
    if not checks:
        return []
    md = [f"Same computation: from nncore's initial weights, one timed unit (W3: all its "
          f"steps) by each tool; the last epoch's mean batch loss / the loss over the data "
          f"after it, and the largest weight difference from nncore's (relative to its "
          f"largest weight). Pass: both losses within {CHECK_RTOL:g} (relative) of nncore's, "
          f"or the weights within {CHECK_WTOL:g} (a loss trained down to float32 rounding "
          f"differs by more than {CHECK_RTOL:g} of itself).", ""]
    for c in checks:
        tools = list(c["epoch_loss"])
        md.append(f"- {c['workload']}: " + "; ".join(
            f"{t} {c['epoch_loss'][t]:.6g} / {c['final_loss'][t]:.6g}"
            + ("" if t == "nncore" else f" (Δw {c['weight_diff'][t]:.1e})") for t in tools)
            + (" — same" if c["ok"] else " — DIFFERENT"))
    return md + [""]


# default / 1 below this is flagged: W3 runs one single-thread code path at both
# settings, and its ratio came out at 0.94-1.00 on the 2-core VM.
SLOWER = 0.95


def self_table(rows):
    """nncore at the default thread count against 1 thread."""
    return md_table(["workload", "1 thread", "default", "default / 1"],
                    [[r["workload"], fmt(r["rate_1"]), f"{fmt(r['rate_default'])} "
                      f"({r['default_threads']} threads)",
                      f"{r['rate_default'] / r['rate_1']:.2f}×"
                      + (" (slower)" if r["rate_default"] < SLOWER * r["rate_1"] else "")]
                     for r in rows])


def memory_bound_mib(w, quick):
    """The bound on a run's memory beyond the data, float32: the parameters x4 (weights,
    gradients, two optimizer moments) and one batch of activations per layer; for
    inference, the parameters and one batch of activations."""
    params = sum(a * b + b for a, b in zip(w.sizes[:-1], w.sizes[1:]))
    acts = min(w.batch, size(w, quick)[0]) * sum(w.sizes[1:])
    return 4 * ((4 if w.loss else 1) * params + acts) / 2**20


def rss_table(rss, tools, quick):
    """MiB, 'first run / after a warm-up', per workload and tool, and the bound."""
    cell = {(r["workload"], r["tool"]): f"{r['growth_kib'] / 1024:.1f} / "
                                        f"{r['after_warmup_kib'] / 1024:.1f}" for r in rss}
    rows = [[wname] + [cell.get((wname, t), "—") for t in tools]
            + [f"{memory_bound_mib(WORKLOADS[wname], quick):.1f}"]
            for wname in WORKLOADS if any((wname, t) in cell for t in tools)]
    return md_table(["workload"] + [TOOLS[t].label for t in tools]
                    + ["bound: params ×4 + 1 batch of activations"], rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--quick", action="store_true", help="small sizes, 3 repeats (CI)")
    p.add_argument("--repeats", type=int, help="timed rounds (default 3 quick, 5 full)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. W1,W3")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS processes")
    p.add_argument("--out", default=RESULTS, help="directory for the JSON and Markdown")
    p.add_argument("--note", default="", help="a line about the machine, kept in the results")
    p.add_argument("--skip", default="", help="tools to leave out, e.g. torch-compile,jax-step "
                   f"(of {', '.join(TOOLS)})")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--rss-worker", help=argparse.SUPPRESS)
    p.add_argument("--self-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tools", help=argparse.SUPPRESS)
    args = p.parse_args()
    workloads = args.workloads.split(",")
    repeats = args.repeats or (3 if args.quick else 5)
    if args.worker:
        print(json.dumps(worker(args.worker, args.tools.split(","), workloads, args.quick,
                                repeats)))
        return
    if args.rss_worker:
        print(json.dumps(rss_worker(*args.rss_worker.split(":"), args.quick)))
        return
    if args.self_worker:
        print(json.dumps(self_worker(workloads, args.quick, repeats)))
        return

    leave_out = set(filter(None, args.skip.split(",")))
    if leave_out - set(TOOLS) or "nncore" in leave_out:
        p.error(f"--skip takes tools other than nncore, of {', '.join(TOOLS)}")
    tools = [t for t in TOOLS if available(t) and t not in leave_out]
    skipped = [f"{TOOLS[t].label} skipped: " + ("--skip" if t in leave_out else
                                               f"{TOOLS[t].module} is not installed")
               for t in TOOLS if t not in tools]
    for note in skipped:
        print("note:", note, file=sys.stderr)
    threads = [int(s) for s in args.threads.split(",")]
    quick = ["--quick"] * args.quick
    common = quick + ["--workloads", args.workloads, "--tools", ",".join(tools)]
    started = time.time()
    results = []
    for th in threads:
        print(f"timing {threads} threads: {th} ...", file=sys.stderr)
        results.append(run_child(["--worker", str(th), "--repeats", str(repeats)] + common, th))
    print("nncore: default threads against 1 thread ...", file=sys.stderr)
    selfrows = run_child(["--self-worker", "--repeats", str(repeats)] + common, None)
    rss = []
    if not args.no_rss:
        print("peak RSS, one process per tool and workload ...", file=sys.stderr)
        # torch.compile is left out: one compilation per process, for PyTorch's own figure
        cells = [f"{t}:{w}" for w in workloads for t in tools if t != "torch-compile"
                 and (not TOOLS[t].only or w in TOOLS[t].only)]
        with ThreadPoolExecutor(os.cpu_count()) as pool:    # memory, not time: run side by side
            rss = list(pool.map(lambda c: run_child(["--rss-worker", c] + quick, 1, pin=False),
                                cells))

    now = datetime.datetime.now()
    meta = dict(date=now.isoformat(timespec="seconds"), hostname=socket.gethostname(),
                cpu=cpu_model(), cpu_simd=cpu_simd(), cores=os.cpu_count(),
                machine=platform.machine(),
                mode="quick" if args.quick else "full", repeats=repeats, threads=threads,
                skipped=skipped, note=args.note,
                dropped=[n for r in results for n in r["notes"]],
                pinned={r["threads"]: pin_cpus(r["threads"]) for r in results},
                versions=results[0]["versions"], nncore_config=results[0]["nncore_config"],
                settings={r["threads"]: r["settings"] for r in results},
                workloads={w: asdict(WORKLOADS[w]) for w in workloads},
                rss_method="ru_maxrss growth over the post-import, post-data baseline, fresh "
                           "process at 1 thread: model creation + one epoch (W5: one forward); "
                           "after_warmup: over ru_maxrss after a tiny 4-3-k run of the same tool",
                wall_seconds=round(time.time() - started, 1))
    v = meta["versions"]
    md = [f"# nncore training benchmark ({meta['mode']}), {now:%Y-%m-%d}",
          "", f"{meta['cpu']} ({meta['cpu_simd']}), {meta['cores']} cores, "
          f"host {meta['hostname']}; "
          f"nncore {v.get('nncore')} (simd {meta['nncore_config']['simd']}), numpy {v['numpy']}, "
          f"torch {v.get('torch', 'absent')}, scikit-learn {v.get('sklearn', 'absent')}, "
          f"jax {v.get('jax', 'absent')}, Python {v['python']}."
          + (f" {args.note}" if args.note else ""),
          f"Threads {threads}: OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads and "
          f"nncore.set_num_threads set per process, and each process with fewer threads than "
          f"CPUs pinned to that many CPUs (XLA's pool follows the CPUs it may use; at 1 thread "
          f"also XLA_FLAGS={XLA_ONE_THREAD}); median of {repeats} rounds after a warm-up "
          f"(compilation, JAX's and torch.compile's, falls in the untimed warm-up).",
          "Rates: higher is better; ratios: nncore f32 speed / other speed (> 1: nncore faster); "
          "'fastest other' is the fastest other library on the row (the per-tool ratios are "
          "in the JSON).",
          *[f"Note: {note}." for note in skipped + meta["dropped"]], "",
          table(results, tools), ""]
    md += usage_lines(results) + check_lines(results) + fixed_table(results)
    if selfrows:
        md += ["nncore against itself: at its default thread count (one per core, no "
               "thread settings) and at 1 thread, alternating in one process with no other "
               "library, so no other thread pool competes for the cores.", "",
               self_table(selfrows), ""]
    for res in results:
        if res["load"]:
            md.append(f"- {res['threads']} thread(s): the run took {res['load']['wall_s']} s; "
                      f"other processes used {res['load']['other_cpu_s']} CPU-s meanwhile, "
                      f"the hypervisor stole {res['load']['steal_s']} s"
                      + (" (contended: compare with care)." if res["load"]["other_cpu_s"]
                         > 0.05 * res["load"]["wall_s"] else "."))
    if rss:
        md += ["", "Peak RSS growth of one training run, MiB (W5: one forward pass): "
               "ru_maxrss after model creation and one epoch minus ru_maxrss after the imports "
               "and the data, in a fresh process at 1 thread; first run / after a warm-up run "
               "of a tiny 4-3-k net (without the library's one-time first-use memory). The "
               "bound (float32) leaves out the data, which the baseline holds.", "",
               rss_table(rss, tools, args.quick)]
    md = "\n".join(md) + "\n"
    print(md)

    os.makedirs(args.out, exist_ok=True)
    stem = (f"train-{now:%Y-%m-%d}-{cpu_slug(meta['cpu'])}-{meta['cores']}c-t"
            f"{'-'.join(map(str, threads))}" + ("-quick" if args.quick else ""))
    stem = next(s for s in (stem if r == 1 else f"{stem}-run{r}" for r in range(1, 1000))
                if not os.path.exists(os.path.join(args.out, s + ".json")))
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        ratios = nncore_ratios(results, tools)
        json.dump(dict(meta=meta, results=[r for res in results for r in res["rows"]],
                       ratios=[dict(workload=k[0], threads=k[1], nncore_over=r, fastest_other=f)
                               for k, (r, f) in ratios.items()],
                       checks={r["threads"]: r["checks"] for r in results},
                       fixed_cost={r["threads"]: r["fixed"] for r in results},
                       default_vs_1=selfrows, rss=rss), f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(md)
    print(f"wrote {os.path.join(args.out, stem)}.json/.md ({meta['wall_seconds']} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
