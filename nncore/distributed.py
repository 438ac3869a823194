"""Data-parallel training over MPI: the same bits at any number of processes.

Under ``mpiexec -n P python -m mpi4py train.py`` each process loads its own rows
(shard_rows says which), holds a replica of the model and calls fit; the History and
the weights are the same on every process and bitwise those of the one-process
``model.fit(X, y, ..., grad_shards=G)`` on all the rows, for any P dividing G and any
thread count (docs/scaling-out.md).

A step (nncore._sharded): every process computes the gradients of its G / P reduction
shards with the compiled gradient phase, scaled for the global batch, and sums them
in its part of a fixed pairwise tree; the loss contributions, accuracy counts and a
stop flag go to every process (point-to-point, 8-byte floats); the subtree sums are
reduced in the same tree: each process receives one slice of every process's subtree
sums (Ialltoallv), adds the slices in the tree's order and the slices are gathered
back (Iallgatherv) -- the bytes of a ring allreduce, never MPI.SUM on floats. The l2
term is added once, and every process runs the compiled apply phase.

Faults: every exchange is nonblocking and polled against `timeout` seconds; a process
that raises tells the others (which raise RankFailed naming it), and one that dies or
stops answering makes the others raise RankFailed naming it when the deadline passes.
Run scripts with ``python -m mpi4py`` so that an exception outside fit aborts the job.

mpi4py is imported by these functions, never by ``import nncore``.
"""
from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from nncore import training
from nncore._sharded import shard_sizes

if TYPE_CHECKING:
    import numpy.typing as npt
    from mpi4py import MPI

    from nncore.callbacks import Callback, History
    from nncore.losses import Loss
    from nncore.model import Sequential
    from nncore.optim import Optimizer

__all__ = ["fit", "shard_rows", "threads_per_rank", "RankFailed"]

TAG_MSG, TAG_FAIL = 7101, 7102
# An exchange polls without sleeping for this long, then sleeps up to 1 ms between polls.
SPIN_SECONDS = 0.05


