/* The C side of the training step (train.pyx): the structs of a plan, the update of
 * one parameter, and the small step -- a step whose every product has at most
 * TINY_MAX_MADDS multiply-adds, on one thread -- as two C functions, so that a 1-2-1
 * step on 3 points (~100 flops) is not ~20 calls of loop set-up.
 *
 * nn_small_grads, for layers l = 1..L, x_0 = x (n, n_in):
 *   forward   z_l = x_{l-1} W_l^T + b_l,  a_l = f_l(z_l)
 *   loss      value = sum_i s_i l_i(a_L[i]) (+ 1/2 l2 sum_l ||W_l||^2, in double),
 *             g = dL/da_L                                         (loss_rows.h)
 *   backward  gz = g * f_l'(z_l);  grad_b = sum_i gz[i, :];  grad_W = gz^T x_{l-1};
 *             g = gz W_l (l > 1);  then grad_W += l2 W
 *   gmax      max |grad| over every gradient (inf when one is not finite)
 * Returns 0, 1 (the loss is not finite: no gradient formed) or -12 (a label outside
 * [0, k): nothing formed; the Python layer refuses those first).
 * nn_small_apply: the update of every parameter (W decays, b does not), after
 * train.pyx has decided that it goes ahead.
 *
 * Bitwise the team path (grads_par, apply_par): each product element is the tiny
 * GEMM's chain over k in order, MADD(a, b, acc) from acc = 0 (fma in the AVX2+FMA
 * build, a product then a sum in the portable one -- gemm.SIMD_PATH picks, as it
 * picks the tiny GEMM); the bias is added to the finished sum; activations, softmax
 * rows, loss rows and optimizer loops are the kernels' own (elementwise.h,
 * loss_rows.h, optim_loops.h); the bias gradients are summed over rows in order (as
 * products by 1: MADD(1, x, acc) rounds acc + x once, as the sum does).
 */
#ifndef NNCORE_TRAIN_STEP_H
#define NNCORE_TRAIN_STEP_H

#include <math.h>
#include <stddef.h>
#include <string.h>
#include "codes.h"
#include "elementwise.h"
#include "loss_rows.h"
#include "nn_attributes.h"
#include "optim_loops.h"

/* One Dense layer of a training plan (train.pyx's LayerPtrs). */
typedef struct nn_layer {
    ptrdiff_t n_in, n_out;
    int act;
    double slope;
    void *w;
    void *b;            /* NULL: no bias */
    void *gw, *gb;
    void *z, *a;        /* (batch_max, n_out); z == a when f' follows from a */
    void *gz;           /* NULL: formed in place of dL/da */
    void *gx;           /* (batch_max, n_in); unused for layer 1 */
    void *s1w, *s1b;    /* optimizer state: SGD velocity / Adam m (NULL: none) */
    void *s2w, *s2b;    /* Adam v */
} nn_layer_t;

/* The hyperparameters of a step (train.pyx's Hyper). */
typedef struct nn_hyper {
    int optimizer, nesterov, loss;
    double lr, momentum, weight_decay, l2;
    double beta1, beta2, eps, step_size, bc2_sqrt;  /* Adam */
    double alpha;                                   /* RMSprop (eps, momentum shared) */
} nn_hyper_t;

/* The optimizer update of n elements of one parameter p with gradient g and state
 * s1, s2 (optim_loops.h; weight_decay: the optimizer's, or 0 for a bias). LOOPS:
 * empty for the vector loops, _short for the unvectorized ones. */
#define NN_UPDATE(NAME, SUF, T, LOOPS, ATTR)                                         \
    ATTR static void NAME(const nn_hyper_t *h, ptrdiff_t n, T *p, const T *g, T *s1, \
                          T *s2, double weight_decay)                                \
    {                                                                                \
        if (h->optimizer == NN_OPT_SGD)                                              \
            nn_sgd_##SUF##LOOPS(n, p, g, s1, (T)h->lr, (T)h->momentum,               \
                                (T)weight_decay, h->nesterov);                       \
        else if (h->optimizer == NN_OPT_RMSPROP)                                     \
            nn_rmsprop_##SUF##LOOPS(n, p, g, s1, s2, (T)h->lr, (T)h->alpha,          \
                                    (T)(1.0 - h->alpha), (T)h->eps, (T)h->momentum,  \
                                    (T)weight_decay);                                \
        else                                                                         \
            nn_adam_##SUF##LOOPS(n, p, g, s1, s2, (T)h->beta1, (T)(1.0 - h->beta1),  \
                                 (T)h->beta2, (T)(1.0 - h->beta2), (T)h->step_size,  \
                                 (T)h->bc2_sqrt, (T)h->eps, (T)weight_decay);        \
    }

