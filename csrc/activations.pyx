"""Activation functions, forward and backward, on (rows, cols) arrays.

Design:
- The maths lives in activation_math.pxd (shared with the GEMM epilogue and
  the dense backward pass); this module loops it over rows.
- softmax is row-wise: a_ij = exp(z_ij - max_j z_ij) / sum_j exp(z_ij - max_j z_ij),
  backward grad_z_ij = a_ij (grad_a_ij - sum_k grad_a_ik a_ik).
- Each row is computed by one thread, sums in column order: results do not
  depend on the thread count. Below ELEMENTWISE_PARALLEL_MIN elements, one
  thread and no parallel region.
- Python passes C-contiguous 2-D memoryviews (nncore.functional reshapes and
  validates); outputs are passed in and may alias the input (in place).
"""
from cython.parallel cimport prange

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport ELEMENTWISE_PARALLEL_MIN
from nncore._kernels.activation_math cimport (act_forward_run, act_backward_run, softmax_row,
                                              softmax_backward_row)
from nncore._kernels.codes cimport ACT_SOFTMAX

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED


cdef inline int threads_for(Py_ssize_t size, int n_threads) noexcept nogil:
    if not NN_OPENMP_ENABLED or size < ELEMENTWISE_PARALLEL_MIN:
        return 1
    return n_threads if n_threads > 1 else 1


cdef void forward_rows(int code, real slope, const real* z, real* a,
                       Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    """a = f(z) for a (rows, cols) C-contiguous array."""
    cdef Py_ssize_t i
    cdef int nt = threads_for(rows * cols, n_threads)
    if code == ACT_SOFTMAX:
        if cols == 0:
            return
        if nt == 1:
            for i in range(rows):
                softmax_row(z + i * cols, a + i * cols, cols)
        else:
            for i in prange(rows, num_threads=nt, schedule='static'):
                softmax_row(z + i * cols, a + i * cols, cols)
    elif nt == 1:
        act_forward_run(code, slope, z, a, rows * cols)
    else:
        for i in prange(rows, num_threads=nt, schedule='static'):
            act_forward_run(code, slope, z + i * cols, a + i * cols, cols)


cdef void backward_rows(int code, real slope, const real* z, const real* a,
                        const real* grad_a, real* grad_z,
                        Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    """grad_z = grad_a * f'(z) (softmax: its Jacobian-vector product per row)."""
    cdef Py_ssize_t i
    cdef int nt = threads_for(rows * cols, n_threads)
    if code == ACT_SOFTMAX:
        if nt == 1:
            for i in range(rows):
                softmax_backward_row(a + i * cols, grad_a + i * cols, grad_z + i * cols, cols)
        else:
            for i in prange(rows, num_threads=nt, schedule='static'):
                softmax_backward_row(a + i * cols, grad_a + i * cols, grad_z + i * cols, cols)
    elif nt == 1:
        act_backward_run(code, slope, z, a, grad_a, grad_z, rows * cols)
    else:
        for i in prange(rows, num_threads=nt, schedule='static'):
            act_backward_run(code, slope, z + i * cols, a + i * cols,
                             grad_a + i * cols, grad_z + i * cols, cols)


def activation_forward(int code, double slope,
                       const real[:, ::1] z,    # IN  (rows, cols)
                       real[:, ::1] out,        # OUT (rows, cols), may be z
                       int n_threads):
    """out = f(z)."""
    if z.shape[0] == 0 or z.shape[1] == 0:
        return
    with nogil:
        forward_rows(code, <real> slope, &z[0, 0], &out[0, 0],
                     z.shape[0], z.shape[1], n_threads)


def activation_backward(int code, double slope,
                        const real[:, ::1] z,       # IN  (rows, cols)
                        const real[:, ::1] a,       # IN  f(z)
                        const real[:, ::1] grad_a,  # IN  dL/da
                        real[:, ::1] out,           # OUT dL/dz, may be grad_a
                        int n_threads):
    """out = grad_a * f'(z)."""
    if z.shape[0] == 0 or z.shape[1] == 0:
        return
    with nogil:
        backward_rows(code, <real> slope, &z[0, 0], &a[0, 0], &grad_a[0, 0],
                      &out[0, 0], z.shape[0], z.shape[1], n_threads)


# ---- C-level entry (activations.pxd) ------------------------------------------------

cdef void forward_f32(int code, double slope, const float* z, float* a,
                      Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    if rows > 0 and cols > 0:
        forward_rows(code, <float> slope, z, a, rows, cols, n_threads)


cdef void forward_f64(int code, double slope, const double* z, double* a,
                      Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil:
    if rows > 0 and cols > 0:
        forward_rows(code, slope, z, a, rows, cols, n_threads)


cdef void backward_f32(int code, double slope, const float* z, const float* a,
                       const float* grad_a, float* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                       int n_threads) noexcept nogil:
    if rows > 0 and cols > 0:
        backward_rows(code, <float> slope, z, a, grad_a, grad_z, rows, cols, n_threads)


cdef void backward_f64(int code, double slope, const double* z, const double* a,
                       const double* grad_a, double* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                       int n_threads) noexcept nogil:
    if rows > 0 and cols > 0:
        backward_rows(code, slope, z, a, grad_a, grad_z, rows, cols, n_threads)
