# C-level entry to nncore._kernels.activations (nncore/kernels.pxd makes it public):
# a = f(z), grad_z = grad_a * f'(z) (softmax: per row) on (rows, cols) C-contiguous
# arrays, the def wrappers' kernels. a may be z, grad_z may be grad_a.
cdef void forward_f32(int code, double slope, const float* z, float* a,
                      Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil
cdef void forward_f64(int code, double slope, const double* z, double* a,
                      Py_ssize_t rows, Py_ssize_t cols, int n_threads) noexcept nogil
cdef void backward_f32(int code, double slope, const float* z, const float* a,
                       const float* grad_a, float* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                       int n_threads) noexcept nogil
cdef void backward_f64(int code, double slope, const double* z, const double* a,
                       const double* grad_a, double* grad_z, Py_ssize_t rows, Py_ssize_t cols,
                       int n_threads) noexcept nogil
