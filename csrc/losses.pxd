# C-level entry to nncore._kernels.losses (used by the fused training step).
#   value = sum_i s_i l_i(o_i, target_i);  g_i = s_i dl_i/do_i
# code: 0 mse, 1 softmax_cross_entropy, 2 binary_cross_entropy, 3 hinge.
# t: (n, k) targets or NULL; y: (n,) labels or NULL; s: (n,) row scales.
# Returns 0, -1 (no memory) or -2 (a label outside [0, k)).
cdef int loss_f32(int code, Py_ssize_t n, Py_ssize_t k, const float* o, const float* t,
                  const Py_ssize_t* y, const double* s, float* g, double* value,
                  int n_threads) noexcept nogil
cdef int loss_f64(int code, Py_ssize_t n, Py_ssize_t k, const double* o, const double* t,
                  const Py_ssize_t* y, const double* s, double* g, double* value,
                  int n_threads) noexcept nogil
