"""Data-parallel training over MPI: the same bits at any number of processes.

Under ``mpiexec -n P python -m mpi4py train.py`` each process loads its own rows
(shard_rows says which), holds a replica of the model and calls fit; the History and
the weights are the same on every process and bitwise those of the one-process
``model.fit(X, y, ..., grad_shards=G)`` on all the rows, for any P dividing G and any
thread count (docs/scaling-out.md).

A step (nncore._sharded): every process computes the gradients of its G / P reduction
shards with one compiled call, scaled for the global batch, and sums them in its part
of a fixed pairwise tree, in place; the subtree sums are reduced in the same tree: each
process sends every other process c slice c of its subtree sums, together with a small
header (its shards' losses, its accuracy count and a stop flag: every process then
knows whether the step goes on), adds the slices it receives in the tree's order, and
the slices of the root are exchanged (allgather) -- the bytes of a ring allreduce,
point to point on buffers and persistent requests made once per fit, never MPI.SUM on
floats. On one host the subtree sums and the root are in an MPI shared-memory window
instead, read and written in place (shared_memory): the messages are the headers and a
one-number "slice written" per pair, and the bits are the same. The l2 term is added
once, and every process runs the compiled apply phase on the root.

Faults: every exchange is nonblocking and polled against `timeout` seconds; a process
that raises tells the others (which raise RankFailed naming it); one that dies on the
same host is named as soon as a wait sees its pid gone, and one that dies elsewhere or
stops answering when the deadline passes. (MPICH's launcher usually kills the whole job
first when a process is killed: then it names the pid, docs/scaling-out.md.) Run scripts
with ``python -m mpi4py`` so that an exception outside fit aborts the job.

mpi4py is imported by these functions, never by ``import nncore``.
"""
from __future__ import annotations

import os
import socket
import time
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from nncore import training
from nncore._sharded import WEIGHTS_ZERO, shard_sizes
from nncore._threads import threads

if TYPE_CHECKING:
    import numpy.typing as npt
    from mpi4py import MPI

    from nncore.callbacks import Callback, History
    from nncore.losses import Loss
    from nncore.model import Sequential
    from nncore.optim import Optimizer

__all__ = ["fit", "shard_rows", "threads_per_rank", "RankFailed"]

TAG_MSG, TAG_FAIL, TAG_HEAD, TAG_ROOT, TAG_GRAD = 7101, 7102, 7103, 7104, 7200
# An exchange polls without sleeping for this long, then sleeps up to 1 ms between polls.
SPIN_SECONDS = 0.05
# A wait longer than this checks, this often, whether the processes it waits for on this
# host are still alive (a killed process is named at once instead of at the deadline).
ALIVE_SECONDS = 0.01