NN_UPDATE(nn_update_f32, f32, float, /* the vector loops */, NN_NO_ATTR)
NN_UPDATE(nn_update_f64, f64, double, /* the vector loops */, NN_NO_ATTR)
NN_UPDATE(nn_update_short_f32, f32, float, _short, NN_SHORT_LOOPS)
NN_UPDATE(nn_update_short_f64, f64, double, _short, NN_SHORT_LOOPS)

/* The most elements of a small step's weight matrix or output row: its scratch
 * (train.pyx's small_step() keeps every layer within it). */
#define NN_SMALL_MAX 256

/* Activations and parameters of at least this many elements take the vector loops
 * (elementwise.h, optim_loops.h), shorter ones the short unvectorized copies: the same
 * operations on each element. */
#define NN_SMALL_RUN 32

#define NN_SMALL_APPLY(SUF, T)                                                       \
    NN_SCALAR_LOOPS static void nn_small_apply_##SUF(const nn_layer_t *layers,       \
                                                     int n_layers, const nn_hyper_t *h) \
    {                                                                                \
        for (int l = 0; l < n_layers; ++l) {                                         \
            const nn_layer_t *L = &layers[l];                                        \
            const ptrdiff_t size = L->n_in * L->n_out;                               \
            if (size < NN_SMALL_RUN)                                                 \
                nn_update_short_##SUF(h, size, (T *)L->w, (const T *)L->gw,          \
                                      (T *)L->s1w, (T *)L->s2w, h->weight_decay);    \
            else                                                                     \
                nn_update_##SUF(h, size, (T *)L->w, (const T *)L->gw, (T *)L->s1w,   \
                                (T *)L->s2w, h->weight_decay);                       \
            if (L->b != NULL && L->n_out < NN_SMALL_RUN)                             \
                nn_update_short_##SUF(h, L->n_out, (T *)L->b, (const T *)L->gb,      \
                                      (T *)L->s1b, (T *)L->s2b, 0.0);                \
            else if (L->b != NULL)                                                   \
                nn_update_##SUF(h, L->n_out, (T *)L->b, (const T *)L->gb,            \
                                (T *)L->s1b, (T *)L->s2b, 0.0);                      \
        }                                                                            \
    }

NN_SMALL_APPLY(f32, float)
NN_SMALL_APPLY(f64, double)

/* The products of a layer, as one primitive on row-major arrays:
 *   c[i, j] = sum_p A(i, p) B[p, j]  (+ bias[j]),  i < m, j < nc, p < k in order,
 * A(i, p) = a[i rs_a + p cs_a], B[p, j] = b[p ldb + j] (rows contiguous). Each
 * element is one chain acc = MADD(A, B, acc) from acc = 0, the bias added to the
 * finished sum. The scalar loops and the AVX2 ones (j in vector lanes, masked at
 * the end of a row; for one column, i in the lanes) do the same operations on each
 * element. */
#define NN_SMALL_PROD_SCALAR(NAME, T, MADD)                                          \
    NN_SCALAR_LOOPS static inline void NAME(ptrdiff_t m, ptrdiff_t nc, ptrdiff_t k,  \
                                            const T *a, ptrdiff_t rs_a, ptrdiff_t cs_a, \
                                            const T *b, ptrdiff_t ldb, const T *bias, \
                                            T *c, ptrdiff_t ldc)                     \
    {                                                                                \
        for (ptrdiff_t i = 0; i < m; ++i)                                            \
            for (ptrdiff_t j = 0; j < nc; ++j) {                                     \
                T acc = 0;                                                           \
                for (ptrdiff_t p = 0; p < k; ++p)                                    \
                    acc = MADD(a[i * rs_a + p * cs_a], b[p * ldb + j], acc);         \
                c[i * ldc + j] = bias != NULL ? acc + bias[j] : acc;                 \
            }                                                                        \
    }

/* The small step's gradient phase (see the top). PROD: the product primitive;
 * wt: W^T for the forward product when W has more than one row and column. */
#define NN_SMALL_GRADS(NAME, SUF, T, PROD, ATTR)                                     \
    ATTR NN_SCALAR_LOOPS static int NAME(const nn_layer_t *layers, int n_layers,      \
                                         int loss, double l2, const T *x, const T *t, \
                                         const ptrdiff_t *y, const double *s,         \
                                         ptrdiff_t n, T *grad_out, double *value,     \
                                         double *gmax)                                \
    {                                                                                \
        const T *inp = x;                                                            \
        const nn_layer_t *L;                                                         \
        ptrdiff_t k = layers[n_layers - 1].n_out;                                    \
        double total = 0, e[NN_SMALL_MAX];                                           \
        T wt[NN_SMALL_MAX];                                                          \
        const T one = 1;                                                             \
        double gm = 0;                                                               \
        for (int l = 0; l < n_layers; ++l) {           /* z = inp W^T + b, a = f(z) */ \
            L = &layers[l];                                                          \
            const ptrdiff_t ni = L->n_in, no = L->n_out;                             \
            const T *w = (const T *)L->w;                                            \
            T *z = (T *)L->z, *a = (T *)L->a;                                        \
            if (ni > 1 && no > 1) {                    /* W^T: rows p, columns j */  \
                for (ptrdiff_t j = 0; j < no; ++j)                                   \
                    for (ptrdiff_t p = 0; p < ni; ++p) wt[p * no + j] = w[j * ni + p]; \
                w = wt;                                /* (W (no, 1) or (1, ni) is its */ \
            }                                          /*  own transpose's layout) */ \
            PROD(n, no, ni, inp, ni, 1, w, no, (const T *)L->b, z, no);              \
            if (L->act == NN_ACT_SOFTMAX)                                            \
                for (ptrdiff_t i = 0; i < n; ++i)                                    \
                    nn_softmax_row_##SUF(z + i * no, a + i * no, no);                \
            else if (n * no < NN_SMALL_RUN)                                          \
                nn_act_forward_short_##SUF(L->act, (T)L->slope, z, a, n * no);       \
            else                                                                     \
                nn_act_forward_##SUF(L->act, (T)L->slope, z, a, n * no);             \
            inp = a;                                                                 \
        }                                                                            \
        if (y != NULL)                                                               \
            for (ptrdiff_t i = 0; i < n; ++i)                                        \
                if (y[i] < 0 || y[i] >= k) return -12;                               \
        for (ptrdiff_t i = 0; i < n; ++i)              /* the loss, rows in order */ \
            total += s[i] * nn_loss_row_##SUF(loss, k, inp + i * k,                  \
                                             t != NULL ? t + i * k : NULL,           \
                                             y != NULL ? y[i] : 0, s[i],             \
                                             grad_out + i * k, e);                   \
        if (l2 != 0) {                                 /* + 1/2 l2 sum ||W||^2 */    \
            double penalty = 0;                                                      \
            for (int l = 0; l < n_layers; ++l) {                                     \
                const T *w = (const T *)layers[l].w;                                 \
                double acc = 0;                                                      \
                for (ptrdiff_t i = 0; i < layers[l].n_in * layers[l].n_out; ++i)     \
                    acc += (double)w[i] * (double)w[i];                              \
                penalty += 0.5 * l2 * acc;                                           \
            }                                                                        \
            total = total + penalty;                                                 \
        }                                                                            \
        *value = total;                                                              \
        if (!isfinite(total)) return 1;                                              \
        const T *g = grad_out;                                                       \
        for (int l = n_layers - 1; l >= 0; --l) {      /* backward */                \
            L = &layers[l];                                                          \
            const ptrdiff_t ni = L->n_in, no = L->n_out;                             \
            T *gz = L->gz != NULL ? (T *)L->gz : (T *)g;                             \
            T *gb = (T *)L->gb;                                                      \
            inp = l == 0 ? x : (const T *)layers[l - 1].a;                           \
            if (L->act == NN_ACT_SOFTMAX)                                            \
                for (ptrdiff_t i = 0; i < n; ++i)                                    \
                    nn_softmax_backward_row_##SUF((const T *)L->a + i * no, g + i * no, \
                                                  gz + i * no, no);                  \
            else if (n * no < NN_SMALL_RUN)                                          \
                nn_act_backward_short_##SUF(L->act, (T)L->slope, (const T *)L->z,    \
                                            (const T *)L->a, g, gz, n * no);         \
            else                                                                     \
                nn_act_backward_##SUF(L->act, (T)L->slope, (const T *)L->z,          \
                                      (const T *)L->a, g, gz, n * no);               \
            if (gb != NULL)              /* grad_b = sum_i 1 gz[i, :], rows in order */ \
                PROD(1, no, n, &one, 0, 0, gz, no, (const T *)NULL, gb, no);         \
            /* grad_W[j, p] = sum_i gz[i, j] inp[i, p] */                            \
            PROD(no, ni, n, gz, 1, no, inp, ni, (const T *)NULL, (T *)L->gw, ni);    \
            if (l > 0) {                       /* g[i, p] = sum_j gz[i, j] W[j, p] */ \
                PROD(n, ni, no, gz, no, 1, (const T *)L->w, ni, (const T *)NULL,     \
                     (T *)L->gx, ni);                                                \
                g = (const T *)L->gx;                                                \
            }                                                                        \
        }                                                                            \
        for (int l = 0; l < n_layers; ++l) {           /* grad_W += l2 W; gmax */    \
            L = &layers[l];                                                          \
            const ptrdiff_t size = L->n_in * L->n_out;                               \
            T *gw = (T *)L->gw;                                                      \
            if (l2 != 0) {                                                           \
                const T *w = (const T *)L->w;                                        \
                for (ptrdiff_t i = 0; i < size; ++i)                                 \
                    gw[i] = (T)((double)gw[i] + l2 * (double)w[i]);                  \
            }                                                                        \
            gm = fmax(gm, nn_absmax_##SUF##_scalar(gw, size));  /* vmath.h: inf when */ \
            if (L->b != NULL)                                   /* one is inf or NaN */ \
                gm = fmax(gm, nn_absmax_##SUF##_scalar((const T *)L->gb, L->n_out));  \
        }                                                                            \
        *gmax = gm;                                                                  \
        return 0;                                                                    \
    }

#define NN_SMALL_MADD_GENERIC(x, y, acc) ((acc) + (x) * (y))
NN_SMALL_PROD_SCALAR(nn_small_prod_f32_generic, float, NN_SMALL_MADD_GENERIC)
NN_SMALL_PROD_SCALAR(nn_small_prod_f64_generic, double, NN_SMALL_MADD_GENERIC)
NN_SMALL_GRADS(nn_small_grads_f32_generic, f32, float, nn_small_prod_f32_generic, NN_NO_ATTR)
NN_SMALL_GRADS(nn_small_grads_f64_generic, f64, double, nn_small_prod_f64_generic, NN_NO_ATTR)

#if NN_VMATH_X86
#define NN_SMALL_AVX2 __attribute__((target("avx2,fma")))

/* The product primitive with j in the lanes of one ymm: VW lanes of type T, vector
 * type V; MASK(r): the first r lanes (r >= 1). */
#define NN_SMALL_PROD_AVX2(NAME, T, V, VW, MASK, SET0, BCAST, LOAD, STORE, FMA, ADD,  \
                           GATHER)                                                   \
    NN_SMALL_AVX2 static inline void NAME(ptrdiff_t m, ptrdiff_t nc, ptrdiff_t k,    \
                                          const T *a, ptrdiff_t rs_a, ptrdiff_t cs_a, \
                                          const T *b, ptrdiff_t ldb, const T *bias,  \
                                          T *c, ptrdiff_t ldc)                       \
    {                                                                                \
        if (nc == 1 && ldc == 1 && m > 1) {            /* one column: i in the lanes */ \
            for (ptrdiff_t i = 0; i < m; i += VW) {                                  \
                const __m256i mask = MASK(m - i < VW ? m - i : VW);                  \
                V acc = SET0();                                                      \
                for (ptrdiff_t p = 0; p < k; ++p) {                                  \
                    const T *ap = a + i * rs_a + p * cs_a;                           \
                    const V av = rs_a == 1 ? LOAD(ap, mask) : GATHER(ap, rs_a, mask); \
                    acc = FMA(av, BCAST(b[p * ldb]), acc);                           \
                }                                                                    \
                if (bias != NULL) acc = ADD(acc, BCAST(bias[0]));                    \
                STORE(c + i, mask, acc);                                             \
            }                                                                        \
            return;                                                                  \
        }                                                                            \
        for (ptrdiff_t j = 0; j < nc; j += VW) {       /* j in the lanes */          \
            const __m256i mask = MASK(nc - j < VW ? nc - j : VW);                    \
            const V bv = bias != NULL ? LOAD(bias + j, mask) : SET0();               \
            for (ptrdiff_t i = 0; i < m; ++i) {                                      \
                V acc = SET0();                                                      \
                const T *ai = a + i * rs_a;                                          \
                for (ptrdiff_t p = 0; p < k; ++p)                                    \
                    acc = FMA(BCAST(ai[p * cs_a]), LOAD(b + p * ldb + j, mask), acc); \
                if (bias != NULL) acc = ADD(acc, bv);                                \
                STORE(c + i * ldc + j, mask, acc);                                   \
            }                                                                        \
        }                                                                            \
    }

