"""Data-parallel training on this machine: samples/s of W1 (784-128-64-10, batch 128) and
W4 (784-1024-1024-10, batch 256) through nncore.distributed.fit at P = 1 and 2 processes,
beside the single-process fit at the same total threads and PyTorch
DistributedDataParallel (gloo backend, CPU, 2 ranks x 1 thread), and the time per step
spent in communication (bench/WORKLOADS.md: synthetic float32 data, softmax cross-entropy,
SGD lr 0.01 momentum 0.9, the same initial weights everywhere).

    python bench/distributed.py              # W1 and W4; --workloads W1, --rounds 5

Columns (samples/s; T threads in all, --threads, default 2):
- fit G=1: today's fit (the plan runs whole epochs), T threads;
- fit G=2: the sharded schedule in one process, T threads;
- P=1: mpiexec -n 1, nncore.distributed.fit with grad_shards = 1, T threads;
- P=2: mpiexec -n 2, grad_shards = 2, T / 2 threads per process (the weights of fit G=2,
  bitwise);
- DDP: torch.nn.parallel.DistributedDataParallel, gloo, 2 processes of T / 2 threads
  (torch.set_num_threads), a local rendezvous on 127.0.0.1; each process takes its half
  of the rows in batches of batch / 2, shuffled once beforehand; skipped, saying so,
  without torch.
"comm ms": nncore, the seconds rank 0 waited in exchanges per step (History.comm_seconds,
waiting for the other process included); DDP, its step time minus the step time of the
same loop under no_sync() (no allreduce). "step": the time of one step without the
fit's fixed cost (plan, buffers, the first touch of fresh memory): each timed run of E
epochs is followed by one of 2E, and a step is the median of their difference over the
steps of E epochs. The target of the issue compares steps: P=2 within 1.3x of the
single-process step at the same total threads. Each measurement is the median of
--repeats timed runs after a warm-up, in its own process(es); the measurements take turns for
--rounds rounds and the table shows the median over the rounds (the ratios: the median
of each round's ratio, its two figures measured back to back). The load average is
printed beside each round: the cores may be shared.

Under `python -S` (no site packages) the workers are started with -S as well, so that
PYTHONPATH alone picks the nncore to measure.
"""
import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np

import nncore as nn

# name: (sizes, global batch, rows, epochs)
WORKLOADS = {"W1": ([784, 128, 64, 10], 128, 8192, 4),
             "W4": ([784, 1024, 1024, 10], 256, 2048, 2)}
PYTHON = [sys.executable] + (["-S"] if sys.flags.no_site else [])


def problem(name):
    sizes, batch, n, epochs = WORKLOADS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    return sizes, batch, X, y


def model(sizes):
    return nn.MLP(sizes, activation="relu", seed=0)