class RankFailed(RuntimeError):
    """Another process of a distributed fit raised, died or stopped answering; the
    processes still running stop with this error. rank: the one that failed (None
    when it cannot be told)."""

    def __init__(self, message: str, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank


def _mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("nncore.distributed needs mpi4py and an MPI: "
                          "pip install 'nncore-mlp[mpi]'") from None
    return MPI


def _comm(comm: MPI.Comm | None) -> MPI.Comm:
    MPI = _mpi()
    return MPI.COMM_WORLD if comm is None else comm


def shard_rows(n: int, grad_shards: int, comm: MPI.Comm | None = None) -> slice:
    """The slice of the n rows of the whole training set that this process loads
    (and passes to fit): its grad_shards / P contiguous shards, numpy.array_split's
    sizes."""
    comm = _comm(comm)
    P, r = comm.Get_size(), comm.Get_rank()
    grad_shards = training.positive_int(grad_shards, "grad_shards")
    if grad_shards % P:
        raise ValueError(f"grad_shards ({grad_shards}) must be a multiple of the "
                         f"number of processes ({P})")
    sizes = shard_sizes(n, grad_shards)
    per = grad_shards // P
    return slice(sum(sizes[:r * per]), sum(sizes[:(r + 1) * per]))


def threads_per_rank(comm: MPI.Comm | None = None) -> int:
    """The cores this process may use divided by the processes of the job on this
    host (MPI's shared-memory split), at least 1. Collective: every process of comm
    calls it."""
    MPI = _mpi()
    comm = _comm(comm)
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        on_host = local.Get_size()
    finally:
        local.Free()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // on_host)


class _MPIExchange:
    """The exchanges of nncore._sharded over an MPI communicator (a duplicate of the
    caller's, so that nothing mixes with the caller's messages)."""

    def __init__(self, comm, grad_shards, timeout):
        self.MPI = MPI = _mpi()
        self.comm = comm.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.G = grad_shards
        per = grad_shards // self.size
        self.lo, self.hi = self.rank * per, (self.rank + 1) * per
        self.timeout = timeout
        self.fail_buf = np.zeros(2, dtype=np.int64)
        self.fail_req = self.comm.Irecv(self.fail_buf, source=MPI.ANY_SOURCE, tag=TAG_FAIL)
        self.failed = False
        self.agreed = False            # an error every process raises together
        self.comm_seconds = 0.0

    def _wait(self, reqs, what, peers):
        """Wait for reqs (peers[i]: the rank reqs[i] waits on, or None) until the
        deadline; raise RankFailed when a process reported a failure or is late."""
        MPI = self.MPI
        t0 = time.perf_counter()
        deadline = t0 + self.timeout
        pending = set(range(len(reqs)))
        spins = 0
        while pending:
            try:
                done = MPI.Request.Testsome([reqs[i] for i in sorted(pending)])
            except MPI.Exception as e:          # MPI saw a peer die
                late = sorted({peers[i] for i in pending if peers[i] is not None})
                names = ", ".join(map(str, late)) if late else "unknown"
                raise RankFailed(f"nncore.distributed.fit: rank {names} failed (MPI error "
                                 f"in the {what} exchange of rank {self.rank}: {e})",
                                 rank=late[0] if late else None) from None
            if done:
                order = sorted(pending)
                for i in done:
                    pending.discard(order[i])
                continue
            if self.fail_req.Test():
                self.failed = True
                rank = int(self.fail_buf[0])
                raise RankFailed(f"nncore.distributed.fit: rank {rank} raised an exception "
                                 f"(see its output); every rank stops", rank=rank)
            now = time.perf_counter()
            if now > deadline:
                late = sorted({peers[i] for i in pending if peers[i] is not None})
                names = ", ".join(map(str, late)) if late else "unknown"
                raise RankFailed(f"nncore.distributed.fit: rank {names} did not answer "
                                 f"within timeout={self.timeout:g} s (the {what} exchange "
                                 f"of rank {self.rank}): it died, hung or left the fit",
                                 rank=late[0] if late else None)
            spins += 1
            if now - t0 > SPIN_SECONDS:          # spin first: a step's exchange is short
                time.sleep(min(1e-3, 1e-6 * spins))
        self.comm_seconds += time.perf_counter() - t0

    def setup(self, n_local, crc):
        """Every process's rows and parameter checksum: the shard sizes, or ValueError
        (raised by every process together) when they do not fit."""
        info = self.gather(np.array([float(n_local), float(crc)]), "setup")
        counts = info[:, 0].astype(np.int64)
        self.agreed = True
        if len(set(info[:, 1].tolist())) > 1:
            raise ValueError("nncore.distributed.fit: the model differs between ranks "
                             "(build it with the same seed, or load the same file, on every "
                             "rank)")
        n = int(counts.sum())
        sizes = shard_sizes(n, self.G)
        per = self.G // self.size
        for r in range(self.size):
            want = sum(sizes[r * per:(r + 1) * per])
            if counts[r] != want:
                raise ValueError(
                    f"X: rank {r} holds {counts[r]} rows, but grad_shards={self.G} over "
                    f"{n} rows gives it {want}; load the rows "
                    f"nncore.distributed.shard_rows({n}, {self.G}) names on each rank")
        self.agreed = False
        return sizes

    def gather(self, msg, what):
        """Every process's float64 vector msg (the same length everywhere), as the
        rows of a (P, len) array; point to point, so that a late rank can be named."""
        P, me = self.size, self.rank
        msg = np.ascontiguousarray(msg, dtype=np.float64)
        out = np.empty((P, msg.size))
        out[me] = msg
        if P == 1:
            return out
        reqs, peers = [], []
        for r in range(P):
            if r != me:
                reqs.append(self.comm.Irecv(out[r], source=r, tag=TAG_MSG))
                peers.append(r)
        for r in range(P):
            if r != me:
                reqs.append(self.comm.Isend(msg, dest=r, tag=TAG_MSG))
                peers.append(None)
        self._wait(reqs, what, peers)
        return out

    def reduce(self, tree, values, n, dtype, empty):
        """The tree's root from every process's frontier values: a reduce-scatter in the
        tree's order (process c adds slice c of every subtree sum), then an allgather."""
        P, me = self.size, self.rank
        if P == 1:
            return tree.root({key: v for key, v in zip(tree.frontier(self.lo, self.hi),
                                                       values)})
        MPI = self.MPI
        per = self.G // P
        fronts = [tree.frontier(r * per, (r + 1) * per) for r in range(P)]
        cut = [n * c // P for c in range(P + 1)]
        mine = len(values)
        send = np.zeros(mine * n, dtype=dtype)
        scounts, sdispls, pos = [], [], 0
        for c in range(P):
            a, b = cut[c], cut[c + 1]
            sdispls.append(pos)
            for v in values:
                if v is not None:
                    send[pos:pos + b - a] = v[a:b]
                pos += b - a
            scounts.append(mine * (b - a))
        width = cut[me + 1] - cut[me]
        total = sum(len(f) for f in fronts)
        recv = np.empty(total * width, dtype=dtype)
        rcounts = [len(f) * width for f in fronts]
        rdispls = np.concatenate([[0], np.cumsum(rcounts)[:-1]]).astype(int).tolist()
        t = MPI.FLOAT if np.dtype(dtype) == np.float32 else MPI.DOUBLE
        req = self.comm.Ialltoallv([send, (scounts, sdispls), t], [recv, (rcounts, rdispls), t])
        self._wait([req], "gradient", [None])
        known = {}
        for r in range(P):
            for i, key in enumerate(fronts[r]):
                lo = rdispls[r] + i * width
                known[key] = None if tree.empty(key, empty) else recv[lo:lo + width]
        part = tree.root(known)
        part = np.zeros(width, dtype=dtype) if part is None else np.ascontiguousarray(part)
        out = np.empty(n, dtype=dtype)
        counts = [cut[c + 1] - cut[c] for c in range(P)]
        req = self.comm.Iallgatherv([part, t], [out, (counts, cut[:-1]), t])
        self._wait([req], "gradient", [None])
        return out

    def fail(self):
        """Tell every other process that this one raised (best effort, a second)."""
        if self.failed or self.size == 1:
            return
        self.failed = True
        msg = np.array([self.rank, 1], dtype=np.int64)
        reqs = [self.comm.Isend(msg, dest=r, tag=TAG_FAIL)
                for r in range(self.size) if r != self.rank]
        deadline = time.perf_counter() + 1.0
        while not self.MPI.Request.Testall(reqs) and time.perf_counter() < deadline:
            time.sleep(1e-3)

    def close(self):
        if not self.failed:
            self.fail_req.Cancel()
            self.fail_req.Wait()
            self.comm.Free()


def fit(model: Sequential, X: npt.ArrayLike, y: npt.ArrayLike, *,
        loss: str | Loss | None = None, optimizer: Optimizer | None = None, epochs: int = 1,
        batch_size: int | None = 32, grad_shards: int | None = None,
        sample_weight: npt.ArrayLike | None = None, shuffle: bool = True,
        callbacks: list[Callback] | tuple[Callback, ...] | None = None, verbose: int = 0,
        validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        comm: MPI.Comm | None = None, n_threads: int | None = None,
        timeout: float = 60.0) -> History:
    """Train `model` data-parallel over the processes of `comm`; returns its History,
    the same on every process.

    Parameters
    ----------
    model : nncore.Sequential, the same on every process (same seed, or loaded
        from the same file)
    X, y : this process's rows: X[shard_rows(n, grad_shards)] of the n rows of the
        whole training set, and their targets (as Sequential.fit)
    loss, optimizer, epochs, shuffle, callbacks, validation_data : as Sequential.fit
    batch_size : int, the global batch (over all processes), a multiple of
        grad_shards; or None (all rows)
    grad_shards : int G, a multiple of the number of processes P (default P); the
        weights and History are bitwise model.fit(..., grad_shards=G) on all rows,
        for every P dividing G
    sample_weight : array (n_local,) >= 0 or None; the loss of a batch is
        sum w_i l_i / sum w_i over the global batch
    verbose : progress on rank 0 only
    comm : mpi4py communicator (default MPI.COMM_WORLD)
    n_threads : threads of this process (default threads_per_rank(comm))
    timeout : seconds each exchange waits for the other processes before raising
        RankFailed naming the late rank

    Returns
    -------
    History (also model.history). A NaN or inf loss raises TrainingDiverged on every
    process, which all keep the same last finite weights.
    """
    MPI = _mpi()
    comm = _comm(comm)
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    P = comm.Get_size()
    G = P if grad_shards is None else training.positive_int(grad_shards, "grad_shards")
    if G % P:
        raise ValueError(f"grad_shards ({G}) must be a multiple of the number of "
                         f"processes ({P})")
    if n_threads is None:
        n_threads = threads_per_rank(comm)
    n_threads = training.positive_int(n_threads, "n_threads")
    ex = _MPIExchange(comm, G, float(timeout))
    try:
        history = training._fit(
            model, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
            batch_size=batch_size, validation_data=validation_data, validation_split=0.0,
            callbacks=callbacks, verbose=verbose if ex.rank == 0 else 0, shuffle=shuffle,
            sample_weight=sample_weight, grad_shards=G, exchange=ex, n_threads=n_threads)
    except (RankFailed, training.TrainingDiverged):
        raise                          # every process raises it together, or knows
    except BaseException:
        if not ex.agreed:              # raised here only: tell the others
            ex.fail()
        raise
    finally:
        ex.close()
    history.comm_seconds = ex.comm_seconds
    return history
