# C-level entry to nncore._kernels.optim (used by the fused training step); n elements
# updated in place, the formulas of nncore.functional.sgd_step / adam_step /
# rmsprop_step.
cdef void sgd_f32(Py_ssize_t n, float* param, const float* grad, float* velocity,
                  float lr, float momentum, float weight_decay, bint nesterov,
                  int n_threads) noexcept nogil
cdef void sgd_f64(Py_ssize_t n, double* param, const double* grad, double* velocity,
                  double lr, double momentum, double weight_decay, bint nesterov,
                  int n_threads) noexcept nogil
cdef void adam_f32(Py_ssize_t n, float* param, const float* grad, float* m, float* v,
                   float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                   float step_size, float bias_correction2_sqrt, float eps,
                   float weight_decay, int n_threads) noexcept nogil
cdef void adam_f64(Py_ssize_t n, double* param, const double* grad, double* m, double* v,
                   double beta1, double one_minus_beta1, double beta2, double one_minus_beta2,
                   double step_size, double bias_correction2_sqrt, double eps,
                   double weight_decay, int n_threads) noexcept nogil
cdef void rmsprop_f32(Py_ssize_t n, float* param, const float* grad, float* v, float* buf,
                      float lr, float alpha, float one_minus_alpha, float eps, float momentum,
                      float weight_decay, int n_threads) noexcept nogil
cdef void rmsprop_f64(Py_ssize_t n, double* param, const double* grad, double* v,
                      double* buf, double lr, double alpha, double one_minus_alpha, double eps,
                      double momentum, double weight_decay, int n_threads) noexcept nogil
