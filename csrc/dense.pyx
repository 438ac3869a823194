"""The fused dense layer: forward and backward of a = f(x @ w.T + b).

Design:
- forward: one GEMM z = x @ w.T whose epilogue adds b and writes a = f(z)
  tile by tile while the tile is in L1 (softmax, being row-wise, runs as a
  row pass after the GEMM). w.T is a stride swap, never a copy.
- backward, given grad_a = dL/da:
      grad_z = grad_a * f'(z)          elementwise (softmax: per row)
      grad_b = sum_i grad_z[i, :]      in the same pass, while grad_z is hot
      grad_w = grad_z.T @ x            GEMM (n_out, n_in), k = batch
      grad_x = grad_z @ w              GEMM (batch, n_in), skipped for layer 1
  The first pass splits columns over threads, so each grad_b[j] is summed by
  one thread over rows in order: results do not depend on the thread count.
- Shapes: x (n, n_in), w (n_out, n_in), b (n_out,), z, a, grad_a, grad_z
  (n, n_out). nncore.functional validates everything first.
- Two tiers: dense_forward_run / dense_backward_run on pointers (the C-level
  entry of dense.pxd, public through nncore/kernels.pxd), and the def wrappers
  on memoryviews that call them.
"""
from cython.parallel cimport prange

import numpy as np

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport BACKWARD_PARALLEL_MIN, BACKWARD_REGION_MIN
from nncore._kernels.activation_math cimport (act_backward_run, colsum_add, softmax_row,
                                              softmax_backward_row)
from nncore._kernels.codes cimport ACT_SOFTMAX
from nncore._kernels.gemm cimport (Epilogue, may_overlap, sgemm, dgemm, sgemm_check_a,
                                   dgemm_check_a)

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED

cdef enum:
    COLUMN_STRIP = 64


cdef inline int gemm_any(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                         const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                         const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                         real* c, Py_ssize_t ldc, const Epilogue* ep,
                         int n_threads) noexcept nogil:
    """c = a @ b (beta = 0) in either precision."""
    if real is float:
        return sgemm(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, n_threads)
    else:
        return dgemm(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, n_threads)


