# C-level entry to nncore._dense (used by the fused training step).
# grad_z = grad_a * f'(z) (softmax: per row); grad_b = column sums of grad_z
# (NULL: skip), each column summed by one thread in row order.
cdef void grad_z_and_bias_f32(int code, float slope, const float* z, const float* a,
                              const float* grad_a, float* grad_z, float* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil
cdef void grad_z_and_bias_f64(int code, double slope, const double* z, const double* a,
                              const double* grad_a, double* grad_z, double* grad_b,
                              Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil
