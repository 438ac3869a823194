/* Activations and their derivatives, grad_z = grad_a * f'(z), as plain C loops,
 * and the GEMM epilogue (bias + activation on a tile).
 *
 * Written here rather than in Cython so that each loop is a small function of
 * its own: the compiler if-converts and vectorizes it (with a run-time overlap
 * check, grad_z may be grad_a), which it does not do once Cython has inlined
 * the loop into an OpenMP region. Codes from codes.h; softmax, not elementwise,
 * has its own row functions at the end.
 *
 *   identity 1, step 0, sigmoid a (1 - a), tanh 1 - a^2,
 *   relu 1[z > 0], leaky_relu 1 or slope, softplus sigmoid(z)
 */
#ifndef NNCORE_ELEMENTWISE_H
#define NNCORE_ELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include <string.h>
#include "codes.h"
#include "nn_attributes.h"
#include "vmath.h"

/* a = f(z), elementwise codes only; a may equal z. softplus(z) = max(z, 0) +
 * log1p(exp(-|z|)); step(0) = 0. */
#define NN_ACT_FORWARD(NAME, T, SIGMOID, EXP, LOG1P, FABS, TANH, ATTR)               \
    ATTR static void NAME(int code, T slope, const T *z, T *a, ptrdiff_t n)               \
    {                                                                                \
        ptrdiff_t i;                                                                 \
        switch (code) {                                                              \
        case NN_ACT_IDENTITY: if (a != z) memmove(a, z, (size_t)n * sizeof(T)); break; \
        case NN_ACT_STEP: for (i = 0; i < n; ++i) a[i] = z[i] > 0 ? (T)1 : (T)0; break; \
        case NN_ACT_SIGMOID: SIGMOID(z, a, n); break;                                \
        case NN_ACT_TANH: for (i = 0; i < n; ++i) a[i] = TANH(z[i]); break;          \
        case NN_ACT_RELU:                                                            \
            for (i = 0; i < n; ++i) { T v = z[i]; a[i] = v > 0 ? v : 0; } break;     \
        case NN_ACT_LEAKY_RELU:                                                      \
            for (i = 0; i < n; ++i) { T v = z[i]; a[i] = v > 0 ? v : slope * v; } break; \
        case NN_ACT_SOFTPLUS: for (i = 0; i < n; ++i) { T v = z[i];                  \
                    a[i] = (v > 0 ? v : 0) + LOG1P(EXP(-FABS(v))); } break;          \
        }                                                                            \
    }

NN_ACT_FORWARD(nn_act_forward_f32, float, nn_sigmoid_f32, expf, log1pf, fabsf, tanhf,
               NN_NO_ATTR)
NN_ACT_FORWARD(nn_act_forward_f64, double, nn_sigmoid_f64, exp, log1p, fabs, tanh,
               NN_NO_ATTR)
/* Short copies, inlined into the small step (train_step.h): the same operations. */
NN_ACT_FORWARD(nn_act_forward_short_f32, float, nn_sigmoid_f32, expf, log1pf, fabsf, tanhf,
               NN_SHORT_LOOPS)
NN_ACT_FORWARD(nn_act_forward_short_f64, double, nn_sigmoid_f64, exp, log1p, fabs, tanh,
               NN_SHORT_LOOPS)

/* The GEMM epilogue on one tile: c[i, j] += bias[j]; a[i, j] = f(c[i, j]).
 * bias or a may be NULL. A tile whose rows are contiguous in c and a (a whole
 * narrow product) takes f in one run: the same values, since f is elementwise and
 * the vector sigmoid does not depend on where a run starts (vmath.h). */
#define NN_EPILOGUE(NAME, T, FORWARD)                                                \
    static void NAME(T *c, ptrdiff_t ldc, ptrdiff_t mr, ptrdiff_t nr, const T *bias,  \
                     int code, T slope, T *a, ptrdiff_t lda)                         \
    {                                                                                \
        if (ldc == nr && (a == NULL || lda == nr)) {                                 \
            if (bias != NULL)                                                        \
                for (ptrdiff_t i = 0; i < mr; ++i)                                   \
                    for (ptrdiff_t j = 0; j < nr; ++j) c[i * nr + j] += bias[j];     \
            if (a != NULL)                                                           \
                FORWARD(code, slope, c, a, mr * nr);                                 \
            return;                                                                  \
        }                                                                            \
        for (ptrdiff_t i = 0; i < mr; ++i) {                                         \
            T *ci = c + i * ldc;                                                     \
            if (bias != NULL)                                                        \
                for (ptrdiff_t j = 0; j < nr; ++j) ci[j] += bias[j];                 \
            if (a != NULL)                                                           \
                FORWARD(code, slope, ci, a + i * lda, nr);                           \
        }                                                                            \
    }

