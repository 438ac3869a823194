"""Does a training step allocate? 1,000 steps of W2 (784-16-16-10 sigmoid, batch 32) through fit.

    python bench/steps_alloc.py            # 1 thread; --threads 2, --steps 5000

tracemalloc traces Python objects and NumPy's array data (NumPy reports its allocations to
it). After a warm-up fit (the compiled plan, the layer workspaces), one fit over steps x 32
pre-shuffled samples (shuffle=False) runs with a callback that, at steps 10, 100, 500 and
1000, records the traced memory and the process RSS (VmRSS) and resets tracemalloc's peak.
For each window between two marks:

- "peak above the window's start": the most memory ever live at once during those steps
  beyond what was live when the window began. An array that every step allocated and freed
  would show here at its full size (the smallest W2 array, a 32x10 float32 output, is
  1,280 bytes; a weight gradient 16x784 float32 is 50,176);
- "current growth": what stayed allocated (a leak, or caches filling);
- RSS growth.

The same run with backend="numpy", which allocates its temporaries in every step, shows what
per-step allocation looks like with this method.
"""
import argparse
import tracemalloc

import numpy as np

import nncore as nn


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


class Probe(nn.callbacks.Callback):
    """At the end of each batch in `marks` (0-based): traced memory and RSS into a preallocated
    array (so the probe itself keeps nothing), then the traced peak is reset: each mark's
    peak covers the steps since the previous mark."""

    def __init__(self, marks):
        self.marks = marks
        self.seen = np.zeros((len(marks), 4), np.int64)     # step, current, peak, RSS KiB

    def on_train_batch_end(self, batch, logs=None):
        if batch in self.marks:
            current, peak = tracemalloc.get_traced_memory()
            self.seen[self.marks.index(batch)] = batch + 1, current, peak, rss_kib()
            tracemalloc.reset_peak()


def measure(backend, steps, batch=32):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((steps * batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * batch)
    model = nn.MLP([784, 16, 16, 10], activation="sigmoid", seed=0, backend=backend)
    opt = nn.optim.SGD(lr=0.01, momentum=0.9)
    kw = dict(loss="softmax_cross_entropy", optimizer=opt, batch_size=batch, shuffle=False)
    probe = Probe((9, steps // 10 - 1, steps // 2 - 1, steps - 1))
    tracemalloc.start()             # before the warm-up, so NumPy's block caches fill traced
    model.fit(X[:200 * batch], y[:200 * batch], **kw)   # warm-up: plan, workspaces, caches
    before, rss_before = tracemalloc.get_traced_memory()[0], rss_kib()
    tracemalloc.reset_peak()
    model.fit(X, y, callbacks=[probe], **kw)
    after, peak_fit = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    marks = [dict(zip(("step", "current", "peak", "rss_kib"), map(int, m))) for m in probe.seen]
    windows = [dict(steps=f"{a['step'] + 1}..{b['step']}",
                    current_growth_bytes=b["current"] - a["current"],
                    peak_above_start_bytes=b["peak"] - a["current"],
                    rss_growth_kib=b["rss_kib"] - a["rss_kib"])
               for a, b in zip(marks, marks[1:])]
    return dict(backend=backend, steps=steps, windows=windows, marks=marks,
                fit_peak_growth_bytes=peak_fit - before, fit_current_growth_bytes=after - before,
                rss_before_fit_kib=rss_before, rss_after_fit_kib=rss_kib())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    nn.set_num_threads(args.threads)
    print(f"W2 through fit, batch 32, {args.steps} steps, {args.threads} thread(s); bytes "
          f"traced by tracemalloc, RSS in KiB")
    for backend in ("compiled", "numpy"):
        r = measure(backend, args.steps)
        print(f"\n{backend} backend")
        for w in r["windows"]:
            print(f"  steps {w['steps']:>10}: peak above the window's start "
                  f"{w['peak_above_start_bytes']:7,} B, current growth "
                  f"{w['current_growth_bytes']:+7,} B, RSS growth {w['rss_growth_kib']:+,} KiB")
        print(f"  whole fit: traced peak growth {r['fit_peak_growth_bytes']:,} B, still "
              f"allocated after it {r['fit_current_growth_bytes']:+,} B; RSS before {r['rss_before_fit_kib']:,} KiB, "
              f"after {r['rss_after_fit_kib']:,} KiB "
              f"({r['rss_after_fit_kib'] - r['rss_before_fit_kib']:+,})")

if __name__ == "__main__":
    main()