def _dead(pid):
    """Whether process pid (on this host) has died: gone, or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except OSError:                     # no /proc: only a process that is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False


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
    caller's, so that nothing mixes with the caller's messages). A step's messages are
    persistent requests on buffers allocated once per fit (prepare)."""

    def __init__(self, comm, grad_shards, timeout, shared_memory=None):
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
        self.persistent = []
        self.pids = {}                 # rank: pid of the other processes on this host
        self.shared_memory = shared_memory
        self.shared = False            # the sums travel through a shared window (setup)
        self.win = None

    @property
    def l2_in_root(self):
        """Whether root() returns the l2 term added (shared: each process adds it to its
        slice, which the others read in place)."""
        return self.shared

    def _late(self, reqs, peers):
        """The ranks of peers whose requests have not completed."""
        late = set()
        for req, peer in zip(reqs, peers):
            if peer is None:
                continue
            try:
                if not req.Test():
                    late.add(peer)
            except self.MPI.Exception:
                late.add(peer)
        return sorted(late)

    def _wait(self, reqs, what, peers):
        """Wait for reqs (peers[i]: the rank reqs[i] waits on, or None) until the
        deadline; raise RankFailed when a process reported a failure or is late. It
        polls, yielding the core between polls (the other process may need it), and
        sleeps between polls after SPIN_SECONDS."""
        MPI = self.MPI
        testall = MPI.Request.Testall
        t0 = checked = time.perf_counter()
        spins = 0
        try:
            while not testall(reqs):
                if self.fail_req.Test():
                    self.failed = True
                    rank = int(self.fail_buf[0])
                    raise RankFailed(f"nncore.distributed.fit: rank {rank} raised an "
                                     f"exception (see its output); every rank stops",
                                     rank=rank)
                now = time.perf_counter()
                if now - t0 > self.timeout:
                    late = self._late(reqs, peers)
                    names = ", ".join(map(str, late)) if late else "unknown"
                    raise RankFailed(f"nncore.distributed.fit: rank {names} did not answer "
                                     f"within timeout={self.timeout:g} s (the {what} "
                                     f"exchange of rank {self.rank}): it died, hung or left "
                                     f"the fit", rank=late[0] if late else None)
                if now - checked > ALIVE_SECONDS and self.pids:
                    checked = now
                    self._alive(reqs, peers, what)
                spins += 1
                if now - t0 > SPIN_SECONDS:          # spin first: a step's exchange is short
                    time.sleep(min(1e-3, 1e-6 * spins))
                else:
                    os.sched_yield()
        except MPI.Exception as e:                   # MPI saw a peer die
            late = self._late(reqs, peers)
            names = ", ".join(map(str, late)) if late else "unknown"
            raise RankFailed(f"nncore.distributed.fit: rank {names} failed (MPI error "
                             f"in the {what} exchange of rank {self.rank}: {e})",
                             rank=late[0] if late else None) from None
        self.comm_seconds += time.perf_counter() - t0

    def _alive(self, reqs, peers, what):
        """Raise RankFailed when a process reqs wait for, on this host, has died."""
        for r in self._late(reqs, peers):
            if r in self.pids and _dead(self.pids[r]):
                raise RankFailed(f"nncore.distributed.fit: rank {r} died (pid {self.pids[r]} "
                                 f"on this host, seen in the {what} exchange of rank "
                                 f"{self.rank})", rank=r)

    def setup(self, n_local, crc, weighted=None):
        """Every process's rows, parameter checksum and whether any of its sample
        weights is > 0 (None: no weights): the shard sizes, or ValueError (raised by
        every process together) when they do not fit or every weight is 0. (And the
        pids of the processes on this host.)"""
        host = float(zlib.crc32(socket.gethostname().encode()))
        flag = -1.0 if weighted is None else float(weighted)
        info = self.gather(np.array([float(n_local), float(crc), float(os.getpid()), host,
                                     flag]), "setup")
        self.pids = {r: int(info[r, 2]) for r in range(self.size)
                     if r != self.rank and info[r, 3] == host}
        node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)   # (every process is here)
        one_host = node.Get_size() == self.size
        node.Free()
        if self.shared_memory and not one_host:
            self.agreed = True
            raise ValueError(f"shared_memory=True needs the {self.size} processes of comm "
                             f"on one host; MPI's shared-memory split puts fewer together")
        self.shared = one_host and self.size > 1 and self.shared_memory is not False
        counts = info[:, 0].astype(np.int64)
        self.agreed = True
        if len(set(info[:, 1].tolist())) > 1:
            raise ValueError("nncore.distributed.fit: the model differs between ranks "
                             "(build it with the same seed, or load the same file, on every "
                             "rank)")
        if weighted is not None and not info[:, 4].max() > 0:
            raise ValueError(WEIGHTS_ZERO + " (over every process)")
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

    def prepare(self, run):
        """The buffers and persistent requests of every step of run (ShardedSteps).

        The gradient is cut in P slices (process c owns [cut[c], cut[c + 1])). A step:
        start() sends every other process c this process's header and slice c of each
        of its frontier nodes (the leaves rows run.shard_gradients left them in), and
        receives theirs; root() adds the slices of every process's frontier nodes in the
        tree's order into slice `rank` of the root (out) and exchanges the slices of
        the root (allgather)."""
        P, me = self.size, self.rank
        tree, N = run.tree, run.N
        per = self.G // P
        self.run = run
        self.fronts = [tree.frontier(r * per, (r + 1) * per) for r in range(P)]
        # a node's sum ends in the row of its first leaf (Tree.plan: the shards with
        # rows are a prefix, so a node's left half has rows whenever it does)
        owns = [[(j << k) - r * per for k, j in front] for r, front in enumerate(self.fronts)]
        self.own = owns[me]
        cut = self.cut = [N * c // P for c in range(P + 1)]
        mine = slice(cut[me], cut[me + 1])
        self.headers = np.zeros((P, run.header.size))
        others = [r for r in range(P) if r != me]
        comm = self.comm
        head, head_peers, grad, grad_peers, gather, gather_peers = [], [], [], [], [], []
        for r in others:
            head.append(comm.Recv_init(self.headers[r], source=r, tag=TAG_HEAD))
            head_peers.append(r)
            head.append(comm.Send_init(run.header, dest=r, tag=TAG_HEAD))
            head_peers.append(None)
        if self.shared:
            # every process's leaves in place: slot q of the upper tree is (r, i), read
            # where process r left it; the root's slices are written in place, and a
            # one-number message per pair says "my slice is written" (the allgather)
            leaves = self._share(run)
            self.views = [leaves[r][owns[r][i], mine] for r in range(P)
                          for i in range(len(owns[r]))]
            self.done = np.zeros(P)
            for r in others:
                gather.append(comm.Recv_init(self.done[r:r + 1], source=r, tag=TAG_ROOT))
                gather_peers.append(r)
                gather.append(comm.Send_init(self.done[me:me + 1], dest=r, tag=TAG_ROOT))
                gather_peers.append(None)
        else:
            n_recv = sum(len(self.fronts[r]) for r in others)
            self.recv = np.empty((n_recv, cut[me + 1] - cut[me]), dtype=run.leaves.dtype)
            self.out = np.empty(N, dtype=run.leaves.dtype)
            self.views = []                          # slot q of the upper tree: (r, i)
            row = 0
            for r in range(P):
                for i in range(len(self.fronts[r])):
                    if r == me:
                        self.views.append(run.leaves[self.own[i], mine])
                    else:
                        self.views.append(self.recv[row])
                        grad.append(comm.Recv_init(self.recv[row], source=r,
                                                   tag=TAG_GRAD + i))
                        grad_peers.append(r)
                        row += 1
            for r in others:
                for i, slot in enumerate(self.own):
                    grad.append(comm.Send_init(run.leaves[slot, cut[r]:cut[r + 1]], dest=r,
                                               tag=TAG_GRAD + i))
                    grad_peers.append(None)
                gather.append(comm.Recv_init(self.out[cut[r]:cut[r + 1]], source=r,
                                             tag=TAG_ROOT))
                gather_peers.append(r)
                gather.append(comm.Send_init(self.out[mine], dest=r, tag=TAG_ROOT))
                gather_peers.append(None)
        self.head = (head, head_peers)
        self.step = (head + grad, head_peers + grad_peers)
        self.gather_reqs = (gather, gather_peers)
        self.persistent = head + grad + gather
        self.mine = self.out[mine]
        self.plans = {}

    def _share(self, run):
        """One MPI shared-memory window over the processes (all on this host): each
        process's part holds its leaves (S, N), rank 0's the root (N,) after them;
        run.leaves becomes this process's leaves. Returns every process's leaves."""
        MPI = self.MPI
        self.gather(np.zeros(1), "shared memory")   # (every process is here: collective)
        S, N = run.leaves.shape
        dt = run.leaves.dtype
        count = S * N + (N if self.rank == 0 else 0)
        self.win = MPI.Win.Allocate_shared(count * dt.itemsize, dt.itemsize, comm=self.comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        parts = [np.frombuffer(self.win.Shared_query(r)[0], dtype=dt)
                 for r in range(self.size)]
        leaves = [part[:S * N].reshape(S, N) for part in parts]
        run.leaves = leaves[self.rank]
        self.out = parts[0][S * N:S * N + N]
        return leaves

    def _unshare(self):
        """Free the window, once no array of this exchange or of run points into it."""
        self.run.root = self.run.leaves = None
        self.views = self.out = self.mine = None
        self.win.Unlock_all()
        self.win.Free()
        self.win = None

    def start(self, header, skipped):
        """Every process's header (P, len) (losses, accuracy count, stop flag); unless
        the batch is skipped, the slices of the frontier nodes travel with them (in a
        shared window: the header says they are written)."""
        self.headers[self.rank] = header
        if self.size > 1:
            reqs, peers = self.head if skipped else self.step
            if self.win is not None:
                self.win.Sync()                      # my leaves, before the header says so
            self.MPI.Prequest.Startall(reqs)
            self._wait(reqs, "gradient", peers)
            if self.win is not None:
                self.win.Sync()
        return self.headers

    def root(self, filled, slots):
        """The tree's root (N,) for a batch whose first `filled` shards have rows."""
        if self.size == 1:
            return self.run.leaves[slots[0]]
        plan = self.plans.get(filled)
        if plan is None:
            if any(s is not None and s != o for s, o in zip(slots, self.own)):
                raise AssertionError("a frontier node's sum is not in its first leaf's row")
            known, q = {}, 0
            for front in self.fronts:
                for k, j in front:
                    known[(k, j)] = q if (j << k) < filled else None
                    q += 1
            tree, ops = self.run.tree, []
            top = tree.plan(tree.depth, 0, known, ops)
            plan = self.plans[filled] = (ops, top)
        ops, top = plan
        views, mine = self.views, self.mine
        for a, b in ops[:-1]:
            np.add(views[a], views[b], out=views[a])
        if ops:
            a, b = ops[-1]                           # the root's addition (a == top)
            np.add(views[a], views[b], out=mine)
        else:
            mine[...] = views[top]
        reqs, peers = self.gather_reqs
        if self.win is not None:
            # the others read this slice in place: its l2 term is added here, once
            self.run.plan.add_l2(self.out, self.cut[self.rank], self.cut[self.rank + 1])
            self.win.Sync()
        self.MPI.Prequest.Startall(reqs)
        self._wait(reqs, "gradient", peers)
        if self.win is not None:
            self.win.Sync()
        return self.out

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
        if self.failed:
            return
        if self.win is not None:
            # freeing the window is collective: first see every process here (or
            # raise RankFailed naming the one that is not)
            try:
                self.gather(np.zeros(1), "closing")
            except RankFailed:
                self.failed = True           # (not freed: the arrays on it stay valid)
                raise
        try:
            self.fail_req.Cancel()
            self.fail_req.Wait()
            for req in self.persistent:
                req.Free()
            if self.win is not None:
                self._unshare()
            self.comm.Free()
        except self.MPI.Exception:     # (after a peer died): the error raised already
            pass


def fit(model: Sequential, X: npt.ArrayLike, y: npt.ArrayLike, *,
        loss: str | Loss | None = None, optimizer: Optimizer | None = None, epochs: int = 1,
        batch_size: int | None = 32, grad_shards: int | None = None,
        sample_weight: npt.ArrayLike | None = None, shuffle: bool = True,
        callbacks: list[Callback] | tuple[Callback, ...] | None = None, verbose: int = 0,
        validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        comm: MPI.Comm | None = None, n_threads: int | None = None,
        timeout: float = 60.0, shared_memory: bool | None = None) -> History:
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
    n_threads : threads of this process, for every kernel of the fit (default
        threads_per_rank(comm))
    timeout : seconds each exchange waits for the other processes before raising
        RankFailed naming the late rank
    shared_memory : whether the subtree sums and the root travel through an MPI
        shared-memory window instead of messages (each process adds its slices
        reading the others' sums in place: no copy); None (default): when every
        process is on one host; True: required (ValueError otherwise). The same bits
        either way

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
    if not (shared_memory is None or isinstance(shared_memory, bool)):
        raise TypeError(f"shared_memory must be None, True or False, got {shared_memory!r}")
    ex = _MPIExchange(comm, G, float(timeout), shared_memory)
    try:
        with threads(n_threads):       # every kernel of the fit (the checks of X too)
            history = training._fit(
                model, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                batch_size=batch_size, validation_data=validation_data,
                validation_split=0.0, callbacks=callbacks,
                verbose=verbose if ex.rank == 0 else 0, shuffle=shuffle,
                sample_weight=sample_weight, grad_shards=G, exchange=ex,
                n_threads=n_threads)
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
