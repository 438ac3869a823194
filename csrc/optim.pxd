# C-level entry to nncore._kernels.optim (used by the fused training step, which splits
# the elements over threads itself): the serial loops of optim_loops.h, n elements
# updated in place with the formulas of nncore.functional.sgd_step / adam_step /
# rmsprop_step, compiled for the baseline and for AVX2 without FMA (the same bits).
cdef extern from "nncore/_kernels/optim_loops.h" nogil:
    void nn_sgd_f32(Py_ssize_t n, float* param, const float* grad, float* velocity,
                    float lr, float momentum, float weight_decay, bint nesterov)
    void nn_sgd_f64(Py_ssize_t n, double* param, const double* grad, double* velocity,
                    double lr, double momentum, double weight_decay, bint nesterov)
    void nn_adam_f32(Py_ssize_t n, float* param, const float* grad, float* m, float* v,
                     float beta1, float one_minus_beta1, float beta2, float one_minus_beta2,
                     float step_size, float bias_correction2_sqrt, float eps,
                     float weight_decay)
    void nn_adam_f64(Py_ssize_t n, double* param, const double* grad, double* m, double* v,
                     double beta1, double one_minus_beta1, double beta2,
                     double one_minus_beta2, double step_size, double bias_correction2_sqrt,
                     double eps, double weight_decay)
    void nn_rmsprop_f32(Py_ssize_t n, float* param, const float* grad, float* v, float* buf,
                        float lr, float alpha, float one_minus_alpha, float eps,
                        float momentum, float weight_decay)
    void nn_rmsprop_f64(Py_ssize_t n, double* param, const double* grad, double* v,
                        double* buf, double lr, double alpha, double one_minus_alpha,
                        double eps, double momentum, double weight_decay)
