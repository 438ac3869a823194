"""Training throughput: nncore, its NumPy backend, PyTorch and scikit-learn (bench/WORKLOADS.md).

    python bench/train.py                  # WORKLOADS.md sizes, 1 and 2 threads (several minutes)
    python bench/train.py --quick          # small sizes, fewer repeats: under 2 minutes on 2 cores
    python bench/train.py --threads 1,2,4,8,16 --no-rss

Every tool trains the same network on the same synthetic data (X ~ N(0,1) float32, seed 0;
random integer labels) with minibatch SGD, lr 0.01, momentum 0.9, no weight decay, one epoch
over pre-shuffled batches taken in order; weights are initialised once, outside the timing.
W3 is 3 points, full batch, one step per epoch; W5 is one forward pass over 10,000 samples.

    nncore           fit(X, y, epochs=E, batch_size=B, shuffle=False), float32 (W1 also float64)
    numpy backend    the same with Sequential(..., backend="numpy")
    PyTorch eager    zero_grad, forward, loss, backward, torch.optim.SGD.step per batch
    scikit-learn     MLPClassifier/MLPRegressor(solver="sgd", learning_rate_init=0.01,
                     momentum=0.9, nesterovs_momentum=False, alpha=0, batch_size=B,
                     shuffle=False, warm_start=True, max_iter=E, n_iter_no_change=huge)
                     .fit(X, y): each call continues from the current weights and optimizer
                     state and runs exactly E epochs of the same in-order minibatches
                     (partial_fit would also give one epoch, but W3 would then pay input
                     validation on every step). Inputs are float32, which sklearn keeps.
    W5 (inference)   nncore/numpy backend model.forward, torch model(X) under inference_mode,
                     sklearn predict_proba (its only public forward pass; adds a 10-column softmax).

Each thread count runs in its own process with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS set, plus torch.set_num_threads and nncore.set_num_threads. Within a process
the tools alternate in blocks (the order rotates every round); with several threads each block
starts after 0.2 s of sleep so the other libraries' spinning worker threads give the cores
back (KERNEL-NOTES). A warm-up round (untimed) builds plans and caches and sizes the blocks;
each figure is the median over all timed calls.

Default threads: one more process, with no thread settings and only nncore, alternates
nncore at its default thread count (one per core) with nncore at 1 thread on every workload:
the default must never be slower. (In the processes above, the other libraries' thread pools
share the cores, which also slows nncore's one-thread code paths.)

Peak RSS: one fresh process per tool and workload, at 1 thread, builds the model and runs one
timed unit (an epoch, or the forward pass). We report resource.getrusage(RUSAGE_SELF).ru_maxrss
after it minus ru_maxrss after the imports and the data creation (the data is created directly
in its final dtype, so nothing transient inflates the baseline), and the same growth measured
after a warm-up run of a tiny 4-3-k net of the same tool, which leaves out the library's
one-time first-use memory (PyTorch: ~80 MiB). RSS counts everything the process touches
(C allocations of torch and OpenBLAS too), not only Python-side allocations.

Results go to bench/results/train-<date>-<cpu>-<cores>c-t<threads>[-quick].json and .md.
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
        assert len(h.epoch) == epochs
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


def torch_train(w, X, y, epochs):
    import torch
    model = _torch_model(w)
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


def torch_infer(w, X, y, epochs):
    import torch
    model = _torch_model(w)
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


@dataclass(frozen=True)
class Tool:
    label: str
    module: str           # what must be importable
    train: object
    infer: object
    dtype: str = "float32"
    only: tuple = ()      # workloads it runs (empty: all)
    options: tuple = ()   # extra keyword arguments, as pairs


TOOLS = {
    "nncore": Tool("nncore f32", "nncore", nncore_train, nncore_infer),
    "nncore-f64": Tool("nncore f64", "nncore", nncore_train, nncore_infer, "float64", ("W1",),
                       (("dtype", "float64"),)),
    "numpy": Tool("numpy backend", "nncore", nncore_train, nncore_infer,
                  options=(("backend", "numpy"),)),
    "torch": Tool("PyTorch", "torch", torch_train, torch_infer),
    "sklearn": Tool("scikit-learn", "sklearn", sklearn_train, sklearn_infer),
}
RATIOS = [("torch", "nncore/PyTorch"), ("sklearn", "nncore/sklearn"), ("numpy", "nncore/numpy")]


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

def alternate(units, repeats, settle, block_s):
    """Median seconds per call of each unit ({name: callable}), in alternating blocks.

    An untimed warm-up call of each unit sizes its block (enough calls for ~block_s). Then
    `repeats` rounds; each round runs one block per unit, starting from a different unit
    every round, each block after `settle` seconds of sleep."""
    names = list(units)
    calls = {}
    for name in names:
        time.sleep(settle)
        t0 = time.perf_counter()
        units[name]()
        calls[name] = max(1, math.ceil(block_s / (time.perf_counter() - t0)))
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(settle)
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                units[name]()
                times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(t)), t) for name, t in times.items()}


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("nncore", "torch", "sklearn", "threadpoolctl"):
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


def worker(threads, tools, workloads, quick, repeats):
    cpu0, wall0 = cpu_seconds(), time.time()
    import nncore
    nncore.set_num_threads(threads)
    if "torch" in tools:
        import torch
        torch.set_num_threads(threads)
    settle = 0.2 if threads > 1 else 0.0
    rows = []
    for wname in workloads:
        units, work = {}, {}
        for tool in tools:
            if not TOOLS[tool].only or wname in TOOLS[tool].only:
                units[tool], work[tool] = build(tool, wname, quick)
        for tool, (t, all_t) in alternate(units, repeats, settle, 0.1 if quick else 0.3).items():
            rows.append(dict(workload=wname, threads=threads, tool=tool, seconds=t,
                             rate=work[tool] / t, unit=WORKLOADS[wname].unit, calls=len(all_t),
                             all_seconds=all_t))
            del units[tool]                     # free the model before the next workload
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                          "MKL_NUM_THREADS")}
    env["nncore.get_num_threads"] = nncore.get_num_threads()
    if "torch" in tools:
        env["torch.get_num_threads"] = torch.get_num_threads()
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
                nncore_config=nncore.config(), rows=rows)


def self_worker(workloads, quick, repeats):
    """nncore at its default thread count against itself at 1 thread: one process with
    no thread settings and no other library, the two alternating in blocks."""
    import nncore
    default = nncore.get_num_threads()
    rows = []
    for wname in workloads:
        run, work = build("nncore", wname, quick)

        def at(n, run=run):
            def unit():
                with nncore.threads(n):
                    run()
            return unit
        # short blocks, many rounds: both settings see the same machine states
        med = alternate({"1": at(1), "default": at(default)}, 4 * repeats, 0.0, 0.05)
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

def thread_env(threads):
    """The environment of a child at `threads` threads (None: no thread settings)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is None:
        return env
    t = str(threads)
    return dict(env, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t)


