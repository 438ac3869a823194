"""Optimizer updates, in place: SGD (momentum, Nesterov), Adam and RMSprop.

Design:
- Every array is flat and C-contiguous: nncore.functional passes
  `param.reshape(-1)` views, so any parameter shape is one loop over
  n elements. param, velocity, m and v are read and written in place;
  grad is read only (a `const` view: read-only and copied inputs both work).
- The scalar factors (lr, 1 - beta, bias corrections and their square
  roots) are computed once per call in double, in Python, and cast to the
  array dtype here, so float32 arrays are updated in float32 arithmetic with
  the same factors NumPy uses for `float32_array * python_float`. Per
  element, the kernels do the operations of nncore.reference in the same
  order, which is PyTorch's order (its Adam >= 2.0 forms m with lerp, the
  same value rounded differently): float64 agrees with it to rounding.
- The element loops are C (optim_loops.h), compiled for the baseline and for AVX2
  without FMA (the same operations, so the same bits), one picked per process.
  Branches on loop invariants (weight decay on/off, momentum, Nesterov) sit
  outside the element loops, so each loop is branch-free and gcc vectorizes
  it; a zero weight decay is skipped, not multiplied in, as PyTorch does.
- Threads: the n elements are cut into n_threads contiguous strips of whole
  STRIP_ALIGN-element blocks (no two threads write one cache line); each
  thread runs the serial loop on its strip. Every element gets the same
  operations whatever the strip, so results are bitwise equal for any
  thread count. Below SGD_/ADAM_PARALLEL_MIN_SIZE elements a call stays on one
  thread and never enters a parallel region; without OpenMP (nn_openmp.h's
  NN_OPENMP_ENABLED == 0) it is always one thread and prange is a plain loop.
- Python sees `sgd_step(...)` and `adam_step(...)` on memoryviews;
  nncore.functional validates shapes, dtypes, layout and scalars first.
"""
from cython.parallel cimport prange

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport (SGD_PARALLEL_MIN_SIZE, ADAM_PARALLEL_MIN_SIZE,
                                       RMSPROP_PARALLEL_MIN_SIZE)

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED

cdef enum:
    # Elements per thread block: 64 bytes of float32, 128 of float64.
    STRIP_ALIGN = 16


#: Elements from which each update may use more than one thread.
PARALLEL_MIN_SIZE = {"sgd": SGD_PARALLEL_MIN_SIZE, "adam": ADAM_PARALLEL_MIN_SIZE,
                     "rmsprop": RMSPROP_PARALLEL_MIN_SIZE}


cdef inline Py_ssize_t cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


# ---- serial loops on one strip ----------------------------------------------

cdef inline void sgd_run(Py_ssize_t n,
                         real* param,            # IN/OUT (n,)
                         const real* grad,       # IN     (n,)
                         real* velocity,         # IN/OUT (n,), NULL when momentum == 0
                         real lr, real momentum, real weight_decay,
                         bint nesterov) noexcept nogil:
    """g = grad + wd param; v = mu v + g; param -= lr (g + mu v | v | g)
    (optim_loops.h)."""
    if real is float:
        nn_sgd_f32(n, param, grad, velocity, lr, momentum, weight_decay, nesterov)
    else:
        nn_sgd_f64(n, param, grad, velocity, lr, momentum, weight_decay, nesterov)


cdef inline void adam_run(Py_ssize_t n,
                          real* param,           # IN/OUT (n,)
                          const real* grad,      # IN     (n,)
                          real* m,               # IN/OUT (n,) first moment
                          real* v,               # IN/OUT (n,) second moment
                          real beta1, real one_minus_beta1,
                          real beta2, real one_minus_beta2,
                          real step_size, real bias_correction2_sqrt, real eps,
                          real weight_decay) noexcept nogil:
    """m, v = moving averages of g, g*g; param -= step_size m / (sqrt(v)/sqrt(bc2) + eps)
    (optim_loops.h)."""
    if real is float:
        nn_adam_f32(n, param, grad, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2,
                    step_size, bias_correction2_sqrt, eps, weight_decay)
    else:
        nn_adam_f64(n, param, grad, m, v, beta1, one_minus_beta1, beta2, one_minus_beta2,
                    step_size, bias_correction2_sqrt, eps, weight_decay)


