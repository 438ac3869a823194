/* The element loops of the optimizer updates (optim.pyx), each compiled three times: for
 * the baseline x86-64 the rest of the build targets (SSE2, 4 floats a vector), for AVX2
 * (8 floats a vector) and not vectorized (the small step's few elements). The AVX2
 * copies are compiled without FMA, so each element gets the very multiplications,
 * additions, divisions and square roots of the baseline loop, each rounded on its own:
 * the same bits. One of the first two is picked per process (nn_vmath_avx2_ok:
 * NNCORE_SIMD=generic keeps the baseline).
 *
 *   SGD      g = grad + wd p;  v = mu v + g;  p -= lr (g + mu v | v | g)
 *   Adam     g = grad + wd p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g g;
 *            p -= step_size m / (sqrt(v) / sqrt(bc2) + eps)
 *   RMSprop  g = grad + wd p;  v = a v + (1-a) g g;  d = g / (sqrt(v) + eps);
 *            buf = mu buf + d, p -= lr buf   (or p -= lr d without momentum)
 *
 * Branches on loop invariants sit outside the loops, so each loop vectorizes; a zero
 * weight decay is skipped, not multiplied in. */
#ifndef NNCORE_OPTIM_LOOPS_H
#define NNCORE_OPTIM_LOOPS_H

#include <math.h>
#include <stddef.h>

#include "nn_attributes.h"
#include "vmath.h"

#define NN_SGD_LOOPS(NAME, T, ATTR)                                                    \
    ATTR static void NAME(ptrdiff_t n, T *param, const T *grad, T *velocity, T lr,     \
                          T momentum, T weight_decay, int nesterov)                    \
    {                                                                                  \
        T g;                                                                           \
        if (velocity == NULL) {                                                        \
            if (weight_decay == 0)                                                     \
                for (ptrdiff_t i = 0; i < n; ++i) param[i] = param[i] - lr * grad[i];  \
            else                                                                       \
                for (ptrdiff_t i = 0; i < n; ++i) {                                    \
                    g = grad[i] + weight_decay * param[i];                             \
                    param[i] = param[i] - lr * g;                                      \
                }                                                                      \
        } else if (nesterov) {                                                         \
            if (weight_decay == 0)                                                     \
                for (ptrdiff_t i = 0; i < n; ++i) {                                    \
                    g = grad[i];                                                       \
                    velocity[i] = momentum * velocity[i] + g;                          \
                    param[i] = param[i] - lr * (g + momentum * velocity[i]);           \
                }                                                                      \
            else                                                                       \
                for (ptrdiff_t i = 0; i < n; ++i) {                                    \
                    g = grad[i] + weight_decay * param[i];                             \
                    velocity[i] = momentum * velocity[i] + g;                          \
                    param[i] = param[i] - lr * (g + momentum * velocity[i]);           \
                }                                                                      \
        } else {                                                                       \
            if (weight_decay == 0)                                                     \
                for (ptrdiff_t i = 0; i < n; ++i) {                                    \
                    velocity[i] = momentum * velocity[i] + grad[i];                    \
                    param[i] = param[i] - lr * velocity[i];                            \
                }                                                                      \
            else                                                                       \
                for (ptrdiff_t i = 0; i < n; ++i) {                                    \
                    g = grad[i] + weight_decay * param[i];                             \
                    velocity[i] = momentum * velocity[i] + g;                          \
                    param[i] = param[i] - lr * velocity[i];                            \
                }                                                                      \
        }                                                                              \
    }

#define NN_ADAM_LOOPS(NAME, T, SQRT, ATTR)                                             \
    ATTR static void NAME(ptrdiff_t n, T *param, const T *grad, T *m, T *v, T beta1,   \
                          T one_minus_beta1, T beta2, T one_minus_beta2, T step_size,  \
                          T bias_correction2_sqrt, T eps, T weight_decay)              \
    {                                                                                  \
        T g, denom;                                                                    \
        if (weight_decay == 0)                                                         \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                g = grad[i];                                                           \
                m[i] = beta1 * m[i] + one_minus_beta1 * g;                             \
                v[i] = beta2 * v[i] + one_minus_beta2 * g * g;                         \
                denom = SQRT(v[i]) / bias_correction2_sqrt + eps;                      \
                param[i] = param[i] - step_size * m[i] / denom;                        \
            }                                                                          \
        else                                                                           \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                g = grad[i] + weight_decay * param[i];                                 \
                m[i] = beta1 * m[i] + one_minus_beta1 * g;                             \
                v[i] = beta2 * v[i] + one_minus_beta2 * g * g;                         \
                denom = SQRT(v[i]) / bias_correction2_sqrt + eps;                      \
                param[i] = param[i] - step_size * m[i] / denom;                        \
            }                                                                          \
    }

/* One element of RMSprop from its gradient G: v, then d (both loops below). */
#define NN_RMSPROP_D(G, SQRT)                                                          \
    g = (G);                                                                           \
    v[i] = alpha * v[i] + one_minus_alpha * g * g;                                     \
    d = g / (SQRT(v[i]) + eps)

