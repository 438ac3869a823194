"""Loss kernels: the value of a loss over a batch and its gradient, in one pass.

Design:
- output (N, K) is row-major. Each loss has a per-row worker in C
  (loss_rows.h, shared with the small training step) that reads row i, writes
  the whole gradient row grad[i, :] (never reading it: grad may come from
  np.empty) and returns the row's loss l_i.
- Weights come in as s (N,) float64: s_i = 1/N, or w_i / sum(w) with sample
  weights (nncore.functional computes them). grad[i, :] = s_i dl_i/do_i and
  L = sum_i s_i l_i.
- All arithmetic inside a row is in double: float32 values are widened on load
  and each gradient element is rounded once on store, as the NumPy twin does
  in float64. Labels are Py_ssize_t (np.intp), checked to lie in [0, K) by
  nncore.functional and again here (O(N)), so a direct call stays in bounds.
- Stability: softmax cross-entropy subtracts the row maximum before exp
  (log-sum-exp); binary cross-entropy uses max(o, 0) - o t + log1p(exp(-|o|))
  and a two-branch sigmoid, so no exp ever overflows.
- Determinism: row i stores s_i l_i in row_loss[i]; the value is the sum of
  row_loss in row order on one thread. Rows run on n_threads threads
  (prange, static) only when N*K >= LOSS_PARALLEL_MIN; no row depends on
  which thread runs it, so value and gradient are bitwise equal for any
  n_threads.
- Python sees `mse(output, target, scale, grad, n_threads) -> float` and the
  same for binary_cross_entropy; softmax_cross_entropy and hinge take labels
  (N,) instead of target; `l2_penalty(weight, lam, grad_weight) -> float`.
  nncore.functional validates every argument before calling them.
"""
from libc.stdlib cimport malloc, free
from cython.parallel cimport prange, threadid

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport LOSS_PARALLEL_MIN
from nncore._kernels.codes cimport (LOSS_MSE, LOSS_SOFTMAX_CROSS_ENTROPY,
                                    LOSS_BINARY_CROSS_ENTROPY, LOSS_HINGE)

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED


cdef enum:
    STACK_K = 64        # softmax scratch on the stack up to this many classes (1 thread)


cdef extern from "nncore/_kernels/loss_rows.h" nogil:
    double nn_loss_row_f32(int code, Py_ssize_t k, const float* o, const float* t,
                           Py_ssize_t y, double s, float* g, double* e)
    double nn_loss_row_f64(int code, Py_ssize_t k, const double* o, const double* t,
                           Py_ssize_t y, double s, double* g, double* e)


cdef inline double loss_row(int code, Py_ssize_t k, const real* o, const real* t,
                            Py_ssize_t y, double s, real* g, double* e) noexcept nogil:
    """l_i of one row, g = s dl_i/do (loss_rows.h: the maths of every loss)."""
    if real is float:
        return nn_loss_row_f32(code, k, o, t, y, s, g, e)
    else:
        return nn_loss_row_f64(code, k, o, t, y, s, g, e)


cdef int loss_impl(int code, Py_ssize_t n, Py_ssize_t k,
                   const real* o,           # IN  (n, k)
                   const real* t,           # IN  (n, k) targets, or NULL
                   const Py_ssize_t* y,     # IN  (n,) labels, or NULL
                   const double* s,         # IN  (n,) row weights
                   real* g,                 # OUT (n, k)
                   double* value,           # OUT L = sum_i s_i l_i
                   int n_threads) noexcept nogil:
    """Rows (in parallel above the threshold) into row_loss, then a serial sum; on
    one thread the sum is kept as the rows go (the same value) and nothing is
    allocated unless softmax needs more than STACK_K of scratch. Returns 0; -1 when
    the scratch buffers cannot be allocated; -2 when a label is outside [0, k)
    (nothing written: functional refuses these first)."""
    cdef Py_ssize_t i, nt, tid
    cdef double total = 0
    cdef double* row_loss
    cdef double* e
    cdef double e_stack[STACK_K]
    if y != NULL:
        for i in range(n):
            if y[i] < 0 or y[i] >= k:
                return -2
    nt = n_threads if NN_OPENMP_ENABLED else 1
    if n * k < LOSS_PARALLEL_MIN:
        nt = 1
    if nt > n:
        nt = n
    if nt < 1:
        nt = 1
    if nt == 1:                             # the same sum in row order, no row_loss
        e = e_stack
        if code == LOSS_SOFTMAX_CROSS_ENTROPY and k > STACK_K:
            e = <double*> malloc(k * sizeof(double))
            if e == NULL:
                return -1
        for i in range(n):
            total += s[i] * loss_row(code, k, o + i * k, t + i * k if t != NULL else NULL,
                                     y[i] if y != NULL else 0, s[i], g + i * k, e)
        if e != e_stack:
            free(e)
        value[0] = total
        return 0
    row_loss = <double*> malloc((n + nt * k) * sizeof(double))
    if row_loss == NULL:
        return -1
    e = row_loss + n                        # softmax scratch, k per thread
    for i in prange(n, num_threads=nt, schedule='static'):
        tid = threadid()
        row_loss[i] = s[i] * loss_row(code, k, o + i * k, t + i * k if t != NULL else NULL,
                                      y[i] if y != NULL else 0, s[i], g + i * k,
                                      e + tid * k)
    for i in range(n):                      # fixed order: same for any n_threads
        total += row_loss[i]
    free(row_loss)
    value[0] = total
    return 0


