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
    """omp_get_max_threads() in the calling thread (1 without OpenMP): its
    omp_set_num_threads setting (threadpoolctl's threadpool_limits), else
    OMP_NUM_THREADS, else the CPUs the process may run on. The setting is per
    thread: another thread still sees OMP_NUM_THREADS or the CPU count."""
    return nn_omp_max_threads()
