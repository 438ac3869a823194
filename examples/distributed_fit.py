"""Data-parallel training over MPI, the same bits at any number of processes.

    mpiexec -n 2 python -m mpi4py examples/distributed_fit.py      # (or -n 1, -n 4)
    python examples/distributed_fit.py --reference                 # one process, the twin

Each process loads only its rows of a synthetic 784-feature, 10-class set (W1's shape),
trains a replica of 784-128-64-10 with nncore.distributed.fit, and rank 0 prints the
History and the sha256 of all the weights: the same for -n 1, 2 and 4, and the same as
the one-process model.fit(..., grad_shards=4) that --reference runs. Needs the mpi extra:
pip install "nncore-mlp[mpi]" (or pip install mpi4py mpich).
"""
import argparse
import hashlib

import numpy as np

import nncore as nn

G, N = 4, 2000


def data(rows=slice(None)):
    """The rows `rows` of the whole set (each process would read only its own)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 784)).astype(np.float32)
    y = (X[:, :10].argmax(axis=1) + (X[:, 10] > 1.5)) % 10
    return X[rows], y[rows]


def report(model, history):
    digest = hashlib.sha256(b"".join(p.tobytes() for p in model.parameters())).hexdigest()
    print("loss per epoch:", " ".join(f"{v:.6f}" for v in history["loss"]))
    print("accuracy:      ", " ".join(f"{v:.4f}" for v in history["accuracy"]))
    print("sha256 of the weights:", digest)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", action="store_true",
                    help="run model.fit(..., grad_shards=4) in this process instead")
    args = ap.parse_args()
    model = nn.MLP([784, 128, 64, 10], seed=0)
    kw = dict(loss="softmax_cross_entropy", optimizer=nn.optim.Adam(lr=1e-3), epochs=3,
              batch_size=128, grad_shards=G)
    if args.reference:
        X, y = data()
        report(model, model.fit(X, y, **kw))
        return
    from mpi4py import MPI
    from nncore import distributed
    X, y = data(distributed.shard_rows(N, G))
    history = distributed.fit(model, X, y, **kw)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(f"{MPI.COMM_WORLD.Get_size()} processes, {len(X)} rows on rank 0, "
              f"{history.comm_seconds:.3f} s in exchanges")
        report(model, history)


if __name__ == "__main__":
    main()
