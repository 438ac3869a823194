"""nncore.show_config(): what this build and process use; nncore.get_include(): where its
C API is."""
from __future__ import annotations

import os
import sys
from typing import IO, Any

import numpy as np

from nncore._version import __version__
from nncore._kernels import gemm
from nncore._kernels.openmp import omp_max_threads, openmp_enabled
from nncore._threads import forked_child_serial, get_num_threads


def config() -> dict[str, Any]:
    """The configuration as a dict (the fields show_config prints)."""
    return {
        "version": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "openmp": openmp_enabled(),
        "omp_max_threads": omp_max_threads(),
        "simd": gemm.SIMD_PATH,
        "num_threads": get_num_threads(),
        # A forked child of a process that used threads runs its kernels on one.
        "forked_child_serial": forked_child_serial(),
    }


def get_include() -> str:
    """The directory to pass to Cython and to the C compiler with -I to build against
    nncore's C API (`from nncore.kernels cimport ...`, see docs/c-api.md), as
    numpy.get_include() is for NumPy's.

    It holds nncore/kernels.pxd and nncore/_kernels/ (the .pxd files and C headers
    installed beside the compiled modules): the directory above those modules'
    package, in site-packages for a wheel and for an editable install alike.
    """
    kernels_dir = os.path.dirname(os.path.abspath(gemm.__file__))
    return os.path.dirname(os.path.dirname(kernels_dir))


def show_config(file: IO[str] | None = None) -> None:
    """Print version, OpenMP, SIMD path and thread count."""
    for key, value in config().items():
        print(f"{key:>16}: {value}", file=file or sys.stdout)