cdef inline void rmsprop_run(Py_ssize_t n,
                             real* param,        # IN/OUT (n,)
                             const real* grad,   # IN     (n,)
                             real* v,            # IN/OUT (n,) square average
                             real* buf,          # IN/OUT (n,) momentum buffer, NULL when momentum == 0
                             real lr, real alpha, real one_minus_alpha, real eps,
                             real momentum, real weight_decay) noexcept nogil:
    """v = alpha v + (1 - alpha) g*g; d = g / (sqrt(v) + eps);
    buf = mu buf + d, param -= lr buf  (or param -= lr d without momentum)
    (optim_loops.h)."""
    if real is float:
        nn_rmsprop_f32(n, param, grad, v, buf, lr, alpha, one_minus_alpha, eps, momentum,
                       weight_decay)
    else:
        nn_rmsprop_f64(n, param, grad, v, buf, lr, alpha, one_minus_alpha, eps, momentum,
                       weight_decay)


# ---- thread split ------------------------------------------------------------

cdef inline int strip_threads(Py_ssize_t n, Py_ssize_t min_size, int n_threads) noexcept nogil:
    """How many threads an n-element update uses (1 below min_size)."""
    cdef Py_ssize_t blocks = cdiv(n, STRIP_ALIGN)
    if not NN_OPENMP_ENABLED or n < min_size or n_threads < 2:
        return 1
    return <int> min(<Py_ssize_t> n_threads, blocks)


