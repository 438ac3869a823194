"""nncore.show_config(): what this build and process use."""
import sys

import numpy as np

from nncore import _gemm
from nncore._version import __version__
from nncore._openmp import omp_max_threads, openmp_enabled
from nncore._threads import forked_child_serial, get_num_threads


def config():
    """The configuration as a dict (the fields show_config prints)."""
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "openmp": openmp_enabled(),
        "omp_max_threads": omp_max_threads(),
        "simd": _gemm.SIMD_PATH,
        "num_threads": get_num_threads(),
        # A forked child of a process that used threads runs its kernels on one.
        "forked_child_serial": forked_child_serial(),
    }


def show_config(file=None):
    """Print version, OpenMP, SIMD path and thread count."""
    for key, value in config().items():
        print(f"{key:>16}: {value}", file=file or sys.stdout)
