# nncore's C API: the kernels for other packages' Cython code (installed as
# nncore/kernels.pxd; docs/c-api.md has the build recipes).
#
#     from nncore.kernels cimport sgemm, dense_forward_f32, ACT_RELU
#
# cythonized with -I nncore.get_include() and compiled with the same -I (for the
# code table, nncore/_kernels/codes.h). The names, signatures and codes in this
# file are stable: they change only with C_API_VERSION, and codes are only added.
# What they call, nncore._kernels.*, is internal and may change in any release.
#
# Every function is `noexcept nogil` on raw pointers, in float32 (s / _f32) and
# float64 (d / _f64), and allocates nothing that it does not free. n_threads is
# the most threads a call may use (nncore's OpenMP; small problems stay on the
# calling thread); results are bitwise the same for any n_threads. From inside
# a parallel region of your own, pass n_threads = 1. A function that returns
# an int returns 0, or -1 when a buffer could not be allocated (nothing useful
# is written then); loss_* also -2 for a label outside [0, k).
#
# Layout: op(A), op(B), x and w are given by a pointer and element strides
# (rs: to the next row, cs: to the next column), so a transpose is a swap of
# strides and never a copy; every other array is row-major and C-contiguous.
# Shapes use n (rows of a batch), n_in, n_out, k (outputs of a loss).

from nncore._kernels cimport activations as _act
from nncore._kernels cimport dense as _dense
from nncore._kernels cimport gemm as _gemm
from nncore._kernels cimport losses as _losses
from nncore._kernels.gemm cimport Epilogue
from nncore._kernels.codes cimport (
    ACT_IDENTITY, ACT_STEP, ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_LEAKY_RELU, ACT_SOFTPLUS,
    ACT_SOFTMAX, LOSS_MSE, LOSS_SOFTMAX_CROSS_ENTROPY, LOSS_BINARY_CROSS_ENTROPY, LOSS_HINGE,
    OPT_SGD, OPT_ADAM, OPT_RMSPROP)

cdef enum:
    C_API_VERSION = 1

# ---- codes (nncore/_kernels/codes.h; Python: nncore._kernels.codes) ----------
#   ACT_IDENTITY ACT_STEP ACT_SIGMOID ACT_TANH ACT_RELU ACT_LEAKY_RELU (slope)
#   ACT_SOFTPLUS ACT_SOFTMAX (per row)
#   LOSS_MSE LOSS_BINARY_CROSS_ENTROPY (targets t), LOSS_SOFTMAX_CROSS_ENTROPY
#   LOSS_HINGE (labels y)
#   OPT_SGD OPT_ADAM OPT_RMSPROP (the optimizers' codes; no optimizer kernel here)

# ---- GEMM ------------------------------------------------------------------------
#   C = alpha * op(A) @ op(B) + beta * C,  op(A) (m, k), op(B) (k, n), C (m, n)
# C row-major with row stride ldc; beta == 0 writes C without reading it (C may
# hold NaN). ep (NULL: none) runs on each tile of C after its last k block:
#   C[i, j] += bias[j]                     ep.bias != NULL (same dtype as C, (n,))
#   act_out[i * ld_act + j] = f(C[i, j])   ep.act_out != NULL; f = ep.activation
#                                          (an elementwise code, not ACT_SOFTMAX),
#                                          ep.slope for ACT_LEAKY_RELU
# Epilogue fields: const void* bias, void* act_out, Py_ssize_t ld_act,
# int activation, double slope. act_out may be C (f applied in place).

cdef inline int sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
                      const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                      const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                      float beta, float* c, Py_ssize_t ldc,
                      const Epilogue* ep, int n_threads) noexcept nogil:
    return _gemm.sgemm(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc, ep,
                       n_threads)


cdef inline int dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
                      const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                      const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                      double beta, double* c, Py_ssize_t ldc,
                      const Epilogue* ep, int n_threads) noexcept nogil:
    return _gemm.dgemm(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc, ep,
                       n_threads)

# ---- dense layer -------------------------------------------------------------------
#   forward   z = x @ w.T + b (b NULL: no bias), a = f(z): one GEMM whose epilogue
#             adds b and writes a (softmax: a row pass after it). a may be z.
#   backward  grad_z = grad_a * f'(z); grad_b = sum_i grad_z[i, :] (NULL: skip);
#             grad_w = grad_z.T @ x; grad_x = grad_z @ w (NULL: skip).
#             grad_z may be grad_a. f' comes from z or a, whichever is cheaper.
# x (n, n_in) and w (n_out, n_in) with element strides; b, grad_b (n_out,);
# z, a, grad_a, grad_z (n, n_out); grad_x (n, n_in); grad_w (n_out, n_in).
# slope: ACT_LEAKY_RELU's (ignored by the other codes).

