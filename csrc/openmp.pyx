"""What the build got: OpenMP or not, and how many threads OpenMP would use.

Design: nncore never calls omp_set_num_threads (that would change the thread
count of every other OpenMP user in the process). Each kernel receives its
thread count as an argument, resolved by nncore._threads.
"""

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED
    int nn_omp_max_threads()


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(NN_OPENMP_ENABLED)


def omp_max_threads():
    """omp_get_max_threads(): OMP_NUM_THREADS if set, else the core count (1 without OpenMP)."""
    return nn_omp_max_threads()
