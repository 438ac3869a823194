"""nncore's default thread count on a busy machine, against 1 thread (bench/WORKLOADS.md W1, W4).

    python bench/contention.py             # W1 and W4, three cases, ~3 minutes on 2 cores
    python bench/contention.py --quick     # smaller data, fewer rounds

A user does not choose the machine's load. The default (one thread per core, nothing
set) must not lose to 1 thread when the cores are shared (#13: at least 0.8x):

    quiet      nothing else runs
    busy loop  one other process spins (`while True: pass`) on the cores
    two fits   two nncore trainings at once, each in its own process, both at the
               same setting (both default, or both 1 thread)

Each case alternates the two settings in rounds (fresh processes for "two fits", a
fresh model per fit in the others); a figure is the median over the rounds of
samples/s of one fit (W1: 1 epoch of 60,000 samples, batch 128; W4: 1 epoch of
5,120 samples, batch 256; --quick: a sixth of W1, W4 2,560), measured in the process
itself. The fits use fit()'s defaults apart from shuffle=False: "default" sets no
thread count anywhere (no OMP_NUM_THREADS), "1 thread" runs inside nncore.threads(1).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = {  # name: (sizes, batch, samples, quick samples)
    "W1": ((784, 128, 64, 10), 128, 60_000, 10_000),
    "W4": ((784, 1024, 1024, 10), 256, 5_120, 2_560),
}
SPIN = "while True: pass"


def fit_rates(wname, quick, threads, rounds):
    """samples/s of `rounds` fits at `threads` (None: nncore's default)."""
    import nncore
    sizes, batch, n, nq = WORK[wname]
    n = nq if quick else n
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], n)
    kw = dict(loss="softmax_cross_entropy", epochs=1, batch_size=batch, shuffle=False)
    out = []
    for _ in range(rounds):
        model = nncore.MLP(list(sizes), seed=0)
        opt = nncore.optim.SGD(lr=0.01, momentum=0.9)
        with nncore.threads(threads) if threads else _Nothing():
            model.fit(X[:batch * 4], y[:batch * 4], optimizer=opt, **kw)     # warm-up
            t0 = time.perf_counter()
            model.fit(X, y, optimizer=opt, **kw)
            out.append(n / (time.perf_counter() - t0))
    return out


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def child(wname, quick, threads, rounds):
    """Run fit_rates in a fresh process with no thread settings in its environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", wname,
           str(threads or 0), str(rounds)] + (["--quick"] if quick else [])
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)


def rates_of(procs):
    return [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def measure(wname, quick, case, rounds):
    """{setting: [samples/s per fit]} for settings "1" and "default", alternating."""
    res = {"1": [], "default": []}
    for r in range(rounds):
        for setting in (("1", "default") if r % 2 == 0 else ("default", "1")):
            threads = 1 if setting == "1" else None
            if case == "two fits":
                for rates in rates_of([child(wname, quick, threads, 1) for _ in range(2)]):
                    res[setting] += rates
            else:
                res[setting] += rates_of([child(wname, quick, threads, 1)])[0]
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, help="rounds per case (default 6, quick 3)")
    p.add_argument("--workloads", default="W1,W4")
    p.add_argument("--child", nargs=3, metavar=("WORKLOAD", "THREADS", "ROUNDS"),
                   help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        wname, threads, rounds = a.child[0], int(a.child[1]), int(a.child[2])
        print(json.dumps(fit_rates(wname, a.quick, threads or None, rounds)))
        return
    rounds = a.rounds or (3 if a.quick else 6)
    import nncore
    print(f"nncore {nncore.__version__}, {len(os.sched_getaffinity(0))} CPUs, default "
          f"{nncore.get_num_threads()} threads; samples/s, median over {rounds} rounds "
          f"(two fits: both processes' figures)")
    print("| workload | case | 1 thread | default | default / 1 |")
    print("|---|---|---|---|---|")
    for wname in a.workloads.split(","):
        for case in ("quiet", "busy loop", "two fits"):
            spin = (subprocess.Popen([sys.executable, "-c", SPIN])
                    if case == "busy loop" else None)
            try:
                res = measure(wname, a.quick, case, rounds)
            finally:
                if spin is not None:
                    spin.kill()
                    spin.wait()
            one, default = np.median(res["1"]), np.median(res["default"])
            print(f"| {wname} | {case} | {one:,.0f} | {default:,.0f} | "
                  f"{default / one:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
