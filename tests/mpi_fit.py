"""Run by tests/test_distributed.py under mpiexec: nncore.distributed.fit on the cases
of CASES, printing one line "case sha256" per case on rank 0.

    mpi_fit.py fit [n_threads|-] [shared|messages]
                                  every case (the last one diverges); the exchange:
                                  shared_memory=True | False (default None: shared here)
    mpi_fit.py save PATH          case w1 for half its epochs, saved by rank 0
    mpi_fit.py resume PATH        case w1 loaded from PATH, the other half
    mpi_fit.py raise | hang | kill PATH   rank 1 fails in epoch 2 (timeout 4 s); each
                                  rank writes the error it raised to PATH.<rank>
                                  (kill: rank 1 its pid to PATH.pid.1 first)
"""
import hashlib
import os
import signal
import sys
import time

import numpy as np

import nncore as nn
from nncore import distributed


def case(name):
    """(model, data, fit arguments) of a case; the same in every process and in the test."""
    rng = np.random.default_rng(0)
    if name == "tiny":
        X, y = rng.standard_normal((90, 5)), rng.integers(0, 3, 90)
        m = nn.Sequential([nn.Dense(5, 7, "tanh"), nn.Dense(7, 3)], seed=1, dtype="float64")
        kw = dict(loss="softmax_cross_entropy", epochs=3, batch_size=20,
                  optimizer=nn.optim.SGD(lr=0.1, momentum=0.9))
        return m, X, y, None, kw
    if name == "sparse":                        # 3 rows, G = 4: a shard (a rank at P = 4)
        X, y = rng.standard_normal((3, 5)), rng.integers(0, 3, 3)   # without rows, and at
        m = nn.Sequential([nn.Dense(5, 4, "tanh"), nn.Dense(4, 3)],  # P = 2 rank 0's
                          seed=1, dtype="float64")                  # weights all 0
        kw = dict(loss="softmax_cross_entropy", epochs=2, batch_size=None,
                  optimizer=nn.optim.Adam(lr=0.1))
        return m, X, y, np.array([0.0, 0.0, 1.5]), kw
    if name == "diverge":                       # the loss becomes NaN in epoch 1, batch 2
        X, y = rng.standard_normal((90, 5)).astype(np.float32) * 100, rng.integers(0, 3, 90)
        m = nn.Sequential([nn.Dense(5, 7, "relu"), nn.Dense(7, 3)], seed=1)
        kw = dict(loss="softmax_cross_entropy", epochs=5, batch_size=20,
                  optimizer=nn.optim.SGD(lr=1e30))
        return m, X, y, None, kw
    X = rng.standard_normal((250, 784)).astype(np.float32)
    y = rng.integers(0, 10, 250)
    w = rng.random(250)
    m = nn.Sequential([nn.Dense(784, 128, "relu"), nn.Dense(128, 64, "relu"),
                       nn.Dense(64, 10)], seed=2, l2=1e-4)
    kw = dict(loss="softmax_cross_entropy", epochs=4, batch_size=96,   # last batch partial
              optimizer=nn.optim.Adam(lr=1e-3))
    return m, X, y, w, kw


CASES = ["tiny", "w1", "sparse", "diverge"]
G = 4


def digest(m):
    return hashlib.sha256(b"".join(p.tobytes() for p in m.parameters())).hexdigest()


def local(X, y, w):
    rows = distributed.shard_rows(len(X), G)
    return X[rows], y[rows], None if w is None else w[rows]


def main():
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    what = sys.argv[1]
    if what == "fit":
        n_threads = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "-" else None
        shared = {"shared": True, "messages": False}.get(sys.argv[3]) if len(sys.argv) > 3 \
            else None
        for name in CASES:
            m, X, y, w, kw = case(name)
            X, y, w = local(X, y, w)
            try:
                h = distributed.fit(m, X, y, sample_weight=w, grad_shards=G,
                                    n_threads=n_threads, shared_memory=shared, **kw)
                result = repr(h.history)
            except nn.TrainingDiverged as e:     # raised by every rank
                result = f"TrainingDiverged: {e}"
            if rank == 0:
                print(name, digest(m), result, flush=True)
    elif what in ("save", "resume"):
        m, X, y, w, kw = case("w1")
        X, y, w = local(X, y, w)
        kw["epochs"] //= 2
        if what == "resume":
            m = nn.load(sys.argv[2])
            del kw["optimizer"], kw["loss"]
        distributed.fit(m, X, y, sample_weight=w, grad_shards=G, **kw)
        if what == "save" and rank == 0:
            m.save(sys.argv[2])
        if rank == 0:
            print("w1", digest(m), flush=True)
    else:
        m, X, y, w, kw = case("tiny")
        X, y, w = local(X, y, w)

        class Fail(nn.callbacks.Callback):
            def on_epoch_end(self, epoch, logs):
                if rank == 1 and epoch == 1:
                    if what == "raise":
                        raise RuntimeError("a failure on rank 1")
                    if what == "hang":
                        time.sleep(120)
                    if what == "kill":
                        with open(f"{sys.argv[2]}.pid.{rank}", "w") as f:
                            f.write(str(os.getpid()))
                        os.kill(os.getpid(), signal.SIGKILL)

        try:
            distributed.fit(m, X, y, grad_shards=G, callbacks=[Fail()], timeout=4, **kw)
        except Exception as e:
            # the launcher may drop what a process printed when the job is aborted:
            # the error goes to a file too
            with open(f"{sys.argv[2]}.{rank}", "w") as f:
                f.write(f"{type(e).__name__}: {e}")
            raise


if __name__ == "__main__":
    main()
