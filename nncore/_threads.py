"""How many threads nncore's kernels may use.

nncore passes a thread count to each kernel; it never calls
omp_set_num_threads, so embedding nncore changes nothing for other OpenMP
users in the process. Each kernel still stays on one thread below a size
threshold (a parallel region costs microseconds).

The count, first match wins:
1. one thread in a forked child of a process that gave a kernel more than one
   thread (libgomp's thread pool does not survive fork: a parallel region
   there would wait forever for threads the child does not have);
2. a `threads(n)` block (per thread and per asyncio task);
3. `set_num_threads(n)` (the process);
4. one thread in a task of a Dask worker (dask.distributed), unless
   OMP_NUM_THREADS was set when nncore was imported: Dask runs one task per
   worker thread, and its nanny sets OMP_NUM_THREADS=1 in the worker processes
   it starts for that reason; nncore keeps to it where nothing set it (workers
   in threads of one process, as LocalCluster(processes=False), workers
   started without a nanny, a nanny whose pre-spawn-environ leaves it out).
   Read from distributed's context variable of the running task, only when
   distributed is imported; no setting of the process or the runtime changes;
5. the OpenMP runtime's omp_get_max_threads(), read on each call from the
   calling thread: OMP_NUM_THREADS, or a limit set with threadpoolctl's
   `threadpool_limits(n)` in that thread (it calls omp_set_num_threads, whose
   setting belongs to the calling thread), else the CPUs this process may use;
   1 in a build without OpenMP. scikit-learn reads it the same way.

A long run (`fit`) at the default count (4. or 5.) may use fewer threads: `Tuner`.
"""
from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
import sys
from typing import Iterator

import numpy as np

from nncore._kernels.openmp import omp_max_threads

MAX_THREADS = 2 ** 31 - 1    # the kernels take a C int

_override: contextvars.ContextVar[int | None] = contextvars.ContextVar("nncore_num_threads",
                                                                      default=None)
_num_threads = None          # set_num_threads(n); None: the OpenMP runtime's count
_pool_used = False           # a kernel was given more than one thread (here or before fork)
_forked_serial = False       # forked after _pool_used: one thread from now on
# OMP_NUM_THREADS as the OpenMP runtime read it (at its load, before nncore's import
# ends; later changes of os.environ reach neither): set, it decides in Dask tasks too
_omp_env_set = bool(os.environ.get("OMP_NUM_THREADS", "").strip())


def _after_fork_in_child():
    global _forked_serial
    if _pool_used:
        _forked_serial = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_child_serial() -> bool:
    """True in a forked child whose parent gave kernels more than one thread:
    every kernel then runs on one thread, whatever count is asked for."""
    return _forked_serial


_WORKER_CVAR = "_worker_cvar"    # distributed.worker's (private; 2024.1 to 2026.8 at least)


def _in_dask_task() -> bool:
    """True while the calling thread runs a task of a Dask worker: distributed's context
    variable of the running task's worker (what distributed.get_worker reads) is set."""
    worker = sys.modules.get("distributed.worker")
    if worker is None:
        return False
    current = getattr(worker, _WORKER_CVAR, None)
    if current is not None:
        return current.get(None) is not None
    try:
        worker.get_worker()
    except ValueError:                                     # "No worker found"
        return False
    return True


def _default_count() -> int:
    """Steps 4 and 5 of the module's list: one thread in a Dask task without
    OMP_NUM_THREADS, else omp_get_max_threads()."""
    if not _omp_env_set and _in_dask_task():
        return 1
    return omp_max_threads()


def _check_count(n, name="n"):
    if type(n) is int and 1 <= n <= MAX_THREADS:
        return n
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    if n > MAX_THREADS:
        raise ValueError(f"{name} must be <= {MAX_THREADS} (a C int), got {n}")
    return int(n)


def set_num_threads(n: int | None) -> None:
    """Set the thread count of nncore's kernels for this process; None restores the
    default (omp_get_max_threads(), read on each call; 1 in a Dask task)."""
    global _num_threads
    _num_threads = None if n is None else _check_count(n)