def timed(fn, epochs, n_steps, repeats):
    """(seconds, extra) of fn(epochs) (which returns them), the run of median seconds,
    and the seconds of one step: the median of t(2 epochs) - t(epochs) over n_steps
    (the steps of `epochs`), each pair back to back -- the fit's fixed cost left out.
    After a warm-up."""
    fn(epochs)
    runs, extra = [], []
    for _ in range(repeats):
        runs.append(fn(epochs))
        extra.append(fn(2 * epochs)[0] - runs[-1][0])
    order = np.argsort([t for t, _ in runs])
    return runs[order[len(runs) // 2]], float(np.median(extra)) / n_steps


def steps(name, epochs, P=1):
    sizes, batch, n, _ = WORKLOADS[name]
    return epochs * -(-(n // P) // (batch // P))


def worker(name, epochs, repeats):
    """One process of mpiexec -n P: prints rank 0's JSON line."""
    from mpi4py import MPI
    from nncore import distributed
    comm = MPI.COMM_WORLD
    P = comm.Get_size()
    sizes, batch, X, y = problem(name)
    rows = distributed.shard_rows(len(X), P)
    threads = distributed.threads_per_rank()          # (collective: every rank calls it)

    def run(epochs):
        m = model(sizes)
        comm.Barrier()
        t0 = time.perf_counter()
        h = distributed.fit(m, X[rows], y[rows], loss="softmax_cross_entropy",
                            optimizer=nn.optim.SGD(lr=0.01, momentum=0.9), epochs=epochs,
                            batch_size=batch, grad_shards=P)
        comm.Barrier()
        return time.perf_counter() - t0, h.comm_seconds

    (seconds, comm_s), step = timed(run, epochs, steps(name, epochs), repeats)
    if comm.Get_rank() == 0:
        print(json.dumps(dict(samples_s=epochs * len(X) / seconds, step_ms=1e3 * step,
                              comm_ms=1e3 * comm_s / steps(name, epochs),
                              threads=threads)), flush=True)


def single(name, G, threads, epochs, repeats):
    sizes, batch, X, y = problem(name)

    def run(epochs):
        m = model(sizes)
        with nn.threads(threads):
            t0 = time.perf_counter()
            m.fit(X, y, loss="softmax_cross_entropy",
                  optimizer=nn.optim.SGD(lr=0.01, momentum=0.9), epochs=epochs,
                  batch_size=batch, grad_shards=G)
            return time.perf_counter() - t0, None

    (seconds, _), step = timed(run, epochs, steps(name, epochs), repeats)
    return epochs * len(X) / seconds, 1e3 * step


def launch(name, P, epochs, repeats):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    out = subprocess.run([mpiexec, "-n", str(P), *PYTHON, os.path.abspath(__file__),
                          "--worker", name, "--epochs", str(epochs), "--repeats",
                          str(repeats)], capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise RuntimeError(out.stdout + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_model(sizes):
    """PyTorch's Sequential of Linear + ReLU with nncore's initial weights (seed 0)."""
    import torch
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, layer in zip(linears, model(sizes).layers):
            lin.weight.copy_(torch.from_numpy(layer.weight))
            lin.bias.copy_(torch.from_numpy(layer.bias))
    return net


def ddp_worker(name, epochs, repeats, rank, world, threads):
    """One process of the DDP run (the environment holds the rendezvous)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    sizes, batch, X, y = problem(name)
    rows = np.array_split(np.arange(len(X)), world)[rank]
    perm = np.random.default_rng(rank).permutation(rows)     # shuffled once beforehand
    Xl, yl = torch.from_numpy(X[perm]), torch.from_numpy(y[perm])
    local = batch // world
    loss_fn = torch.nn.functional.cross_entropy

    def run(sync, epochs):
        net = DistributedDataParallel(torch_model(sizes))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(epochs):
            for i in range(0, len(Xl), local):
                opt.zero_grad()
                with contextlib.nullcontext() if sync else net.no_sync():
                    loss = loss_fn(net(Xl[i:i + local]), yl[i:i + local])
                    loss.backward()
                opt.step()
        dist.barrier()
        return time.perf_counter() - t0, None

    n_steps = steps(name, epochs, world)
    (seconds, _), step = timed(lambda e: run(True, e), epochs, n_steps, repeats)
    (local_only, _), _ = timed(lambda e: run(False, e), epochs, n_steps, 1)
    if rank == 0:
        print(json.dumps(dict(samples_s=epochs * len(X) / seconds, step_ms=1e3 * step,
                              comm_ms=1e3 * (seconds - local_only) / n_steps)), flush=True)
    dist.destroy_process_group()


def launch_ddp(name, world, threads, epochs, repeats):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = [subprocess.Popen([*PYTHON, os.path.abspath(__file__), "--ddp-worker", name,
                               "--rank", str(r), "--world", str(world), "--threads",
                               str(threads), "--epochs", str(epochs), "--repeats",
                               str(repeats)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(world)]
    outs = [p.communicate(timeout=600) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("\n".join(o + e for o, e in outs))
    return json.loads(outs[0][0].strip().splitlines()[-1])


def load():
    return "load %.2f" % os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="W1,W4")
    ap.add_argument("--epochs", type=int, help="(default: W1 4, W4 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="total threads (T)")
    ap.add_argument("--no-ddp", action="store_true", help="leave PyTorch DDP out")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ddp-worker", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--world", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.repeats)
    if args.ddp_worker:
        return ddp_worker(args.ddp_worker, args.epochs, args.repeats, args.rank, args.world,
                          args.threads)
    T = args.threads
    ddp = not args.no_ddp
    if ddp:
        try:
            import torch
            ddp_version = f"PyTorch {torch.__version__}"
        except ImportError:
            print("(PyTorch is not installed: the DDP column is skipped; "
                  "pip install torch==2.13.0 for it)")
            ddp = False
    print(f"nncore {nn.__version__} ({os.path.dirname(nn.__file__)}), {os.cpu_count()} CPUs, "
          f"{T} threads in all, float32, median of {args.repeats} runs per measurement, "
          f"median of {args.rounds} rounds" + (f"; {ddp_version} DDP gloo" if ddp else ""))
    results = {}
    for name in args.workloads.split(","):
        epochs = args.epochs or WORKLOADS[name][3]
        rounds = []
        for r in range(args.rounds):
            row = {}
            row["fit"], row["fit_step"] = single(name, 1, T, epochs, args.repeats)
            row["fit2"], _ = single(name, 2, T, epochs, args.repeats)
            p1 = launch(name, 1, epochs, args.repeats)
            p2 = launch(name, 2, epochs, args.repeats)
            row.update(p1=p1["samples_s"], p2=p2["samples_s"], p2_step=p2["step_ms"],
                       p2_comm=p2["comm_ms"])
            if ddp:
                d = launch_ddp(name, 2, max(1, T // 2), epochs, args.repeats)
                row.update(ddp=d["samples_s"], ddp_step=d["step_ms"], ddp_comm=d["comm_ms"])
            rounds.append(row)
            print(f"  {name} round {r + 1}: {load()}: " + ", ".join(
                f"{k} {v:,.0f}" if not k.endswith(("comm", "step")) else f"{k} {v:.3f} ms"
                for k, v in row.items()), flush=True)
        results[name] = {k: float(np.median([row[k] for row in rounds])) for k in rounds[0]}
        # ratios of the same round (the measurements of a round run back to back)
        med = lambda f: float(np.median([f(row) for row in rounds]))  # noqa: E731
        results[name]["r_fit"] = med(lambda row: row["p2"] / row["fit"])
        results[name]["r_step"] = med(lambda row: row["p2_step"] / row["fit_step"])
        if ddp:
            results[name]["r_ddp"] = med(lambda row: row["ddp_step"] / row["p2_step"])
    print(f"({load()} at the end)")
    print()
    print("| workload | fit G=1 | fit G=2 | P=1 | P=2, T/2 threads each | DDP gloo, 2 x T/2 "
          "| P=2 comm ms/step | DDP comm ms/step | P=2 / fit G=1, whole fits "
          "| step P=2 / step fit | P=2 / DDP, steps |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in results.items():
        d = (f"{m['ddp']:,.0f} ({m['ddp_step']:.2f} ms)", f"{m['ddp_comm']:.3f}",
             f"{m['r_ddp']:.2f}") if "ddp" in m else ("-", "-", "-")
        print(f"| {name} | {m['fit']:,.0f} ({m['fit_step']:.2f} ms) | {m['fit2']:,.0f} "
              f"| {m['p1']:,.0f} | {m['p2']:,.0f} ({m['p2_step']:.2f} ms) | {d[0]} "
              f"| {m['p2_comm']:.3f} | {d[1]} | {m['r_fit']:.2f} | {m['r_step']:.2f} "
              f"| {d[2]} |", flush=True)
    print("(samples/s of whole fits, medians over the rounds; in parentheses the time of "
          "one step of the global batch, the fit's fixed cost left out: t(2E epochs) - "
          "t(E), over the steps of E; the ratios are the medians of each round's ratio)")


if __name__ == "__main__":
    main()
