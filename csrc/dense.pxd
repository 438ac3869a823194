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

# The whole layer (the def wrappers' kernels; nncore/kernels.pxd makes them public):
#   forward   z = x @ w.T + b (b NULL: none), a = f(z)
#   backward  grad_z = grad_a f'(z); grad_b = sum(grad_z, 0) (NULL: skip);
#             grad_w = grad_z.T @ x; grad_x = grad_z @ w (NULL: skip)
# x (n, n_in) and w (n_out, n_in) by element strides (rs: row, cs: column); z, a,
# grad_a, grad_z (n, n_out), grad_x (n, n_in), grad_w (n_out, n_in) C-contiguous.
# a may be z (forward), grad_z may be grad_a. Returns 0, or -1 when the GEMM's
# packing buffers cannot be allocated.
cdef int dense_forward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                           const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                           const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                           const float* b, int code, double slope,
                           float* z, float* a, int n_threads) noexcept nogil
cdef int dense_forward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                           const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                           const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                           const double* b, int code, double slope,
                           double* z, double* a, int n_threads) noexcept nogil
cdef int dense_backward_f32(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            const float* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                            const float* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                            const float* z, const float* a, const float* grad_a,
                            int code, double slope, float* grad_z, float* grad_x,
                            float* grad_w, float* grad_b, int n_threads) noexcept nogil
cdef int dense_backward_f64(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                            const double* x, Py_ssize_t rs_x, Py_ssize_t cs_x,
                            const double* w, Py_ssize_t rs_w, Py_ssize_t cs_w,
                            const double* z, const double* a, const double* grad_a,
                            int code, double slope, double* grad_z, double* grad_x,
                            double* grad_w, double* grad_b, int n_threads) noexcept nogil