def get_num_threads() -> int:
    """The thread count kernels use now: 1 in a forked child of a parallel parent,
    else a `threads(n)` block, else set_num_threads(n), else 1 in a task of a Dask
    worker without OMP_NUM_THREADS, else omp_get_max_threads()."""
    global _pool_used
    if _forked_serial:
        return 1
    n = _override.get()
    if n is None:
        n = _num_threads
        if n is None:
            n = _default_count()
    if n > 1 and not _pool_used:
        _pool_used = True
    return n


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Use n threads inside the block (per thread and per asyncio task)."""
    token = _override.set(_check_count(n))
    try:
        yield
    finally:
        _override.reset(token)


def default_is_used() -> bool:
    """True when get_num_threads() is the default (4. or 5. above), which a Tuner may lower."""
    return not _forked_serial and _override.get() is None and _num_threads is None


class Tuner:
    """The thread count of each call of a run of many calls (fit's plan calls).

    A count set by the user is used as it is. The default n > 1 is a ceiling: on a busy
    machine (another process on the cores, two trainings at once) a step's threads are
    descheduled in turn and every barrier of the step waits for them, so n threads can
    fall below one. The tuner times the calls (batches per second) at n and at 1 and
    runs the faster count. The first two calls are probes (one at each count), and
    later one call in `interval` is a probe of the other count: interval starts at
    PROBE_EVERY calls, doubles each time a probe confirms the choice (up to
    PROBE_EVERY_MAX), and falls back when the choice changes. A probe lasts at most
    PROBE_SECONDS, so it costs little at the slower count and a short fit adapts too.
    The results do not depend on it: every kernel gives the same bits at any count.
    """

    PROBE_EVERY = 8
    PROBE_EVERY_MAX = 64
    PROBE_SECONDS = 0.005

    def __init__(self, n: int, adaptive: bool) -> None:
        self.n = n
        self.counts = (n, 1) if adaptive and n > 1 else (n,)
        self.rate: dict[int, float] = {}      # batches per second, smoothed
        self.best = self.n
        self.interval = self.PROBE_EVERY
        self.calls = 0                        # since the last probe

    @classmethod
    def for_fit(cls, parallel: bool = True) -> Tuner:
        """get_num_threads(), adaptive when it is the default and the steps may use more
        than one thread (parallel; else every count runs them on one)."""
        return cls(get_num_threads(), parallel and default_is_used())

    def next(self, seconds: float) -> tuple[int, float]:
        """(thread count, time budget) of the next call, whose own budget is seconds."""
        if len(self.counts) == 1:
            return self.n, seconds
        for c in self.counts:
            if c not in self.rate:
                return c, min(seconds, self.PROBE_SECONDS)
        self.calls += 1
        if self.calls >= self.interval:
            self.calls = 0
            return (1 if self.best != 1 else self.n), min(seconds, self.PROBE_SECONDS)
        return self.best, seconds

    def record(self, count: int, batches: int, seconds: float) -> None:
        """A call at `count` threads ran `batches` batches in `seconds`."""
        if len(self.counts) == 1 or batches <= 0 or seconds <= 0:
            return
        rate = batches / seconds
        old = self.rate.get(count)
        self.rate[count] = rate if old is None else 0.5 * (old + rate)
        if len(self.rate) < len(self.counts):
            return
        best = max(self.counts, key=lambda c: (self.rate[c], c))
        if count != self.best:                # a probe: confirmed, or the choice changes
            if best == self.best:
                self.interval = min(2 * self.interval, self.PROBE_EVERY_MAX)
            else:
                self.interval = self.PROBE_EVERY
        self.best = best


def resolve_num_threads(n_threads: int | None) -> int:
    """The n_threads a kernel call gets: the argument, else get_num_threads()
    (1 in a forked child of a parallel parent, whatever the argument). On every
    kernel call: get_num_threads is inlined here (one Python call less)."""
    global _pool_used
    if n_threads is None:
        if _forked_serial:
            return 1
        n = _override.get()
        if n is None:
            n = _num_threads
            if n is None:
                n = _default_count()
    else:
        n = _check_count(n_threads, "n_threads")
        if _forked_serial:
            return 1
    if n > 1 and not _pool_used:
        _pool_used = True
    return n
