/* Activation derivatives, grad_z = grad_a * f'(z), as plain C loops.
 *
 * Written here rather than in Cython so that each loop is a small function of
 * its own: the compiler if-converts and vectorizes it (with a run-time overlap
 * check, grad_z may be grad_a), which it does not do once Cython has inlined
 * the loop into an OpenMP region. Codes as in _activation_math.pxd; softmax
 * is not elementwise and is not handled here.
 *
 *   identity 1, step 0, sigmoid a (1 - a), tanh 1 - a^2,
 *   relu 1[z > 0], leaky_relu 1 or slope, softplus sigmoid(z)
 */
#ifndef NNCORE_ELEMENTWISE_H
#define NNCORE_ELEMENTWISE_H

#include <stddef.h>
#include <string.h>
#include "vmath.h"

#define NN_ACT_BACKWARD(NAME, T, SIGMOID1)                                          \
    static void NAME(int code, T slope, const T *z, const T *a, const T *ga,         \
                     T *gz, ptrdiff_t n)                                             \
    {                                                                                \
        ptrdiff_t i;                                                                 \
        switch (code) {                                                              \
        case 0: if (gz != ga) memmove(gz, ga, (size_t)n * sizeof(T)); break;         \
        case 1: for (i = 0; i < n; ++i) gz[i] = 0; break;                            \
        case 2: for (i = 0; i < n; ++i) { T v = a[i]; gz[i] = ga[i] * (v * (1 - v)); } break; \
        case 3: for (i = 0; i < n; ++i) { T v = a[i]; gz[i] = ga[i] * (1 - v * v); } break;   \
        case 4: for (i = 0; i < n; ++i) { T g = ga[i]; gz[i] = z[i] > 0 ? g : 0; } break;     \
        case 5: for (i = 0; i < n; ++i) { T g = ga[i]; gz[i] = z[i] > 0 ? g : slope * g; } break; \
        case 6: for (i = 0; i < n; ++i) gz[i] = ga[i] * SIGMOID1(z[i]); break;        \
        }                                                                            \
    }

NN_ACT_BACKWARD(nn_act_backward_f32, float, nn_sigmoid1_f32)
NN_ACT_BACKWARD(nn_act_backward_f64, double, nn_sigmoid1_f64)

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

#endif
