"""GEMM and fused dense-layer throughput: nncore against numpy.matmul (OpenBLAS).

nncore is timed twice: the compiled kernel called directly (as nncore's fused
training step calls it, no Python per call) and through nncore.functional, the
validated public door, which adds a few microseconds of argument checks a call.

    python bench/kernels.py                 # WORKLOADS.md shapes, float32/float64, 1 and 2 threads
    python bench/kernels.py --full          # every layer product at batch 32/128/256 (W2 at 32)
    python bench/kernels.py --threads 1,2,4,8,16

Each thread count runs in its own process with OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS set, so both libraries get the same number of threads. Within
a process the tools alternate in blocks (a block's first call is dropped: the
other library's spinning threads may still hold the cores; with several threads
each block also waits 0.2 s for them to sleep); each figure is the median over all
kept calls. GFLOP/s = 2 m n k / t.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

# W1 (784-128-64-10), W2 (784-16-16-10) and W4 (784-1024-1024-10) layers as (n_in, n_out).
W1_LAYERS = [(784, 128), (128, 64), (64, 10)]
W2_LAYERS = [(784, 16), (16, 16), (16, 10)]
W4_LAYERS = [(784, 1024), (1024, 1024), (1024, 10)]


def gemm_cases(full):
    """(label, m, n, k, trans_a, trans_b) — op(A) is (m, k), op(B) is (k, n)."""
    cases = [("128x784 . 784x128", 128, 128, 784, False, False),
             ("256x784 . 784x1024", 256, 1024, 784, False, False),
             ("256x1024 . 1024x1024", 256, 1024, 1024, False, False)]
    plan = ([(b, W1_LAYERS + W4_LAYERS) for b in (32, 128, 256)] + [(32, W2_LAYERS)] if full
            else [(128, W1_LAYERS), (256, W4_LAYERS)])
    for batch, layers in plan:
        for n_in, n_out in layers:
            cases.append((f"fwd  X.Wt  b{batch} {n_in}->{n_out}", batch, n_out, n_in, False, True))
            cases.append((f"dX   dZ.W  b{batch} {n_in}->{n_out}", batch, n_in, n_out, False, False))
            cases.append((f"dW   dZt.X b{batch} {n_in}->{n_out}", n_out, n_in, batch, True, False))
    return cases


def alternate(funcs, rounds, block, settle=0.0):
    """Median seconds per call of each function, run in alternating blocks.

    With several threads, each block starts after `settle` seconds of sleep:
    OpenBLAS's and OpenMP's worker threads spin for a while after a call, and
    on 2 cores the other library's spinning threads would take the cores from
    the one being timed (KERNEL-NOTES measured 10x slowdowns)."""
    times = [[] for _ in funcs]
    for _ in range(rounds):
        for i, f in enumerate(funcs):
            time.sleep(settle)
            for r in range(block + 1):
                t0 = time.perf_counter()
                f()
                dt = time.perf_counter() - t0
                if r:                      # drop the first call of a block
                    times[i].append(dt)
    return [float(np.median(t)) for t in times]


def calls_for(flops):
    """Enough calls per block for ~20 ms of work at ~50 GFLOP/s."""
    return int(min(50, max(3, 0.02 * 50e9 / max(flops, 1))))


def worker(threads, full, quick):
    import nncore
    from nncore import functional as F
    from nncore._kernels import codes, dense, gemm

    rng = np.random.default_rng(0)
    rows = []
    rounds = 3 if quick else 5
    settle = 0.2 if threads > 1 else 0.0
    for dtype in (np.float32, np.float64):
        for label, m, n, k, ta, tb in gemm_cases(full):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
            opa, opb = (a.T if ta else a), (b.T if tb else b)
            c0, c1, c2 = (np.empty((m, n), dtype) for _ in range(3))
            flops = 2.0 * m * n * k
            kernel = gemm.gemm["float" if dtype == np.float32 else "double"]
            t_k, t_nn, t_np = alternate(
                [lambda: kernel(opa, opb, c0, 1.0, 0.0, threads),
                 lambda: F.gemm(a, b, c1, trans_a=ta, trans_b=tb, n_threads=threads),
                 lambda: np.matmul(opa, opb, out=c2)],
                rounds, calls_for(flops), settle)
            rows.append(dict(kind="gemm", case=label, dtype=np.dtype(dtype).name,
                             threads=threads, kernel_gflops=flops / t_k / 1e9,
                             nncore_gflops=flops / t_nn / 1e9,
                             numpy_gflops=flops / t_np / 1e9, kernel_ratio=t_np / t_k,
                             ratio=t_np / t_nn))
    # Fused dense forward against matmul + bias + activation as three NumPy calls.
    for batch, n_in, n_out, act in [(128, 784, 128, "relu"), (32, 784, 16, "sigmoid"),
                                    (256, 1024, 1024, "relu"), (128, 64, 10, "relu")]:
        x = rng.standard_normal((batch, n_in)).astype(np.float32)
        w = rng.standard_normal((n_out, n_in)).astype(np.float32)
        bias = rng.standard_normal(n_out).astype(np.float32)
        z0, a0 = np.empty((batch, n_out), np.float32), np.empty((batch, n_out), np.float32)
        z1, a1 = np.empty_like(z0), np.empty_like(a0)
        z2, a2 = np.empty_like(z1), np.empty_like(a1)
        layer = dense.dense_forward["float"]
        code = codes.ACTIVATIONS[act]

        def numpy_layer():
            np.matmul(x, w.T, out=z2)
            np.add(z2, bias, out=z2)
            if act == "relu":
                np.maximum(z2, 0, out=a2)
            else:
                np.negative(z2, out=a2)
                np.exp(a2, out=a2)
                np.add(a2, 1, out=a2)
                np.reciprocal(a2, out=a2)

        t_k, t_nn, t_np = alternate(
            [lambda: layer(x, w, bias, code, 0.0, z0, a0, threads),
             lambda: F.dense_forward(x, w, bias, act, z_out=z1, a_out=a1, n_threads=threads),
             numpy_layer], rounds, calls_for(2.0 * batch * n_in * n_out), settle)
        rows.append(dict(kind="dense_forward", case=f"b{batch} {n_in}->{n_out} {act}",
                         dtype="float32", threads=threads, kernel_us=t_k * 1e6,
                         nncore_us=t_nn * 1e6, numpy_us=t_np * 1e6,
                         kernel_ratio=t_np / t_k, ratio=t_np / t_nn))
    return dict(threads=threads, simd=nncore.config()["simd"], rows=rows)


def geomean(xs):
    return float(np.exp(np.mean(np.log(xs)))) if xs else float("nan")


def report(results):
    print(f"# nncore kernels vs numpy.matmul ({platform.machine()}, "
          f"{os.cpu_count()} CPUs, numpy {np.__version__}, simd {results[0]['simd']})")
    print("kernel = the compiled call (as the fused training step makes it); functional =\n"
          "nncore.functional, which also validates its arguments (a few us a call).\n"
          "ratio = nncore speed / numpy speed (> 1: nncore faster)\n")
    print(f"{'case':28s} {'dtype':8s} {'thr':>3s} {'kernel':>7s} {'funct.':>7s} {'numpy':>7s}"
          f" {'ratio':>6s} {'ratio':>6s}")
    print(f"{'':28s} {'':8s} {'':3s} {'GF/s':>7s} {'GF/s':>7s} {'GF/s':>7s} {'kernel':>6s} "
          f"{'funct.':>6s}")
    for res in results:
        for r in res["rows"]:
            if r["kind"] == "gemm":
                print(f"{r['case']:28s} {r['dtype']:8s} {r['threads']:3d} "
                      f"{r['kernel_gflops']:7.1f} {r['nncore_gflops']:7.1f} "
                      f"{r['numpy_gflops']:7.1f} {r['kernel_ratio']:6.2f} {r['ratio']:6.2f}")
    print("\ngeometric mean of gemm ratios, layer products only (kernel / functional):")
    for res in results:
        for dt in ("float32", "float64"):
            rows = [r for r in res["rows"] if r["kind"] == "gemm"
                    and r["dtype"] == dt and not r["case"][0].isdigit()]
            print(f"  {dt} {res['threads']} thread(s): "
                  f"{geomean([r['kernel_ratio'] for r in rows]):.2f} / "
                  f"{geomean([r['ratio'] for r in rows]):.2f}   "
                  f"(lowest {min(r['kernel_ratio'] for r in rows):.2f} / "
                  f"{min(r['ratio'] for r in rows):.2f})")
    print(f"\n{'fused dense forward, float32':28s} {'thr':>3s} {'kernel':>7s} {'funct.':>7s} "
          f"{'numpy':>7s} {'ratio':>6s} {'ratio':>6s}")
    print(f"{'(numpy: matmul, +b, f)':28s} {'':3s} {'us':>7s} {'us':>7s} {'us':>7s} "
          f"{'kernel':>6s} {'funct.':>6s}")
    for res in results:
        for r in res["rows"]:
            if r["kind"] == "dense_forward":
                print(f"{r['case']:28s} {r['threads']:3d} {r['kernel_us']:7.1f} "
                      f"{r['nncore_us']:7.1f} {r['numpy_us']:7.1f} {r['kernel_ratio']:6.2f} "
                      f"{r['ratio']:6.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--full", action="store_true", help="all layer products at batch 32/128/256")
    p.add_argument("--quick", action="store_true", help="fewer rounds")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.full, args.quick)))
        return
    results = []
    for t in [int(s) for s in args.threads.split(",")]:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
        cmd = [sys.executable, __file__, "--worker", str(t)]
        cmd += ["--full"] * args.full + ["--quick"] * args.quick
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out))
    report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