cdef void grad_z_and_bias(int code, real slope, const real* z, const real* a,
                          const real* grad_a, real* grad_z, real* grad_b,
                          Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    """grad_z = grad_a * f'(z); grad_b = column sums of grad_z (NULL: skip)."""
    cdef Py_ssize_t i, j, s, c0, c1, n_strips
    cdef int nt = n_threads
    if not NN_OPENMP_ENABLED or rows * cols < BACKWARD_PARALLEL_MIN:
        nt = 1
    if code == ACT_SOFTMAX:
        for i in range(rows):
            softmax_backward_row(a + i * cols, grad_a + i * cols, grad_z + i * cols, cols)
        if grad_b != NULL:
            for j in range(cols):
                grad_b[j] = 0
            colsum_add(grad_z, cols, rows, cols, grad_b)
        return
    n_strips = (cols + COLUMN_STRIP - 1) // COLUMN_STRIP
    if nt > n_strips:
        nt = <int> n_strips
    if nt <= 1:                                     # no parallel region at all
        for s in range(n_strips):
            grad_z_strip(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, s)
    else:
        for s in prange(n_strips, num_threads=nt, schedule='static'):
            grad_z_strip(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, s)


cdef inline void grad_z_strip(int code, real slope, const real* z, const real* a,
                              const real* grad_a, real* grad_z, real* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t s) noexcept nogil:
    """Columns [s COLUMN_STRIP, (s + 1) COLUMN_STRIP) of grad_z, then their bias sums."""
    cdef Py_ssize_t i, j
    cdef Py_ssize_t c0 = s * COLUMN_STRIP
    cdef Py_ssize_t c1 = min(c0 + COLUMN_STRIP, cols)
    if c0 == 0 and c1 == cols:                      # all columns: one run (elementwise)
        act_backward_run(code, slope, z, a, grad_a, grad_z, rows * cols)
    else:
        for i in range(rows):
            act_backward_run(code, slope, z + i * cols + c0, a + i * cols + c0,
                             grad_a + i * cols + c0, grad_z + i * cols + c0, c1 - c0)
    if grad_b != NULL:                              # the strip is still in L1/L2
        for j in range(c0, c1):
            grad_b[j] = 0
        colsum_add(grad_z + c0, cols, rows, c1 - c0, grad_b + c0)


cdef int grad_z_part_threads(int code, Py_ssize_t rows, Py_ssize_t cols,
                             int n_threads) noexcept nogil:
    cdef Py_ssize_t n_strips = (cols + COLUMN_STRIP - 1) // COLUMN_STRIP
    if (code == ACT_SOFTMAX or not NN_OPENMP_ENABLED or n_threads < 2
            or rows * cols < BACKWARD_REGION_MIN):
        return 1
    return <int> min(<Py_ssize_t> n_threads, n_strips)


cdef void grad_z_and_bias_part(int code, real slope, const real* z, const real* a,
                               const real* grad_a, real* grad_z, real* grad_b,
                               Py_ssize_t rows, Py_ssize_t cols, int t, int nt) noexcept nogil:
    """Thread t of nt (from grad_z_part_threads) takes column strips
    [t S / nt, (t + 1) S / nt) of the S strips; t >= nt does nothing."""
    cdef Py_ssize_t s, n_strips = (cols + COLUMN_STRIP - 1) // COLUMN_STRIP
    if t >= nt:
        return
    if nt == 1:
        grad_z_and_bias(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, 1)
        return
    for s in range(t * n_strips // nt, (t + 1) * n_strips // nt):
        grad_z_strip(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, s)


cdef int dense_forward_run(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                           const real* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                           const real* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                           const real* b, int code, double slope,
                           real* z, real* a, int n_threads, int* x_bad) noexcept nogil:
    """z = x @ w.T + b (b NULL: none), a = f(z); z, a (n, n_out) C-contiguous, a may
    be z; x_bad (NULL: no check) raised when x holds NaN or inf (read from cache as the
    product uses it). Returns 0, or -1 when the packing buffers cannot be allocated."""
    cdef Py_ssize_t i
    cdef Epilogue ep
    cdef int rc
    if n <= 0 or n_out <= 0:
        return 0
    ep.bias = b
    ep.activation = code
    ep.slope = slope
    ep.ld_act = n_out
    ep.act_out = NULL if code == ACT_SOFTMAX else a    # may be z: in place
    if x_bad == NULL:
        rc = gemm_any(n, n_out, n_in, x, rs_x, cs_x, w, cs_w, rs_w, z, n_out, &ep, n_threads)
    elif real is float:
        rc = sgemm_check_a(n, n_out, n_in, x, rs_x, cs_x, w, cs_w, rs_w, z, n_out, &ep,
                           n_threads, x_bad)
    else:
        rc = dgemm_check_a(n, n_out, n_in, x, rs_x, cs_x, w, cs_w, rs_w, z, n_out, &ep,
                           n_threads, x_bad)
    if rc == 0 and code == ACT_SOFTMAX:
        for i in range(n):
            softmax_row(z + i * n_out, a + i * n_out, n_out)
    return rc


cdef int dense_backward_run(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            const real* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                            const real* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                            const real* z, const real* a, const real* grad_a,
                            int code, double slope, real* grad_z, real* grad_x,
                            real* grad_w, real* grad_b, int n_threads) noexcept nogil:
    """grad_z = grad_a f'(z); grad_b = sum(grad_z, 0) (NULL: skip); grad_w = grad_z.T @ x;
    grad_x = grad_z @ w (NULL: skip). z, a, grad_a, grad_z (n, n_out), grad_x (n, n_in),
    grad_w (n_out, n_in) C-contiguous; grad_z may be grad_a. Returns 0 or -1 (no memory)."""
    cdef Py_ssize_t i
    cdef int rc = 0
    if n_out <= 0:
        return 0
    if n <= 0:       # an empty batch has zero gradients
        for i in range(n_out):
            if grad_b != NULL:
                grad_b[i] = 0
        for i in range(n_out * n_in):
            grad_w[i] = 0
        return 0
    grad_z_and_bias(code, <real> slope, z, a, grad_a, grad_z, grad_b, n, n_out, n_threads)
    if n_in > 0:
        rc = gemm_any(n_out, n_in, n, grad_z, 1, n_out, x, rs_x, cs_x,
                      grad_w, n_in, NULL, n_threads)
    if rc == 0 and grad_x != NULL and n_in > 0:
        rc = gemm_any(n, n_in, n_out, grad_z, n_out, 1, w, rs_w, cs_w,
                      grad_x, n_in, NULL, n_threads)
    return rc


def dense_forward(const real[:, :] x,            # IN  (n, n_in), any strides
                  const real[:, :] weight,       # IN  (n_out, n_in), any strides
                  const real[::1] bias,          # IN  (n_out,) or None
                  int code, double slope,
                  real[:, ::1] z,                # OUT (n, n_out)
                  real[:, ::1] a,                # OUT (n, n_out) f(z); may be z for identity
                  int n_threads, bint check_x=False):
    """z = x @ weight.T + bias; a = f(z). Returns 1 when check_x and x holds NaN or
    inf (z, a then hold what the product made of it), 0 otherwise; or 2, with nothing
    computed, when x, weight or bias may share memory with z or a (nncore.functional
    copies the input then)."""
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = weight.shape[0]
    cdef Py_ssize_t isz = sizeof(real), out_bytes = n * n_out * isz
    cdef const real* pb = &bias[0] if bias is not None else NULL
    cdef const char* out
    cdef int rc, i
    cdef int bad = 0
    if n == 0 or n_in == 0:
        check_x = False                          # nothing to read
    if n == 0 or n_out == 0:
        return 1 if check_x and not np.isfinite(np.asarray(x)).all() else 0
    for i in range(2):
        out = <const char*> (&z[0, 0] if i == 0 else &a[0, 0])
        if ((n_in > 0 and (may_overlap(<const char*> &x[0, 0], n, n_in, x.strides[0],
                                       x.strides[1], isz, out, out_bytes)
                           or may_overlap(<const char*> &weight[0, 0], n_out, n_in,
                                          weight.strides[0], weight.strides[1], isz,
                                          out, out_bytes)))
                or (pb != NULL and may_overlap(<const char*> pb, 1, n_out, 0, isz, isz,
                                               out, out_bytes))):
            return 2
    with nogil:
        rc = dense_forward_run(n, n_in, n_out,
                               &x[0, 0] if n_in > 0 else NULL, x.strides[0] // isz,
                               x.strides[1] // isz,
                               &weight[0, 0] if n_in > 0 else NULL, weight.strides[0] // isz,
                               weight.strides[1] // isz,
                               pb, code, slope, &z[0, 0], &a[0, 0], n_threads,
                               &bad if check_x else NULL)
    if rc != 0:
        raise MemoryError("nncore.dense_forward: cannot allocate packing buffers")
    return 1 if bad != 0 else 0


def dense_backward(const real[:, :] x,           # IN  (n, n_in), any strides
                   const real[:, :] weight,      # IN  (n_out, n_in), any strides
                   const real[:, ::1] z,         # IN  (n, n_out)
                   const real[:, ::1] a,         # IN  (n, n_out)
                   const real[:, ::1] grad_a,    # IN  (n, n_out)
                   int code, double slope,
                   real[:, ::1] grad_z,          # OUT (n, n_out), may be grad_a
                   real[:, ::1] grad_x,          # OUT (n, n_in) or None
                   real[:, ::1] grad_weight,     # OUT (n_out, n_in)
                   real[::1] grad_bias,          # OUT (n_out,) or None
                   int n_threads):
    """grad_z = grad_a f'(z); grad_bias = sum(grad_z, 0); grad_weight = grad_z.T @ x;
    grad_x = grad_z @ weight. Returns 0; or 2, with nothing computed, when an input
    may share memory with an output (grad_a may be grad_z itself; nncore.functional
    copies the inputs then)."""
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = weight.shape[0]
    cdef Py_ssize_t isz = sizeof(real)
    cdef real* pgb = &grad_bias[0] if grad_bias is not None and n_out > 0 else NULL
    cdef bint full = n > 0 and n_in > 0
    cdef const char* out_at[4]
    cdef Py_ssize_t out_bytes[4]
    cdef int rc, i
    if n_out == 0:
        return 0
    out_at[0] = <const char*> &grad_z[0, 0] if n > 0 else NULL
    out_bytes[0] = n * n_out * isz
    out_at[1] = <const char*> &grad_x[0, 0] if grad_x is not None and full else NULL
    out_bytes[1] = n * n_in * isz
    out_at[2] = <const char*> &grad_weight[0, 0] if n_in > 0 else NULL
    out_bytes[2] = n_out * n_in * isz
    out_at[3] = <const char*> pgb
    out_bytes[3] = n_out * isz
    for i in range(4):
        if out_at[i] == NULL:
            continue
        if ((full and may_overlap(<const char*> &x[0, 0], n, n_in, x.strides[0],
                                  x.strides[1], isz, out_at[i], out_bytes[i]))
                or (n_in > 0 and may_overlap(<const char*> &weight[0, 0], n_out, n_in,
                                             weight.strides[0], weight.strides[1], isz,
                                             out_at[i], out_bytes[i]))
                or (n > 0 and (may_overlap(<const char*> &z[0, 0], n, n_out, n_out * isz,
                                           isz, isz, out_at[i], out_bytes[i])
                               or may_overlap(<const char*> &a[0, 0], n, n_out,
                                              n_out * isz, isz, isz, out_at[i],
                                              out_bytes[i])
                               or (not (i == 0 and &grad_a[0, 0] == &grad_z[0, 0])
                                   and may_overlap(<const char*> &grad_a[0, 0], n, n_out,
                                                   n_out * isz, isz, isz, out_at[i],
                                                   out_bytes[i]))))):
            return 2
    with nogil:
        rc = dense_backward_run(n, n_in, n_out,
                                &x[0, 0] if full else NULL, x.strides[0] // isz,
                                x.strides[1] // isz,
                                &weight[0, 0] if n_in > 0 else NULL,
                                weight.strides[0] // isz, weight.strides[1] // isz,
                                &z[0, 0] if n > 0 else NULL, &a[0, 0] if n > 0 else NULL,
                                &grad_a[0, 0] if n > 0 else NULL, code, slope,
                                &grad_z[0, 0] if n > 0 else NULL,
                                &grad_x[0, 0] if grad_x is not None and full else NULL,
                                &grad_weight[0, 0] if n_in > 0 else NULL, pgb, n_threads)
    if rc != 0:
        raise MemoryError("nncore.dense_backward: cannot allocate packing buffers")
    return 0


# ---- C-level entry (dense.pxd) -----------------------------------------------------

cdef void grad_z_and_bias_f32(int code, float slope, const float* z, const float* a,
                              const float* grad_a, float* grad_z, float* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    grad_z_and_bias(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, n_threads)


cdef void grad_z_and_bias_f64(int code, double slope, const double* z, const double* a,
                              const double* grad_a, double* grad_z, double* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    grad_z_and_bias(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, n_threads)


cdef void grad_z_and_bias_part_f32(int code, float slope, const float* z, const float* a,
                                   const float* grad_a, float* grad_z, float* grad_b,
                                   Py_ssize_t rows, Py_ssize_t cols, int t,
                                   int nt) noexcept nogil:
    grad_z_and_bias_part(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, t, nt)


cdef void grad_z_and_bias_part_f64(int code, double slope, const double* z, const double* a,
                                   const double* grad_a, double* grad_z, double* grad_b,
                                   Py_ssize_t rows, Py_ssize_t cols, int t,
                                   int nt) noexcept nogil:
    grad_z_and_bias_part(code, slope, z, a, grad_a, grad_z, grad_b, rows, cols, t, nt)


cdef int dense_forward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                           const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                           const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                           const float* b, int code, double slope,
                           float* z, float* a, int n_threads) noexcept nogil:
    return dense_forward_run(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, b, code, slope,
                             z, a, n_threads, NULL)


cdef int dense_forward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                           const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                           const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                           const double* b, int code, double slope,
                           double* z, double* a, int n_threads) noexcept nogil:
    return dense_forward_run(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, b, code, slope,
                             z, a, n_threads, NULL)


cdef int dense_backward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                            const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                            const float* z, const float* a, const float* grad_a,
                            int code, double slope, float* grad_z, float* grad_x,
                            float* grad_w, float* grad_b, int n_threads) noexcept nogil:
    return dense_backward_run(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, z, a, grad_a,
                              code, slope, grad_z, grad_x, grad_w, grad_b, n_threads)


cdef int dense_backward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                            const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                            const double* z, const double* a, const double* grad_a,
                            int code, double slope, double* grad_z, double* grad_x,
                            double* grad_w, double* grad_b, int n_threads) noexcept nogil:
    return dense_backward_run(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, z, a, grad_a,
                              code, slope, grad_z, grad_x, grad_w, grad_b, n_threads)