cdef inline Py_ssize_t strip_start(Py_ssize_t n, Py_ssize_t t, int nt) noexcept nogil:
    """First element of thread t's strip: whole STRIP_ALIGN blocks, clipped to n."""
    return min(t * cdiv(n, STRIP_ALIGN) // nt * STRIP_ALIGN, n)


cdef void sgd_impl(Py_ssize_t n, real* param, const real* grad, real* velocity,
                   real lr, real momentum, real weight_decay, bint nesterov,
                   int n_threads) noexcept nogil:
    cdef int nt = strip_threads(n, SGD_PARALLEL_MIN_SIZE, n_threads)
    cdef Py_ssize_t t, lo, hi
    if nt == 1:
        sgd_run(n, param, grad, velocity, lr, momentum, weight_decay, nesterov)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        lo = strip_start(n, t, nt)
        hi = strip_start(n, t + 1, nt)
        sgd_run(hi - lo, param + lo, grad + lo,
                velocity + lo if velocity != NULL else NULL,
                lr, momentum, weight_decay, nesterov)


cdef void adam_impl(Py_ssize_t n, real* param, const real* grad, real* m, real* v,
                    real beta1, real one_minus_beta1, real beta2, real one_minus_beta2,
                    real step_size, real bias_correction2_sqrt, real eps,
                    real weight_decay, int n_threads) noexcept nogil:
    cdef int nt = strip_threads(n, ADAM_PARALLEL_MIN_SIZE, n_threads)
    cdef Py_ssize_t t, lo, hi
    if nt == 1:
        adam_run(n, param, grad, m, v, beta1, one_minus_beta1, beta2,
                 one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        lo = strip_start(n, t, nt)
        hi = strip_start(n, t + 1, nt)
        adam_run(hi - lo, param + lo, grad + lo, m + lo, v + lo,
                 beta1, one_minus_beta1, beta2, one_minus_beta2,
                 step_size, bias_correction2_sqrt, eps, weight_decay)


cdef void rmsprop_impl(Py_ssize_t n, real* param, const real* grad, real* v, real* buf,
                       real lr, real alpha, real one_minus_alpha, real eps, real momentum,
                       real weight_decay, int n_threads) noexcept nogil:
    cdef int nt = strip_threads(n, RMSPROP_PARALLEL_MIN_SIZE, n_threads)
    cdef Py_ssize_t t, lo, hi
    if nt == 1:
        rmsprop_run(n, param, grad, v, buf, lr, alpha, one_minus_alpha, eps, momentum,
                    weight_decay)
        return
    for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
        lo = strip_start(n, t, nt)
        hi = strip_start(n, t + 1, nt)
        rmsprop_run(hi - lo, param + lo, grad + lo, v + lo,
                    buf + lo if buf != NULL else NULL,
                    lr, alpha, one_minus_alpha, eps, momentum, weight_decay)


# ---- Python wrappers -----------------------------------------------------------

def sgd_step(real[::1] param,            # IN/OUT (n,)
             const real[::1] grad,       # IN     (n,)
             real[::1] velocity,         # IN/OUT (n,); None when momentum == 0
             double lr, double momentum, double weight_decay, bint nesterov,
             int n_threads):
    """One SGD step on flat arrays (see nncore.functional.sgd_step)."""
    cdef Py_ssize_t n = param.shape[0]
    cdef real* pv = NULL
    if grad.shape[0] != n or (momentum != 0 and (velocity is None or velocity.shape[0] != n)):
        raise ValueError("sgd_step: grad and velocity must have param's length")
    if n == 0:
        return
    if momentum != 0:
        pv = &velocity[0]
    with nogil:
        sgd_impl(n, &param[0], &grad[0], pv, <real> lr, <real> momentum,
                 <real> weight_decay, nesterov, n_threads)


def adam_step(real[::1] param,           # IN/OUT (n,)
              const real[::1] grad,      # IN     (n,)
              real[::1] m,               # IN/OUT (n,)
              real[::1] v,               # IN/OUT (n,)
              double beta1, double beta2, double step_size,
              double bias_correction2_sqrt, double eps, double weight_decay,
              int n_threads):
    """One Adam step on flat arrays; step_size = lr / (1 - beta1**t) and
    bias_correction2_sqrt = sqrt(1 - beta2**t) come from the caller, in double."""
    cdef Py_ssize_t n = param.shape[0]
    if grad.shape[0] != n or m.shape[0] != n or v.shape[0] != n:
        raise ValueError("adam_step: grad, m and v must have param's length")
    if n == 0:
        return
    with nogil:
        adam_impl(n, &param[0], &grad[0], &m[0], &v[0],
                  <real> beta1, <real> (1.0 - beta1), <real> beta2, <real> (1.0 - beta2),
                  <real> step_size, <real> bias_correction2_sqrt, <real> eps,
                  <real> weight_decay, n_threads)


def rmsprop_step(real[::1] param,        # IN/OUT (n,)
                 const real[::1] grad,   # IN     (n,)
                 real[::1] v,            # IN/OUT (n,)
                 real[::1] buf,          # IN/OUT (n,); None when momentum == 0
                 double lr, double alpha, double eps, double momentum,
                 double weight_decay, int n_threads):
    """One RMSprop step on flat arrays (see nncore.functional.rmsprop_step)."""
    cdef Py_ssize_t n = param.shape[0]
    cdef real* pb = NULL
    if grad.shape[0] != n or v.shape[0] != n or (
            momentum != 0 and (buf is None or buf.shape[0] != n)):
        raise ValueError("rmsprop_step: grad, v and buf must have param's length")
    if n == 0:
        return
    if momentum != 0:
        pb = &buf[0]
    with nogil:
        rmsprop_impl(n, &param[0], &grad[0], &v[0], pb, <real> lr, <real> alpha,
                     <real> (1.0 - alpha), <real> eps, <real> momentum, <real> weight_decay,
                     n_threads)