def run_child(args, threads):
    cmd = [sys.executable, os.path.abspath(__file__)] + args
    out = subprocess.run(cmd, env=thread_env(threads), check=True, stdout=subprocess.PIPE,
                         text=True).stdout
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


def fmt(x):
    return "—" if x is None else f"{x:,.0f}"


def md_table(head, rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)


def table(results, tools):
    """Rates and ratios, one row per workload and thread count."""
    ratios = [(t, label) for t, label in RATIOS if t in tools]
    rate = {(r["workload"], r["threads"], r["tool"]): r["rate"]
            for res in results for r in res["rows"]}
    rows = []
    for wname in WORKLOADS:
        for th in [res["threads"] for res in results if (wname, res["threads"], "nncore") in rate]:
            mine = rate[(wname, th, "nncore")]
            rows.append([wname, WORKLOADS[wname].unit, str(th)]
                        + [fmt(rate.get((wname, th, t))) for t in tools]
                        + [f"{mine / rate[(wname, th, t)]:.2f}×" if (wname, th, t) in rate
                           else "—" for t, _ in ratios])
    return md_table(["workload", "unit", "threads"] + [TOOLS[t].label for t in tools]
                    + [label for _, label in ratios], rows)


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

    tools = [t for t in TOOLS if available(t)]
    skipped = [f"{TOOLS[t].label} skipped: {TOOLS[t].module} is not installed"
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
        cells = [f"{t}:{w}" for w in workloads for t in tools
                 if not TOOLS[t].only or w in TOOLS[t].only]
        with ThreadPoolExecutor(os.cpu_count()) as pool:    # memory, not time: run side by side
            rss = list(pool.map(lambda c: run_child(["--rss-worker", c] + quick, 1), cells))

    now = datetime.datetime.now()
    meta = dict(date=now.isoformat(timespec="seconds"), hostname=socket.gethostname(),
                cpu=cpu_model(), cores=os.cpu_count(), machine=platform.machine(),
                mode="quick" if args.quick else "full", repeats=repeats, threads=threads,
                skipped=skipped, note=args.note,
                versions=results[0]["versions"], nncore_config=results[0]["nncore_config"],
                settings={r["threads"]: r["settings"] for r in results},
                workloads={w: asdict(WORKLOADS[w]) for w in workloads},
                rss_method="ru_maxrss growth over the post-import, post-data baseline, fresh "
                           "process at 1 thread: model creation + one epoch (W5: one forward); "
                           "after_warmup: over ru_maxrss after a tiny 4-3-k run of the same tool",
                wall_seconds=round(time.time() - started, 1))
    v = meta["versions"]
    md = [f"# nncore training benchmark ({meta['mode']}), {now:%Y-%m-%d}",
          "", f"{meta['cpu']}, {meta['cores']} cores, host {meta['hostname']}; "
          f"nncore {v.get('nncore')} (simd {meta['nncore_config']['simd']}), numpy {v['numpy']}, "
          f"torch {v.get('torch', 'absent')}, scikit-learn {v.get('sklearn', 'absent')}, "
          f"Python {v['python']}." + (f" {args.note}" if args.note else ""),
          f"Threads {threads}: OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads and "
          f"nncore.set_num_threads set per process; median of {repeats} rounds after a warm-up.",
          "Rates: higher is better; ratios: nncore f32 speed / other speed (> 1: nncore faster).",
          *[f"Note: {note}." for note in skipped], "", table(results, tools), ""]
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
    slug = re.sub(r"[^a-z0-9]+", "-", meta["cpu"].lower()).strip("-")[:40]
    stem = (f"train-{now:%Y-%m-%d}-{slug}-{meta['cores']}c-t{'-'.join(map(str, threads))}"
            + ("-quick" if args.quick else ""))
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(dict(meta=meta, results=[r for res in results for r in res["rows"]],
                       default_vs_1=selfrows, rss=rss), f, indent=1)
        f.write("\n")
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(md)
    print(f"wrote {os.path.join(args.out, stem)}.json/.md ({meta['wall_seconds']} s)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
