# Activation maths shared by the activation kernels, the fused GEMM epilogue,
# the dense backward pass and the fused training step: the elementwise loops
# are C (elementwise.h, vmath.h), one loop per activation so the switch stays
# outside the hot loop, and so are the softmax rows. Codes: codes.pxd.
#
#   identity  f(z) = z                          f' = 1
#   step      f(z) = 1 if z > 0 else 0          f' = 0 (everywhere, by convention)
#   sigmoid   f(z) = 1 / (1 + exp(-z))          f' = a (1 - a)
#   tanh      f(z) = tanh(z)                    f' = 1 - a^2
#   relu      f(z) = max(z, 0)                  f' = 1 if z > 0 else 0 (relu'(0) = 0)
#   leaky     f(z) = z if z > 0 else slope z    f' = 1 if z > 0 else slope
#   softplus  f(z) = log(1 + exp(z))            f' = sigmoid(z)
#   softmax   a_j = exp(z_j - max z) / sum_k exp(z_k - max z), per row;
#             grad_z_j = a_j (grad_a_j - sum_k grad_a_k a_k)
from nncore._kernels.types cimport real

cdef extern from "nncore/_kernels/vmath.h" nogil:
    void nn_sigmoid_f32(const float* z, float* a, Py_ssize_t n)
    void nn_sigmoid_f64(const double* z, double* a, Py_ssize_t n)


cdef extern from "nncore/_kernels/elementwise.h" nogil:
    void nn_act_forward_f32(int code, float slope, const float* z, float* a, Py_ssize_t n)
    void nn_act_forward_f64(int code, double slope, const double* z, double* a, Py_ssize_t n)
    void nn_epilogue_f32(float* c, Py_ssize_t ldc, Py_ssize_t mr, Py_ssize_t nr,
                         const float* bias, int code, float slope, float* a, Py_ssize_t lda)
    void nn_epilogue_f64(double* c, Py_ssize_t ldc, Py_ssize_t mr, Py_ssize_t nr,
                         const double* bias, int code, double slope, double* a,
                         Py_ssize_t lda)
    void nn_act_backward_f32(int code, float slope, const float* z, const float* a,
                             const float* ga, float* gz, Py_ssize_t n)
    void nn_act_backward_f64(int code, double slope, const double* z, const double* a,
                             const double* ga, double* gz, Py_ssize_t n)
    void nn_colsum_add_f32(const float* x, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                           float* colsum)
    void nn_colsum_add_f64(const double* x, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                           double* colsum)
    void nn_softmax_row_f32(const float* z, float* a, Py_ssize_t n)
    void nn_softmax_row_f64(const double* z, double* a, Py_ssize_t n)
    void nn_softmax_backward_row_f32(const float* a, const float* grad_a, float* grad_z,
                                     Py_ssize_t n)
    void nn_softmax_backward_row_f64(const double* a, const double* grad_a,
                                     double* grad_z, Py_ssize_t n)


cdef inline void act_forward_run(int code, real slope, const real* z, real* a,
                                 Py_ssize_t n) noexcept nogil:
    """a[i] = f(z[i]) for i < n; elementwise codes only (not softmax), as C loops
    the compiler vectorizes (elementwise.h). a may equal z (in place)."""
    if real is float:
        nn_act_forward_f32(code, slope, z, a, n)
    else:
        nn_act_forward_f64(code, slope, z, a, n)


cdef inline void act_backward_run(int code, real slope, const real* z,
                                  const real* a, const real* grad_a,
                                  real* grad_z, Py_ssize_t n) noexcept nogil:
    """grad_z[i] = grad_a[i] * f'(z[i]) for i < n, f' from z or a as cheaper;
    elementwise codes only (elementwise.h). grad_z may equal grad_a (in place)."""
    if real is float:
        nn_act_backward_f32(code, slope, z, a, grad_a, grad_z, n)
    else:
        nn_act_backward_f64(code, slope, z, a, grad_a, grad_z, n)


cdef inline void colsum_add(const real* x, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t cols,
                            real* colsum) noexcept nogil:
    """colsum[j] += x[i, j] over rows i in order (elementwise.h)."""
    if real is float:
        nn_colsum_add_f32(x, ld, rows, cols, colsum)
    else:
        nn_colsum_add_f64(x, ld, rows, cols, colsum)


cdef inline void softmax_row(const real* z, real* a, Py_ssize_t n) noexcept nogil:
    if real is float:
        nn_softmax_row_f32(z, a, n)
    else:
        nn_softmax_row_f64(z, a, n)


cdef inline void softmax_backward_row(const real* a, const real* grad_a,
                                      real* grad_z, Py_ssize_t n) noexcept nogil:
    if real is float:
        nn_softmax_backward_row_f32(a, grad_a, grad_z, n)
    else:
        nn_softmax_backward_row_f64(a, grad_a, grad_z, n)
