/* The loss of one row and its gradient row, for the loss kernels (losses.pyx) and
 * the small training step (train_step.h): one copy of the arithmetic, so the two
 * give the same bits.
 *
 * Row i: output o (k,), target t (k,) or label y in [0, k), weight s (s_i).
 * Returns l_i and writes g = s dl_i/do (never read). All arithmetic is in double:
 * float32 values widen on load and each gradient element rounds once on store.
 *
 *   mse      l = 1/2 sum_j (o_j - t_j)^2                 g_j = s (o_j - t_j)
 *   softmax cross-entropy
 *            l = logsumexp(o) - o_y, logsumexp(o) = m + log sum_j exp(o_j - m),
 *            m = max_j o_j                               g_j = s (softmax(o)_j - [j = y])
 *   binary cross-entropy (o: logits)
 *            l = sum_j max(o_j, 0) - o_j t_j + log1p(exp(-|o_j|))
 *                                                        g_j = s (sigmoid(o_j) - t_j)
 *   hinge    l = sum_{j != y} max(0, m_j), m_j = o_j - o_y + 1
 *            g_j = s [m_j > 0] (j != y), g_y = -s #{j != y : m_j > 0}
 *            (a margin of exactly 0 is inactive; a NaN margin goes into l, g_j, g_y)
 *
 * No exp overflows: softmax subtracts the row maximum, binary cross-entropy takes
 * exp(-|o|) and a two-branch sigmoid. e: k doubles of scratch (softmax only).
 */
#ifndef NNCORE_LOSS_ROWS_H
#define NNCORE_LOSS_ROWS_H

#include <math.h>
#include <stddef.h>
#include "codes.h"

#define NN_LOSS_ROWS(SUF, T)                                                         \
    static inline double nn_mse_row_##SUF(ptrdiff_t k, const T *o, const T *t,      \
                                          double s, T *g)                            \
    {                                                                                \
        double d, acc = 0;                                                           \
        for (ptrdiff_t j = 0; j < k; ++j) {                                          \
            d = (double)o[j] - (double)t[j];                                         \
            acc += d * d;                                                            \
            g[j] = (T)(d * s);                                                       \
        }                                                                            \
        return 0.5 * acc;                                                            \
    }                                                                                \
    static inline double nn_softmax_ce_row_##SUF(ptrdiff_t k, const T *o, ptrdiff_t y, \
                                                 double s, T *g, double *e)          \
    {                                                                                \
        double m = o[0], total = 0, oy = o[y];                                       \
        for (ptrdiff_t j = 1; j < k; ++j)                                            \
            if (o[j] > m) m = o[j];                                                  \
        for (ptrdiff_t j = 0; j < k; ++j) {                                          \
            e[j] = exp((double)o[j] - m);     /* in (0, 1], never overflows */       \
            total += e[j];                                                           \
        }                                                                            \
        for (ptrdiff_t j = 0; j < k; ++j)                                            \
            g[j] = (T)((e[j] / total - (j == y ? 1.0 : 0.0)) * s);                   \
        return (m + log(total)) - oy;                                                \
    }                                                                                \
    static inline double nn_bce_row_##SUF(ptrdiff_t k, const T *o, const T *t,      \
                                          double s, T *g)                            \
    {                                                                                \
        double z, tj, e, sig, acc = 0;                                               \
        for (ptrdiff_t j = 0; j < k; ++j) {                                          \
            z = o[j];                                                                \
            tj = t[j];                                                               \
            e = exp(-fabs(z));                /* in (0, 1], never overflows */       \
            acc += ((z > 0 ? z : 0.0) - z * tj) + log1p(e);                          \
            sig = z >= 0 ? 1 / (1 + e) : e / (1 + e);                                \
            g[j] = (T)((sig - tj) * s);                                              \
        }                                                                            \
        return acc;                                                                  \
    }                                                                                \
    static inline double nn_hinge_row_##SUF(ptrdiff_t k, const T *o, ptrdiff_t y,   \
                                            double s, T *g)                          \
    {                                                                                \
        ptrdiff_t active = 0;                                                        \
        double margin, oy = o[y], acc = 0, nan_y = 0;                                \
        for (ptrdiff_t j = 0; j < k; ++j) {                                          \
            if (j == y) continue;                                                    \
            margin = ((double)o[j] - oy) + 1.0;                                      \
            if (margin > 0) {                                                        \
                acc += margin;                                                       \
                active += 1;                                                         \
                g[j] = (T)s;                                                         \
            } else if (margin <= 0) {                                                \
                g[j] = 0;                                                            \
            } else {                          /* NaN */                              \
                acc += margin;                                                       \
                g[j] = (T)margin;                                                    \
                nan_y = margin;                                                      \
            }                                                                        \
        }                                                                            \
        g[y] = (T)(-(double)active * s + nan_y);                                     \
        return acc;                                                                  \
    }                                                                                \
    /* l_i of one row by loss code (the switch runs once a row). */                  \
    static inline double nn_loss_row_##SUF(int code, ptrdiff_t k, const T *o,        \
                                           const T *t, ptrdiff_t y, double s, T *g,  \
                                           double *e)                                \
    {                                                                                \
        switch (code) {                                                              \
        case NN_LOSS_MSE: return nn_mse_row_##SUF(k, o, t, s, g);                    \
        case NN_LOSS_SOFTMAX_CROSS_ENTROPY:                                          \
            return nn_softmax_ce_row_##SUF(k, o, y, s, g, e);                        \
        case NN_LOSS_BINARY_CROSS_ENTROPY: return nn_bce_row_##SUF(k, o, t, s, g);   \
        default: return nn_hinge_row_##SUF(k, o, y, s, g);                           \
        }                                                                            \
    }

NN_LOSS_ROWS(f32, float)
NN_LOSS_ROWS(f64, double)

#endif