/* GATHER(p, stride, mask): lanes l of p[l stride] (the masked-off ones are 0). */
#define NN_GATHER_PS(p, stride, mask)                                                \
    _mm256_mask_i32gather_ps(_mm256_setzero_ps(), (p),                               \
                             _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), \
                                                _mm256_set1_epi32((int)(stride))),   \
                             _mm256_castsi256_ps(mask), 4)
#define NN_GATHER_PD(p, stride, mask)                                                \
    _mm256_mask_i32gather_pd(_mm256_setzero_pd(), (p),                               \
                             _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3),             \
                                             _mm_set1_epi32((int)(stride))),         \
                             _mm256_castsi256_pd(mask), 8)
#define NN_MASK_PS(r) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r)),                \
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define NN_MASK_PD(r) _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)(r)),         \
                                         _mm256_setr_epi64x(0, 1, 2, 3))
NN_SMALL_PROD_AVX2(nn_small_prod_f32_fma, float, __m256, 8, NN_MASK_PS, _mm256_setzero_ps,
                   _mm256_set1_ps, _mm256_maskload_ps, _mm256_maskstore_ps,
                   _mm256_fmadd_ps, _mm256_add_ps, NN_GATHER_PS)
NN_SMALL_PROD_AVX2(nn_small_prod_f64_fma, double, __m256d, 4, NN_MASK_PD,
                   _mm256_setzero_pd, _mm256_set1_pd, _mm256_maskload_pd,
                   _mm256_maskstore_pd, _mm256_fmadd_pd, _mm256_add_pd, NN_GATHER_PD)
