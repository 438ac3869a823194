"""How many threads nncore's kernels may use.

nncore keeps its own count and passes it to each kernel; it never calls
omp_set_num_threads, so embedding nncore changes nothing for other OpenMP
users in the process. Each kernel still stays on one thread below a size
threshold (a parallel region costs microseconds).

Default: OMP_NUM_THREADS if set, else the CPUs this process may run on.
"""
from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
from typing import Iterator

import numpy as np

from nncore._openmp import openmp_enabled

_override: contextvars.ContextVar[int | None] = contextvars.ContextVar("nncore_num_threads",
                                                                      default=None)


def _default_num_threads():
    if not openmp_enabled():
        return 1
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_num_threads = _default_num_threads()


def _check_count(n, name="n"):
    if type(n) is int and n >= 1:
        return n
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name} must be an int >= 1, got {type(n).__name__} {n!r}")
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return int(n)


def set_num_threads(n: int | None) -> None:
    """Set the thread count of nncore's kernels for this process; None restores the default."""
    global _num_threads
    _num_threads = _default_num_threads() if n is None else _check_count(n)


def get_num_threads() -> int:
    """The thread count kernels use now (a `threads(n)` block, else the process setting)."""
    n = _override.get()
    return _num_threads if n is None else n


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Use n threads inside the block (per thread and per asyncio task)."""
    token = _override.set(_check_count(n))
    try:
        yield
    finally:
        _override.reset(token)


def resolve_num_threads(n_threads: int | None) -> int:
    """The n_threads a kernel call gets: the argument, else get_num_threads()."""
    if n_threads is None:
        return get_num_threads()
    return _check_count(n_threads, "n_threads")