#define NN_RMSPROP_LOOPS(NAME, T, SQRT, ATTR)                                          \
    ATTR static void NAME(ptrdiff_t n, T *param, const T *grad, T *v, T *buf, T lr,    \
                          T alpha, T one_minus_alpha, T eps, T momentum, T weight_decay) \
    {                                                                                  \
        T g, d;                                                                        \
        if (buf == NULL && weight_decay == 0)                                          \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                NN_RMSPROP_D(grad[i], SQRT);                                           \
                param[i] = param[i] - lr * d;                                          \
            }                                                                          \
        else if (buf == NULL)                                                          \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                NN_RMSPROP_D(grad[i] + weight_decay * param[i], SQRT);                 \
                param[i] = param[i] - lr * d;                                          \
            }                                                                          \
        else if (weight_decay == 0)                                                    \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                NN_RMSPROP_D(grad[i], SQRT);                                           \
                buf[i] = momentum * buf[i] + d;                                        \
                param[i] = param[i] - lr * buf[i];                                     \
            }                                                                          \
        else                                                                           \
            for (ptrdiff_t i = 0; i < n; ++i) {                                        \
                NN_RMSPROP_D(grad[i] + weight_decay * param[i], SQRT);                 \
                buf[i] = momentum * buf[i] + d;                                        \
                param[i] = param[i] - lr * buf[i];                                     \
            }                                                                          \
    }

/* The six loops (three updates, two dtypes) named nn_<update>_<dtype>_<SUFFIX>. */
#define NN_OPTIM_LOOPS(SUFFIX, ATTR)                                                   \
    NN_SGD_LOOPS(nn_sgd_f32_##SUFFIX, float, ATTR)                                     \
    NN_SGD_LOOPS(nn_sgd_f64_##SUFFIX, double, ATTR)                                    \
    NN_ADAM_LOOPS(nn_adam_f32_##SUFFIX, float, sqrtf, ATTR)                            \
    NN_ADAM_LOOPS(nn_adam_f64_##SUFFIX, double, sqrt, ATTR)                            \
    NN_RMSPROP_LOOPS(nn_rmsprop_f32_##SUFFIX, float, sqrtf, ATTR)                      \
    NN_RMSPROP_LOOPS(nn_rmsprop_f64_##SUFFIX, double, sqrt, ATTR)

NN_OPTIM_LOOPS(base, NN_NO_ATTR)
/* For the few elements of a small step's parameters (train_step.h): the same loops
 * as written, inlined there. */
NN_OPTIM_LOOPS(short, NN_SHORT_LOOPS)

#if NN_VMATH_X86
/* "avx2" alone: no fma instructions, so the compiler cannot fuse a product into a sum */
#define NN_AVX2_NO_FMA __attribute__((target("avx2")))
NN_OPTIM_LOOPS(avx2, NN_AVX2_NO_FMA)
#define NN_OPTIM_PICK(NAME, ...)                                                       \
    do {                                                                               \
        if (nn_vmath_avx2_ok()) NAME##_avx2(__VA_ARGS__); else NAME##_base(__VA_ARGS__); \
    } while (0)
#else
#define NN_OPTIM_PICK(NAME, ...) NAME##_base(__VA_ARGS__)
#endif

static void nn_sgd_f32(ptrdiff_t n, float *param, const float *grad, float *velocity,
                       float lr, float momentum, float weight_decay, int nesterov)
{ NN_OPTIM_PICK(nn_sgd_f32, n, param, grad, velocity, lr, momentum, weight_decay, nesterov); }
static void nn_sgd_f64(ptrdiff_t n, double *param, const double *grad, double *velocity,
                       double lr, double momentum, double weight_decay, int nesterov)
{ NN_OPTIM_PICK(nn_sgd_f64, n, param, grad, velocity, lr, momentum, weight_decay, nesterov); }
static void nn_adam_f32(ptrdiff_t n, float *param, const float *grad, float *m, float *v,
                        float beta1, float one_minus_beta1, float beta2,
                        float one_minus_beta2, float step_size, float bias_correction2_sqrt,
                        float eps, float weight_decay)
{
    NN_OPTIM_PICK(nn_adam_f32, n, param, grad, m, v, beta1, one_minus_beta1, beta2,
                  one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay);
}
static void nn_adam_f64(ptrdiff_t n, double *param, const double *grad, double *m,
                        double *v, double beta1, double one_minus_beta1, double beta2,
                        double one_minus_beta2, double step_size,
                        double bias_correction2_sqrt, double eps, double weight_decay)
{
    NN_OPTIM_PICK(nn_adam_f64, n, param, grad, m, v, beta1, one_minus_beta1, beta2,
                  one_minus_beta2, step_size, bias_correction2_sqrt, eps, weight_decay);
}
static void nn_rmsprop_f32(ptrdiff_t n, float *param, const float *grad, float *v,
                           float *buf, float lr, float alpha, float one_minus_alpha,
                           float eps, float momentum, float weight_decay)
{
    NN_OPTIM_PICK(nn_rmsprop_f32, n, param, grad, v, buf, lr, alpha, one_minus_alpha, eps,
                  momentum, weight_decay);
}
static void nn_rmsprop_f64(ptrdiff_t n, double *param, const double *grad, double *v,
                           double *buf, double lr, double alpha, double one_minus_alpha,
                           double eps, double momentum, double weight_decay)
{
    NN_OPTIM_PICK(nn_rmsprop_f64, n, param, grad, v, buf, lr, alpha, one_minus_alpha, eps,
                  momentum, weight_decay);
}

#endif /* NNCORE_OPTIM_LOOPS_H */