NN_SMALL_GRADS(nn_small_grads_f32_fma, f32, float, nn_small_prod_f32_fma, NN_SMALL_AVX2)
NN_SMALL_GRADS(nn_small_grads_f64_fma, f64, double, nn_small_prod_f64_fma, NN_SMALL_AVX2)
#define NN_SMALL_PICK(SUF, fma, ...)                                                 \
    return (fma) ? nn_small_grads_##SUF##_fma(__VA_ARGS__)                           \
                 : nn_small_grads_##SUF##_generic(__VA_ARGS__)
#else
#define NN_SMALL_PICK(SUF, fma, ...) return nn_small_grads_##SUF##_generic(__VA_ARGS__)
#endif

/* nn_small_grads_<SUF>: fma -- the tiny GEMM multiplies-adds with fma (gemm.SIMD_PATH
 * is not "generic") -- picks the build. */
#define NN_SMALL_GRADS_PICKED(SUF, T)                                                \
    static int nn_small_grads_##SUF(int fma, const nn_layer_t *layers, int n_layers, \
                                    int loss, double l2, const T *x, const T *t,     \
                                    const ptrdiff_t *y, const double *s, ptrdiff_t n, \
                                    T *grad_out, double *value, double *gmax)        \
    {                                                                                \
        (void)fma;                                                                   \
        NN_SMALL_PICK(SUF, fma, layers, n_layers, loss, l2, x, t, y, s, n, grad_out, \
                      value, gmax);                                                  \
    }

NN_SMALL_GRADS_PICKED(f32, float)
NN_SMALL_GRADS_PICKED(f64, double)

#endif
