# C-level entry to nncore._kernels.dense (used by the fused training step).
# grad_z = grad_a * f'(z) (softmax: per row); grad_b = column sums of grad_z
# (NULL: skip), each column summed by one thread in row order.
cdef void grad_z_and_bias_f32(int code, float slope, const float* z, const float* a,
                              const float* grad_a, float* grad_z, float* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil
cdef void grad_z_and_bias_f64(int code, double slope, const double* z, const double* a,
                              const double* grad_a, double* grad_z, double* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil

# The same for thread t of nt inside a parallel region the caller runs:
# nt = grad_z_part_threads(...) (1 for softmax and small layers); columns are
# cut into the strips the threaded kernel uses, so results are the same.
cdef int grad_z_part_threads(int code, Py_ssize_t rows, Py_ssize_t cols,
                             int n_threads) noexcept nogil
cdef void grad_z_and_bias_part_f32(int code, float slope, const float* z, const float* a,
                                   const float* grad_a, float* grad_z, float* grad_b,
                                   Py_ssize_t rows, Py_ssize_t cols, int t,
                                   int nt) noexcept nogil
cdef void grad_z_and_bias_part_f64(int code, double slope, const double* z, const double* a,
                                   const double* grad_a, double* grad_z, double* grad_b,
                                   Py_ssize_t rows, Py_ssize_t cols, int t,
                                   int nt) noexcept nogil