NN_EPILOGUE(nn_epilogue_f32, float, nn_act_forward_f32)
NN_EPILOGUE(nn_epilogue_f64, double, nn_act_forward_f64)

#define NN_ACT_BACKWARD(NAME, T, SIGMOID1, ATTR)                                    \
    ATTR static void NAME(int code, T slope, const T *z, const T *a, const T *ga,         \
                     T *gz, ptrdiff_t n)                                             \
    {                                                                                \
        ptrdiff_t i;                                                                 \
        switch (code) {                                                              \
        case NN_ACT_IDENTITY: if (gz != ga) memmove(gz, ga, (size_t)n * sizeof(T)); break; \
        case NN_ACT_STEP: for (i = 0; i < n; ++i) gz[i] = 0; break;                  \
        case NN_ACT_SIGMOID:                                                         \
            for (i = 0; i < n; ++i) { T v = a[i]; gz[i] = ga[i] * (v * (1 - v)); } break; \
        case NN_ACT_TANH:                                                            \
            for (i = 0; i < n; ++i) { T v = a[i]; gz[i] = ga[i] * (1 - v * v); } break; \
        case NN_ACT_RELU:                                                            \
            for (i = 0; i < n; ++i) { T g = ga[i]; gz[i] = z[i] > 0 ? g : 0; } break; \
        case NN_ACT_LEAKY_RELU:                                                      \
            for (i = 0; i < n; ++i) { T g = ga[i]; gz[i] = z[i] > 0 ? g : slope * g; } break; \
        case NN_ACT_SOFTPLUS: for (i = 0; i < n; ++i) gz[i] = ga[i] * SIGMOID1(z[i]); break; \
        }                                                                            \
    }

NN_ACT_BACKWARD(nn_act_backward_f32, float, nn_sigmoid1_f32, NN_NO_ATTR)
NN_ACT_BACKWARD(nn_act_backward_f64, double, nn_sigmoid1_f64, NN_NO_ATTR)
NN_ACT_BACKWARD(nn_act_backward_short_f32, float, nn_sigmoid1_f32, NN_SHORT_LOOPS)
NN_ACT_BACKWARD(nn_act_backward_short_f64, double, nn_sigmoid1_f64, NN_SHORT_LOOPS)

/* colsum[j] += x[i * ld + j] for i < rows, j < cols: in row order. */
#define NN_COLSUM(NAME, T)                                                           \
    static void NAME(const T *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols, T *colsum) \
    {                                                                                \
        for (ptrdiff_t i = 0; i < rows; ++i)                                         \
            for (ptrdiff_t j = 0; j < cols; ++j)                                     \
                colsum[j] += x[i * ld + j];                                          \
    }

NN_COLSUM(nn_colsum_add_f32, float)
NN_COLSUM(nn_colsum_add_f64, double)

/* softmax of one row of n (n >= 1): a_j = exp(z_j - max z) / sum_k exp(z_k - max z),
 * the sum in column order; a may equal z. Backward: grad_z_j = a_j (grad_a_j - dot),
 * dot = sum_k grad_a_k a_k. */
#define NN_SOFTMAX_ROWS(SUF, T, EXP)                                                 \
    static inline void nn_softmax_row_##SUF(const T *z, T *a, ptrdiff_t n)           \
    {                                                                                \
        T zmax = z[0], s = 0;                                                        \
        for (ptrdiff_t j = 1; j < n; ++j)                                            \
            if (z[j] > zmax) zmax = z[j];                                            \
        for (ptrdiff_t j = 0; j < n; ++j) { a[j] = EXP(z[j] - zmax); s = s + a[j]; } \
        for (ptrdiff_t j = 0; j < n; ++j) a[j] = a[j] / s;                           \
    }                                                                                \
    static inline void nn_softmax_backward_row_##SUF(const T *a, const T *grad_a,    \
                                                     T *grad_z, ptrdiff_t n)         \
    {                                                                                \
        T dot = 0;                                                                   \
        for (ptrdiff_t j = 0; j < n; ++j) dot = dot + grad_a[j] * a[j];              \
        for (ptrdiff_t j = 0; j < n; ++j) grad_z[j] = a[j] * (grad_a[j] - dot);      \
    }

NN_SOFTMAX_ROWS(f32, float, expf)
NN_SOFTMAX_ROWS(f64, double, exp)

#endif