cdef int check_shapes(Py_ssize_t n, Py_ssize_t k, Py_ssize_t t_rows, Py_ssize_t t_cols,
                      Py_ssize_t s_len, Py_ssize_t g_rows, Py_ssize_t g_cols) except -1:
    """The O(1) guard that keeps a direct call in bounds (functional checks first,
    with better messages)."""
    if n <= 0 or k <= 0:
        raise ValueError(f"nncore._kernels.losses: output must be non-empty, got ({n}, {k})")
    if t_rows != n or t_cols != k or s_len != n or g_rows != n or g_cols != k:
        raise ValueError("nncore._kernels.losses: target, scale and grad do not match output")
    return 0


cdef double run(int code, Py_ssize_t n, Py_ssize_t k, const real* o, const real* t,
                const Py_ssize_t* y, const double* s, real* g, int n_threads) except? -1:
    """loss_impl without the GIL; the Python-facing error handling."""
    cdef double value = 0
    cdef int rc
    with nogil:
        rc = loss_impl(code, n, k, o, t, y, s, g, &value, n_threads)
    if rc == -2:
        raise ValueError("nncore._kernels.losses: a label is outside [0, K)")
    if rc != 0:
        raise MemoryError("nncore._kernels.losses: cannot allocate the row buffer")
    return value


def mse(const real[:, ::1] output,   # IN  (N, K)
        const real[:, ::1] target,   # IN  (N, K)
        const double[::1] scale,     # IN  (N,) s_i
        real[:, ::1] grad,           # OUT (N, K)
        int n_threads):
    """L = sum_i s_i 1/2 sum_j (o_ij - t_ij)^2;  grad = s_i (o_ij - t_ij)."""
    check_shapes(output.shape[0], output.shape[1], target.shape[0], target.shape[1],
                 scale.shape[0], grad.shape[0], grad.shape[1])
    return run(LOSS_MSE, output.shape[0], output.shape[1], &output[0, 0], &target[0, 0],
               NULL, &scale[0], &grad[0, 0], n_threads)


def binary_cross_entropy(const real[:, ::1] output,   # IN  (N, K) logits
                         const real[:, ::1] target,   # IN  (N, K) in [0, 1]
                         const double[::1] scale,     # IN  (N,) s_i
                         real[:, ::1] grad,           # OUT (N, K)
                         int n_threads):
    """L = sum_i s_i sum_j max(o,0) - o t + log1p(exp(-|o|));  grad = s_i (sigmoid(o) - t)."""
    check_shapes(output.shape[0], output.shape[1], target.shape[0], target.shape[1],
                 scale.shape[0], grad.shape[0], grad.shape[1])
    return run(LOSS_BINARY_CROSS_ENTROPY, output.shape[0], output.shape[1], &output[0, 0],
               &target[0, 0], NULL, &scale[0], &grad[0, 0], n_threads)


def softmax_cross_entropy(const real[:, ::1] output,     # IN  (N, K) logits
                          const Py_ssize_t[::1] labels,  # IN  (N,) in [0, K)
                          const double[::1] scale,       # IN  (N,) s_i
                          real[:, ::1] grad,             # OUT (N, K)
                          int n_threads):
    """L = sum_i s_i (logsumexp(o_i) - o_iy);  grad = s_i (softmax(o_i) - onehot(y_i))."""
    check_shapes(output.shape[0], output.shape[1], labels.shape[0], output.shape[1],
                 scale.shape[0], grad.shape[0], grad.shape[1])
    return run(LOSS_SOFTMAX_CROSS_ENTROPY, output.shape[0], output.shape[1], &output[0, 0],
               <const real*> NULL, &labels[0], &scale[0], &grad[0, 0], n_threads)


def hinge(const real[:, ::1] output,     # IN  (N, K) scores
          const Py_ssize_t[::1] labels,  # IN  (N,) in [0, K)
          const double[::1] scale,       # IN  (N,) s_i
          real[:, ::1] grad,             # OUT (N, K)
          int n_threads):
    """L = sum_i s_i sum_{j != y_i} max(0, o_ij - o_iy + 1); see hinge_row for grad."""
    check_shapes(output.shape[0], output.shape[1], labels.shape[0], output.shape[1],
                 scale.shape[0], grad.shape[0], grad.shape[1])
    return run(LOSS_HINGE, output.shape[0], output.shape[1], &output[0, 0],
               <const real*> NULL, &labels[0], &scale[0], &grad[0, 0], n_threads)


def l2_penalty(const real[::1] weight,   # IN  (size,) W flattened
               double lam,
               real[::1] grad_weight):   # IN/OUT (size,), or None
    """Returns 0.5 lam sum(W^2) (sum in double, in index order);
    grad_weight += lam W when given (in double, rounded once)."""
    cdef Py_ssize_t i, size = weight.shape[0]
    cdef double acc = 0
    cdef bint has_grad = grad_weight is not None
    if has_grad and grad_weight.shape[0] != size:
        raise ValueError("nncore._kernels.losses: grad_weight does not match weight")
    with nogil:
        for i in range(size):
            acc += <double> weight[i] * <double> weight[i]
        if has_grad:
            for i in range(size):
                grad_weight[i] = <real> (<double> grad_weight[i] + lam * <double> weight[i])
    return 0.5 * lam * acc


# ---- C-level entry (losses.pxd) --------------------------------------------------

cdef int loss_f32(int code, Py_ssize_t n, Py_ssize_t k, const float* o, const float* t,
                  const Py_ssize_t* y, const double* s, float* g, double* value,
                  int n_threads) noexcept nogil:
    return loss_impl(code, n, k, o, t, y, s, g, value, n_threads)


cdef int loss_f64(int code, Py_ssize_t n, Py_ssize_t k, const double* o, const double* t,
                  const Py_ssize_t* y, const double* s, double* g, double* value,
                  int n_threads) noexcept nogil:
    return loss_impl(code, n, k, o, t, y, s, g, value, n_threads)
