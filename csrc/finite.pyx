"""all_finite: does an array hold no NaN and no inf? max_abs: max |x|, inf if not.

Design:
- One pass over the flat array; an element is non-finite when its exponent
  bits are all ones, tested as an integer OR-reduction the compiler vectorizes
  (vmath.h). Above FINITE_PARALLEL_MIN elements the array is cut into one
  stretch per thread; the answer (a boolean AND) does not depend on the cut.
- Used on every X and y given to fit/predict: a NumPy `np.isfinite(X).all()`
  would build a full-size boolean temporary (47 MB for 60,000 x 784).
- max_abs is the fused training step's gradient check (nncore._kernels.train): an
  integer max over the magnitude bits, which order like the values and put
  inf/NaN above every finite one (vmath.h). One thread: the step splits it.
"""
from cython.parallel cimport prange

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport FINITE_PARALLEL_MIN

cdef extern from "nncore/_kernels/vmath.h" nogil:
    bint nn_all_finite_f32(const float* p, Py_ssize_t n)
    bint nn_all_finite_f64(const double* p, Py_ssize_t n)
    double nn_absmax_f32(const float* p, Py_ssize_t n)
    double nn_absmax_f64(const double* p, Py_ssize_t n)

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED

# all_finite runs on one thread below this many elements, whatever n_threads says
PARALLEL_MIN = FINITE_PARALLEL_MIN


cdef inline bint finite_run(const real* p, Py_ssize_t n) noexcept nogil:
    if real is float:
        return nn_all_finite_f32(p, n)
    else:
        return nn_all_finite_f64(p, n)


def all_finite(const real[::1] x,     # IN (n,) the array, flattened
               int n_threads):
    """True when every element of x is finite."""
    cdef Py_ssize_t n = x.shape[0], t, lo, hi
    cdef int nt = n_threads if NN_OPENMP_ENABLED and n >= FINITE_PARALLEL_MIN else 1
    cdef int bad = 0
    if n == 0:
        return True
    if nt <= 1:
        with nogil:
            bad = not finite_run(&x[0], n)
        return not bad
    for t in prange(nt, nogil=True, num_threads=nt, schedule='static', chunksize=1):
        lo = t * n // nt
        hi = (t + 1) * n // nt
        if not finite_run(&x[lo], hi - lo):
            bad += 1                                   # a reduction: + is associative here
    return bad == 0


def max_abs(const real[::1] x):    # IN (n,) the array, flattened
    """max |x_i| (0 for no element), or inf when some x_i is NaN or inf."""
    cdef Py_ssize_t n = x.shape[0]
    cdef double m = 0
    if n == 0:
        return 0.0
    with nogil:
        if real is float:
            m = nn_absmax_f32(&x[0], n)
        else:
            m = nn_absmax_f64(&x[0], n)
    return m