cdef inline int dense_forward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                  const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                                  const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                                  const float* b, int activation, double slope,
                                  float* z, float* a, int n_threads) noexcept nogil:
    return _dense.dense_forward_f32(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, b,
                                    activation, slope, z, a, n_threads)


cdef inline int dense_forward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                  const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                                  const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                                  const double* b, int activation, double slope,
                                  double* z, double* a, int n_threads) noexcept nogil:
    return _dense.dense_forward_f64(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, b,
                                    activation, slope, z, a, n_threads)


cdef inline int dense_backward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                   const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                                   const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                                   const float* z, const float* a, const float* grad_a,
                                   int activation, double slope, float* grad_z,
                                   float* grad_x, float* grad_w, float* grad_b,
                                   int n_threads) noexcept nogil:
    return _dense.dense_backward_f32(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, z, a,
                                     grad_a, activation, slope, grad_z, grad_x, grad_w,
                                     grad_b, n_threads)


cdef inline int dense_backward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                                   const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                                   const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                                   const double* z, const double* a, const double* grad_a,
                                   int activation, double slope, double* grad_z,
                                   double* grad_x, double* grad_w, double* grad_b,
                                   int n_threads) noexcept nogil:
    return _dense.dense_backward_f64(n, n_in, n_out, x, rs_x, cs_x, w, rs_w, cs_w, z, a,
                                     grad_a, activation, slope, grad_z, grad_x, grad_w,
                                     grad_b, n_threads)

# ---- activations ---------------------------------------------------------------------
#   a = f(z);  grad_z = grad_a * f'(z)  (ACT_SOFTMAX: per row, its Jacobian-vector
#   product a_j (grad_a_j - sum_k grad_a_k a_k)); relu'(0) = 0, step' = 0.
# z, a, grad_a, grad_z (rows, cols). a may be z; grad_z may be grad_a.

cdef inline void activation_forward_f32(int activation, double slope, const float* z,
                                        float* a, Py_ssize_t rows, Py_ssize_t cols,
                                        int n_threads) noexcept nogil:
    _act.forward_f32(activation, slope, z, a, rows, cols, n_threads)


cdef inline void activation_forward_f64(int activation, double slope, const double* z,
                                        double* a, Py_ssize_t rows, Py_ssize_t cols,
                                        int n_threads) noexcept nogil:
    _act.forward_f64(activation, slope, z, a, rows, cols, n_threads)


cdef inline void activation_backward_f32(int activation, double slope, const float* z,
                                         const float* a, const float* grad_a,
                                         float* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                                         int n_threads) noexcept nogil:
    _act.backward_f32(activation, slope, z, a, grad_a, grad_z, rows, cols, n_threads)


cdef inline void activation_backward_f64(int activation, double slope, const double* z,
                                         const double* a, const double* grad_a,
                                         double* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                                         int n_threads) noexcept nogil:
    _act.backward_f64(activation, slope, z, a, grad_a, grad_z, rows, cols, n_threads)

# ---- losses ------------------------------------------------------------------------
#   value = sum_i s_i l_i(o_i, target_i);  g_i = s_i dl_i/do_i,  in one pass
# o, g (n, k); t (n, k) targets for LOSS_MSE / LOSS_BINARY_CROSS_ENTROPY (else
# NULL); y (n,) labels in [0, k) for LOSS_SOFTMAX_CROSS_ENTROPY / LOSS_HINGE (else
# NULL); s (n,) float64 row weights (1/n for a mean). g is written, never read.
# Arithmetic in double; returns 0, -1 (no memory) or -2 (a label out of range).

cdef inline int loss_f32(int loss, Py_ssize_t n, Py_ssize_t k, const float* o,
                         const float* t, const Py_ssize_t* y, const double* s, float* g,
                         double* value, int n_threads) noexcept nogil:
    return _losses.loss_f32(loss, n, k, o, t, y, s, g, value, n_threads)


cdef inline int loss_f64(int loss, Py_ssize_t n, Py_ssize_t k, const double* o,
                         const double* t, const Py_ssize_t* y, const double* s, double* g,
                         double* value, int n_threads) noexcept nogil:
    return _losses.loss_f64(loss, n, k, o, t, y, s, g, value, n_threads)
