"""Data-parallel training on this machine: samples/s of W1 (784-128-64-10, batch 128) and
W4 (784-1024-1024-10, batch 256) through nncore.distributed.fit at P = 1 and 2 processes,
beside the single-process fit at the same total threads, and the time per step spent in
the exchanges (bench/WORKLOADS.md: synthetic float32 data, SGD lr 0.01 momentum 0.9).

    python bench/distributed.py              # W1 and W4; --workloads W1, --epochs 3

Rows of each column:
- fit, G = 1: today's fit (the plan runs whole epochs), T threads;
- fit, G = P: the sharded schedule in one process (one Python call per shard and step);
- mpiexec -n P: nncore.distributed.fit with grad_shards = P, T / P threads per process
  (the same weights as fit, G = P, bitwise);
the median of --repeats timed fits after a warm-up. "comm ms/step": the seconds rank 0
spent waiting in exchanges (History.comm_seconds) per step.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import nncore as nn

WORKLOADS = {"W1": ([784, 128, 64, 10], 128, 8192), "W4": ([784, 1024, 1024, 10], 256, 2048)}


def problem(name):
    sizes, batch, n = WORKLOADS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    return sizes, batch, X, y


def model(sizes):
    return nn.MLP(sizes, activation="relu", seed=0)


def timed(fn, repeats):
    fn()                                             # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def worker(name, epochs, repeats):
    """One process of mpiexec -n P: prints rank 0's JSON line."""
    from mpi4py import MPI
    from nncore import distributed
    comm = MPI.COMM_WORLD
    P = comm.Get_size()
    sizes, batch, X, y = problem(name)
    rows = distributed.shard_rows(len(X), P)
    threads = distributed.threads_per_rank()          # (collective: every rank calls it)

    def run():
        m = model(sizes)
        comm.Barrier()
        h = distributed.fit(m, X[rows], y[rows], loss="softmax_cross_entropy",
                            optimizer=nn.optim.SGD(lr=0.01, momentum=0.9), epochs=epochs,
                            batch_size=batch, grad_shards=P)
        comm.Barrier()
        return h.comm_seconds

    seconds, comm_s = timed(run, repeats)
    steps = epochs * -(-len(X) // batch)
    if comm.Get_rank() == 0:
        print(json.dumps(dict(samples_s=epochs * len(X) / seconds,
                              comm_ms=1e3 * comm_s / steps,
                              threads=threads)), flush=True)


def single(name, G, threads, epochs, repeats):
    sizes, batch, X, y = problem(name)

    def run():
        m = model(sizes)
        with nn.threads(threads):
            m.fit(X, y, loss="softmax_cross_entropy",
                  optimizer=nn.optim.SGD(lr=0.01, momentum=0.9), epochs=epochs,
                  batch_size=batch, grad_shards=G)

    seconds, _ = timed(run, repeats)
    return epochs * len(X) / seconds


def launch(name, P, epochs, repeats):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    out = subprocess.run([mpiexec, "-n", str(P), sys.executable, os.path.abspath(__file__),
                          "--worker", name, "--epochs", str(epochs), "--repeats",
                          str(repeats)], capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W4")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="total threads (T)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.repeats)
    T = args.threads
    print(f"nncore {nn.__version__}, {os.cpu_count()} CPUs, {T} threads in all, float32, "
          f"median of {args.repeats}")
    print("| workload | fit G=1, T threads | fit G=2, T threads | mpiexec -n 1 (G=1) "
          "| mpiexec -n 2 (G=2), T/2 each | comm ms/step at P=2 | P=2 / fit G=1 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.workloads.split(","):
        base = single(name, 1, T, args.epochs, args.repeats)
        g2 = single(name, 2, T, args.epochs, args.repeats)
        p1 = launch(name, 1, args.epochs, args.repeats)
        p2 = launch(name, 2, args.epochs, args.repeats)
        print(f"| {name} | {base:,.0f} | {g2:,.0f} | {p1['samples_s']:,.0f} "
              f"| {p2['samples_s']:,.0f} | {p2['comm_ms']:.3f} | {p2['samples_s'] / base:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
