/* GEMM micro-kernels: one MR x NR tile of C from packed panels of A and B.
 *
 *   C[0:MR, 0:NR] = alpha * sum_p a(i, p) * b[p*rs_b + j] + beta * C
 *
 * a: A panel, element (i, p) at a[i*rs_a + p*cs_a]: packed (rs_a = 1,
 *    cs_a = MR), or read in place from a row-major (cs_a = 1) or
 *    column-major (rs_a = 1) operand when packing would not pay
 * b: B panel, k rows of NR values, row p at b + p*rs_b: packed (rs_b = NR),
 *    or read in place from a row-major operand
 * c: row-major tile, row stride ldc. beta == 0: C is written, never read.
 *
 * Each C element is one accumulation chain over p = 0..k-1 in order, so the
 * result does not depend on where the tile sits or which thread computes it.
 *
 * Three implementations per dtype share MR/NR and the packed layout: a portable
 * C loop, an AVX2+FMA kernel and an AVX-512 one (one zmm per row, the same fma
 * chains, so the AVX2 bits; with a two-panel twin that keeps 12 zmm chains in
 * flight) compiled with target attributes (the rest of the build stays baseline
 * x86-64). nn_ukr_select() picks one at import.
 */
#ifndef NNCORE_MICROKERNEL_H
#define NNCORE_MICROKERNEL_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nn_attributes.h"

#define NN_MR 6
#define NN_NR_F32 16
#define NN_NR_F64 8

typedef void (*nn_sukr_t)(ptrdiff_t k, const float *a, ptrdiff_t rs_a,
                          ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b, float *c,
                          ptrdiff_t ldc, float alpha, float beta);
typedef void (*nn_dukr_t)(ptrdiff_t k, const double *a, ptrdiff_t rs_a,
                          ptrdiff_t cs_a, const double *b, ptrdiff_t rs_b, double *c,
                          ptrdiff_t ldc, double alpha, double beta);

/* Two panels at once (b1: the panel right of b0); NULL where the one-panel kernel
 * already fills the FMA units. */
typedef void (*nn_sukr2_t)(ptrdiff_t k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                           const float *b0, const float *b1, ptrdiff_t rs_b, float *c,
                           ptrdiff_t ldc, float alpha, float beta);
typedef void (*nn_dukr2_t)(ptrdiff_t k, const double *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                           const double *b0, const double *b1, ptrdiff_t rs_b, double *c,
                           ptrdiff_t ldc, double alpha, double beta);

/* Edge tiles written in place (mr <= MR rows, nr <= NR columns of one panel, or
 * mr rows of two full panels when b1 is not NULL); NULL: through a padded tile. */
typedef void (*nn_sedge_t)(ptrdiff_t mr, ptrdiff_t nr, ptrdiff_t k, const float *a,
                           ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b0, const float *b1,
                           ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha, float beta);
typedef void (*nn_dedge_t)(ptrdiff_t mr, ptrdiff_t nr, ptrdiff_t k, const double *a,
                           ptrdiff_t rs_a, ptrdiff_t cs_a, const double *b0,
                           const double *b1, ptrdiff_t rs_b, double *c, ptrdiff_t ldc,
                           double alpha, double beta);

/* ---- portable kernels ---------------------------------------------------- */

#define NN_GENERIC_UKR(NAME, T, NR)                                            \
    static void NAME(ptrdiff_t k, const T *a, ptrdiff_t rs_a, ptrdiff_t cs_a,  \
                     const T *b, ptrdiff_t rs_b, T *c, ptrdiff_t ldc, T alpha,  \
                     T beta)                                                   \
    {                                                                          \
        T ab[NN_MR * NR];                                                      \
        memset(ab, 0, sizeof(ab));                                             \
        for (ptrdiff_t p = 0; p < k; ++p) {                                    \
            for (int i = 0; i < NN_MR; ++i) {                                  \
                const T ai = a[i * rs_a + p * cs_a];                           \
                for (int j = 0; j < NR; ++j)                                   \
                    ab[i * NR + j] += ai * b[p * rs_b + j];                    \
            }                                                                  \
        }                                                                      \
        for (int i = 0; i < NN_MR; ++i) {                                      \
            T *ci = c + i * ldc;                                               \
            if (beta == (T)0) {                                                \
                for (int j = 0; j < NR; ++j) ci[j] = alpha * ab[i * NR + j];   \
            } else {                                                           \
                for (int j = 0; j < NR; ++j)                                   \
                    ci[j] = alpha * ab[i * NR + j] + beta * ci[j];             \
            }                                                                  \
        }                                                                      \
    }

NN_GENERIC_UKR(nn_sgemm_ukr_generic, float, NN_NR_F32)
NN_GENERIC_UKR(nn_dgemm_ukr_generic, double, NN_NR_F64)


/* ---- tiny products --------------------------------------------------------
 * C[0:m, 0:n] = A @ B for products far smaller than one micro-tile's work
 * (a 1-2-1 network's layers): no packing, no padded tile. Each C element is the
 * accumulation chain of the micro-kernel -- 0, then acc = acc + a*b (portable) or
 * fma(a, b, acc) (AVX2+FMA) over p = 0..k-1 in order -- so the result is bitwise
 * the micro-kernel's (for one k block, alpha 1, beta 0). */

typedef void (*nn_stiny_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const float *a,
                           ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b, ptrdiff_t rs_b,
                           ptrdiff_t cs_b, float *c, ptrdiff_t ldc);
typedef void (*nn_dtiny_t)(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, const double *a,
                           ptrdiff_t rs_a, ptrdiff_t cs_a, const double *b, ptrdiff_t rs_b,
                           ptrdiff_t cs_b, double *c, ptrdiff_t ldc);

/* The loops of a tiny product run as written (NN_SCALAR_LOOPS; W3's products:
 * ~720 -> ~620 instructions a step). An outer product (k = 1) with rows of at least
 * 8 is the exception: its rows vectorize (a 1-16-1 network on 16 points lost ~5%
 * without it; not inlined, so that it keeps its vector loop). */

/* k = 1: C = a b^T, chains of one */
#define NN_TINY_OUTER(T, MADD)                                                 \
    for (ptrdiff_t i = 0; i < m; ++i)                                          \
        for (ptrdiff_t j = 0; j < n; ++j)                                      \
            c[i * ldc + j] = MADD(a[i * rs_a], b[j * cs_b], (T)0)

#define NN_TINY(NAME, T, MADD, ATTR)                                           \
    ATTR __attribute__((noinline)) static void                                 \
    NAME##_outer(ptrdiff_t m, ptrdiff_t n, const T *a, ptrdiff_t rs_a,         \
                 const T *b, ptrdiff_t cs_b, T *c, ptrdiff_t ldc)              \
    {                                                                          \
        NN_TINY_OUTER(T, MADD);                                                \
    }                                                                          \
    ATTR NN_SCALAR_LOOPS static void NAME(ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, \
                     const T *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const T *b,   \
                     ptrdiff_t rs_b, ptrdiff_t cs_b, T *c, ptrdiff_t ldc)      \
    {                                                                          \
        if (k == 1) {                                                          \
            if (n >= 8)                                                        \
                NAME##_outer(m, n, a, rs_a, b, cs_b, c, ldc);                  \
            else                                                               \
                NN_TINY_OUTER(T, MADD);                                        \
            return;                                                            \
        }                                                                      \
        for (ptrdiff_t i = 0; i < m; ++i) {                                    \
            const T *ai = a + i * rs_a;                                        \
            for (ptrdiff_t j = 0; j < n; ++j) {                                \
                const T *ap = ai, *bp = b + j * cs_b;                          \
                T acc = 0;                                                     \
                for (ptrdiff_t p = 0; p < k; ++p, ap += cs_a, bp += rs_b)      \
                    acc = MADD(*ap, *bp, acc);                                 \
                c[i * ldc + j] = acc;                                          \
            }                                                                  \
        }                                                                      \
    }

#define NN_NO_TARGET
#define NN_MADD_GENERIC(x, y, acc) ((acc) + (x) * (y))
NN_TINY(nn_sgemm_tiny_generic, float, NN_MADD_GENERIC, NN_NO_TARGET)
NN_TINY(nn_dgemm_tiny_generic, double, NN_MADD_GENERIC, NN_NO_TARGET)


/* ---- packing a transposed B panel ------------------------------------------
 * One full NR-column panel of op(B) = M.T, M row-major: column j of the panel
 * is row j of M (w + j*ldw, unit stride in p). buf[p*NR + j] = w[j*ldw + p]. */

typedef void (*nn_spack_t)(ptrdiff_t kc, const float *w, ptrdiff_t ldw, float *buf);
typedef void (*nn_dpack_t)(ptrdiff_t kc, const double *w, ptrdiff_t ldw, double *buf);

#define NN_GENERIC_PACK_BT(NAME, T, NR)                                        \
    static void NAME(ptrdiff_t kc, const T *w, ptrdiff_t ldw, T *buf)          \
    {                                                                          \
        for (int j = 0; j < NR; ++j)                                           \
            for (ptrdiff_t p = 0; p < kc; ++p)                                 \
                buf[p * NR + j] = w[j * ldw + p];                              \
    }

NN_GENERIC_PACK_BT(nn_spack_bt_generic, float, NN_NR_F32)
NN_GENERIC_PACK_BT(nn_dpack_bt_generic, double, NN_NR_F64)

/* ---- AVX2 + FMA kernels -------------------------------------------------- */

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define NN_HAVE_X86_KERNELS 1
#include <immintrin.h>

#define NN_TARGET_AVX2 __attribute__((target("avx2,fma")))

/* 6 x 16 floats: 12 ymm accumulators, two B vectors, one broadcast of A. */
NN_TARGET_AVX2 static void
nn_sgemm_ukr_avx2(ptrdiff_t k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                  const float *b, ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha,
                  float beta)
{
    const float *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a;
    const float *a3 = a + 3 * rs_a, *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;
    ptrdiff_t off = 0;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#pragma GCC unroll 4
    for (ptrdiff_t p = 0; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(b);
        const __m256 b1 = _mm256_loadu_ps(b + 8);
        __m256 ai;
        ai = _mm256_broadcast_ss(a0 + off);
        c00 = _mm256_fmadd_ps(ai, b0, c00); c01 = _mm256_fmadd_ps(ai, b1, c01);
        ai = _mm256_broadcast_ss(a1 + off);
        c10 = _mm256_fmadd_ps(ai, b0, c10); c11 = _mm256_fmadd_ps(ai, b1, c11);
        ai = _mm256_broadcast_ss(a2 + off);
        c20 = _mm256_fmadd_ps(ai, b0, c20); c21 = _mm256_fmadd_ps(ai, b1, c21);
        ai = _mm256_broadcast_ss(a3 + off);
        c30 = _mm256_fmadd_ps(ai, b0, c30); c31 = _mm256_fmadd_ps(ai, b1, c31);
        ai = _mm256_broadcast_ss(a4 + off);
        c40 = _mm256_fmadd_ps(ai, b0, c40); c41 = _mm256_fmadd_ps(ai, b1, c41);
        ai = _mm256_broadcast_ss(a5 + off);
        c50 = _mm256_fmadd_ps(ai, b0, c50); c51 = _mm256_fmadd_ps(ai, b1, c51);
        off += cs_a;
        b += rs_b;
    }
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 vb = _mm256_set1_ps(beta);
    const int scale = alpha != 1.0f;
#define NN_S_STORE(ROW, X0, X1)                                               \
    do {                                                                       \
        float *ci = c + (ROW) * ldc;                                           \
        __m256 x0 = (X0), x1 = (X1);                                           \
        if (scale) { x0 = _mm256_mul_ps(va, x0); x1 = _mm256_mul_ps(va, x1); } \
        if (beta != 0.0f) {                                                    \
            x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), x0);                 \
            x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8), x1);             \
        }                                                                      \
        _mm256_storeu_ps(ci, x0);                                              \
        _mm256_storeu_ps(ci + 8, x1);                                          \
    } while (0)
    NN_S_STORE(0, c00, c01); NN_S_STORE(1, c10, c11); NN_S_STORE(2, c20, c21);
    NN_S_STORE(3, c30, c31); NN_S_STORE(4, c40, c41); NN_S_STORE(5, c50, c51);
#undef NN_S_STORE
}

/* 6 x 8 doubles: the same register plan with 4-wide vectors. */
NN_TARGET_AVX2 static void
nn_dgemm_ukr_avx2(ptrdiff_t k, const double *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                  const double *b, ptrdiff_t rs_b, double *c, ptrdiff_t ldc, double alpha,
                  double beta)
{
    const double *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a;
    const double *a3 = a + 3 * rs_a, *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;
    ptrdiff_t off = 0;
    __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
    __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
    __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
    __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
    __m256d c40 = _mm256_setzero_pd(), c41 = _mm256_setzero_pd();
    __m256d c50 = _mm256_setzero_pd(), c51 = _mm256_setzero_pd();
#pragma GCC unroll 4
    for (ptrdiff_t p = 0; p < k; ++p) {
        const __m256d b0 = _mm256_loadu_pd(b);
        const __m256d b1 = _mm256_loadu_pd(b + 4);
        __m256d ai;
        ai = _mm256_broadcast_sd(a0 + off);
        c00 = _mm256_fmadd_pd(ai, b0, c00); c01 = _mm256_fmadd_pd(ai, b1, c01);
        ai = _mm256_broadcast_sd(a1 + off);
        c10 = _mm256_fmadd_pd(ai, b0, c10); c11 = _mm256_fmadd_pd(ai, b1, c11);
        ai = _mm256_broadcast_sd(a2 + off);
        c20 = _mm256_fmadd_pd(ai, b0, c20); c21 = _mm256_fmadd_pd(ai, b1, c21);
        ai = _mm256_broadcast_sd(a3 + off);
        c30 = _mm256_fmadd_pd(ai, b0, c30); c31 = _mm256_fmadd_pd(ai, b1, c31);
        ai = _mm256_broadcast_sd(a4 + off);
        c40 = _mm256_fmadd_pd(ai, b0, c40); c41 = _mm256_fmadd_pd(ai, b1, c41);
        ai = _mm256_broadcast_sd(a5 + off);
        c50 = _mm256_fmadd_pd(ai, b0, c50); c51 = _mm256_fmadd_pd(ai, b1, c51);
        off += cs_a;
        b += rs_b;
    }
    const __m256d va = _mm256_set1_pd(alpha);
    const __m256d vb = _mm256_set1_pd(beta);
    const int scale = alpha != 1.0;
#define NN_D_STORE(ROW, X0, X1)                                               \
    do {                                                                       \
        double *ci = c + (ROW) * ldc;                                          \
        __m256d x0 = (X0), x1 = (X1);                                          \
        if (scale) { x0 = _mm256_mul_pd(va, x0); x1 = _mm256_mul_pd(va, x1); } \
        if (beta != 0.0) {                                                     \
            x0 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(ci), x0);                 \
            x1 = _mm256_fmadd_pd(vb, _mm256_loadu_pd(ci + 4), x1);             \
        }                                                                      \
        _mm256_storeu_pd(ci, x0);                                              \
        _mm256_storeu_pd(ci + 4, x1);                                          \
    } while (0)
    NN_D_STORE(0, c00, c01); NN_D_STORE(1, c10, c11); NN_D_STORE(2, c20, c21);
    NN_D_STORE(3, c30, c31); NN_D_STORE(4, c40, c41); NN_D_STORE(5, c50, c51);
#undef NN_D_STORE
}


/* One rounding, as _mm_fmadd_ss; the builtin compiles to a bare vfmadd (the intrinsic
 * also zeroed the upper lanes of the accumulator each step). */
NN_TARGET_AVX2 static inline float nn_fma_f32(float x, float y, float acc)
{
    return __builtin_fmaf(x, y, acc);
}

NN_TARGET_AVX2 static inline double nn_fma_f64(double x, double y, double acc)
{
    return __builtin_fma(x, y, acc);
}

#define NN_TINY_AVX2(NAME, T, FMA) NN_TINY(NAME, T, FMA, NN_TARGET_AVX2)
NN_TINY_AVX2(nn_sgemm_tiny_avx2, float, nn_fma_f32)
NN_TINY_AVX2(nn_dgemm_tiny_avx2, double, nn_fma_f64)


/* ---- AVX-512 kernels: the same 6 x NR tile, one zmm per row ------------------
 * Each element is the same fma chain over p as in the AVX2 kernels (and the same
 * alpha/beta operations), so the results are bitwise the AVX2 kernels'. */
#define NN_TARGET_AVX512 __attribute__((target("avx512f,fma")))

NN_TARGET_AVX512 static void
nn_sgemm_ukr_avx512(ptrdiff_t k, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                    const float *b, ptrdiff_t rs_b, float *c, ptrdiff_t ldc, float alpha,
                    float beta)
{
    const float *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a;
    const float *a3 = a + 3 * rs_a, *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;
    ptrdiff_t off = 0;
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps();
    __m512 c3 = _mm512_setzero_ps(), c4 = _mm512_setzero_ps(), c5 = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (ptrdiff_t p = 0; p < k; ++p) {
        const __m512 b0 = _mm512_loadu_ps(b);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a0[off]), b0, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a1[off]), b0, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a2[off]), b0, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a3[off]), b0, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a4[off]), b0, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a5[off]), b0, c5);
        off += cs_a;
        b += rs_b;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const int scale = alpha != 1.0f;
#define NN_S512_STORE(ROW, X)                                                  \
    do {                                                                       \
        float *ci = c + (ROW) * ldc;                                           \
        __m512 x = (X);                                                        \
        if (scale) x = _mm512_mul_ps(va, x);                                   \
        if (beta != 0.0f) x = _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), x);     \
        _mm512_storeu_ps(ci, x);                                               \
    } while (0)
    NN_S512_STORE(0, c0); NN_S512_STORE(1, c1); NN_S512_STORE(2, c2);
    NN_S512_STORE(3, c3); NN_S512_STORE(4, c4); NN_S512_STORE(5, c5);
#undef NN_S512_STORE
}

NN_TARGET_AVX512 static void
nn_dgemm_ukr_avx512(ptrdiff_t k, const double *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                    const double *b, ptrdiff_t rs_b, double *c, ptrdiff_t ldc, double alpha,
                    double beta)
{
    const double *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a;
    const double *a3 = a + 3 * rs_a, *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;
    ptrdiff_t off = 0;
    __m512d c0 = _mm512_setzero_pd(), c1 = _mm512_setzero_pd(), c2 = _mm512_setzero_pd();
    __m512d c3 = _mm512_setzero_pd(), c4 = _mm512_setzero_pd(), c5 = _mm512_setzero_pd();
#pragma GCC unroll 4
    for (ptrdiff_t p = 0; p < k; ++p) {
        const __m512d b0 = _mm512_loadu_pd(b);
        c0 = _mm512_fmadd_pd(_mm512_set1_pd(a0[off]), b0, c0);
        c1 = _mm512_fmadd_pd(_mm512_set1_pd(a1[off]), b0, c1);
        c2 = _mm512_fmadd_pd(_mm512_set1_pd(a2[off]), b0, c2);
        c3 = _mm512_fmadd_pd(_mm512_set1_pd(a3[off]), b0, c3);
        c4 = _mm512_fmadd_pd(_mm512_set1_pd(a4[off]), b0, c4);
        c5 = _mm512_fmadd_pd(_mm512_set1_pd(a5[off]), b0, c5);
        off += cs_a;
        b += rs_b;
    }
    const __m512d va = _mm512_set1_pd(alpha), vb = _mm512_set1_pd(beta);
    const int scale = alpha != 1.0;
#define NN_D512_STORE(ROW, X)                                                  \
    do {                                                                       \
        double *ci = c + (ROW) * ldc;                                          \
        __m512d x = (X);                                                       \
        if (scale) x = _mm512_mul_pd(va, x);                                   \
        if (beta != 0.0) x = _mm512_fmadd_pd(vb, _mm512_loadu_pd(ci), x);      \
        _mm512_storeu_pd(ci, x);                                               \
    } while (0)
    NN_D512_STORE(0, c0); NN_D512_STORE(1, c1); NN_D512_STORE(2, c2);
    NN_D512_STORE(3, c3); NN_D512_STORE(4, c4); NN_D512_STORE(5, c5);
#undef NN_D512_STORE
}

/* Two adjacent NR panels per call: a 6 x 2NR tile in 12 zmm accumulators. One zmm
 * per row holds 6 chains, fewer than the FMA units' latency x issue width (4 x 2 on
 * Zen 5) needs to stay busy; 12 independent chains fill them. b1 is the panel right
 * of b0 (packed: the next panel; in place: b0 + NR), with the same row stride. Each
 * element is still the one fma chain over p, so the bits are those of two calls of
 * the one-panel kernel. */
#define NN_UKR2_AVX512(NAME, T, V, LOAD, SET1, FMA, ZERO, MUL, STORE, NRV)            \
    NN_TARGET_AVX512 static void                                                     \
    NAME(ptrdiff_t k, const T *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const T *b0,       \
         const T *b1, ptrdiff_t rs_b, T *c, ptrdiff_t ldc, T alpha, T beta)          \
    {                                                                                \
        const T *a0 = a, *a1 = a + rs_a, *a2 = a + 2 * rs_a;                         \
        const T *a3 = a + 3 * rs_a, *a4 = a + 4 * rs_a, *a5 = a + 5 * rs_a;          \
        ptrdiff_t off = 0;                                                           \
        V c00 = ZERO(), c01 = ZERO(), c10 = ZERO(), c11 = ZERO();                    \
        V c20 = ZERO(), c21 = ZERO(), c30 = ZERO(), c31 = ZERO();                    \
        V c40 = ZERO(), c41 = ZERO(), c50 = ZERO(), c51 = ZERO();                    \
        _Pragma("GCC unroll 2")                                                      \
        for (ptrdiff_t p = 0; p < k; ++p) {                                          \
            const V x0 = LOAD(b0), x1 = LOAD(b1);                                    \
            V av = SET1(a0[off]);                                                    \
            c00 = FMA(av, x0, c00); c01 = FMA(av, x1, c01);                          \
            av = SET1(a1[off]);                                                      \
            c10 = FMA(av, x0, c10); c11 = FMA(av, x1, c11);                          \
            av = SET1(a2[off]);                                                      \
            c20 = FMA(av, x0, c20); c21 = FMA(av, x1, c21);                          \
            av = SET1(a3[off]);                                                      \
            c30 = FMA(av, x0, c30); c31 = FMA(av, x1, c31);                          \
            av = SET1(a4[off]);                                                      \
            c40 = FMA(av, x0, c40); c41 = FMA(av, x1, c41);                          \
            av = SET1(a5[off]);                                                      \
            c50 = FMA(av, x0, c50); c51 = FMA(av, x1, c51);                          \
            off += cs_a;                                                             \
            b0 += rs_b;                                                              \
            b1 += rs_b;                                                              \
        }                                                                            \
        const V va = SET1(alpha), vb = SET1(beta);                                   \
        const int scale = alpha != (T)1;                                             \
        V row[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};    \
        for (int i = 0; i < 12; ++i) {                                               \
            T *ci = c + (i / 2) * ldc + (i % 2) * NRV;                               \
            V x = row[i];                                                            \
            if (scale) x = MUL(va, x);                                               \
            if (beta != (T)0) x = FMA(vb, LOAD(ci), x);                              \
            STORE(ci, x);                                                            \
        }                                                                            \
    }

NN_UKR2_AVX512(nn_sgemm_ukr2_avx512, float, __m512, _mm512_loadu_ps, _mm512_set1_ps,
               _mm512_fmadd_ps, _mm512_setzero_ps, _mm512_mul_ps, _mm512_storeu_ps,
               NN_NR_F32)
NN_UKR2_AVX512(nn_dgemm_ukr2_avx512, double, __m512d, _mm512_loadu_pd, _mm512_set1_pd,
               _mm512_fmadd_pd, _mm512_setzero_pd, _mm512_mul_pd, _mm512_storeu_pd,
               NN_NR_F64)

/* Edge tiles: mr <= MR rows of one panel (nr <= NR columns, masked) or of two full
 * panels (b1 != NULL), written straight into C instead of through a padded tile
 * and a copy. Each element is the same fma chain over p; the store rounds as the
 * copy of a padded tile does (macro_kernel): alpha * acc, then + beta * c when beta
 * is not 0, each product and the sum rounded on its own (no fma). */
/* x rounded as it stands: the compiler may not fuse the product into a later add
 * (GCC contracts mul + add intrinsics into an fma under its default -ffp-contract=fast,
 * which would round once where the padded-tile copy of the AVX2 path rounds twice). */
#define NN_ROUNDED(x) __asm__("" : "+v"(x))

/* NAME##_rows with MR_ rows and the panel count (b1: two panels) as constants. */
#define NN_EDGE_CASE(NAME, MR_)                                                      \
    do {                                                                             \
        if (b1 != NULL)                                                              \
            NAME##_rows(MR_, 1, nr, k, a, rs_a, cs_a, b0, b1, rs_b, c, ldc, alpha, beta); \
        else                                                                         \
            NAME##_rows(MR_, 0, nr, k, a, rs_a, cs_a, b0, b1, rs_b, c, ldc, alpha, beta); \
    } while (0)

#define NN_EDGE_AVX512(NAME, T, V, M, LOAD, MLOAD, SET1, FMA, ZERO, MUL, ADD, MSTORE, MASK, NRV) \
    /* MR_, TWO: constants at every call below, so the row loops unroll into       \
     * registers with no test in the p loop (mr and b1 != NULL read at run time     \
     * cost a branch per row and step: edge tiles ran at ~60% of the pair kernel). */ \
    NN_TARGET_AVX512 static inline __attribute__((always_inline)) void              \
    NAME##_rows(const int MR_, const int TWO, ptrdiff_t nr, ptrdiff_t k, const T *a, \
                ptrdiff_t rs_a, ptrdiff_t cs_a, const T *b0, const T *b1,           \
                ptrdiff_t rs_b, T *c, ptrdiff_t ldc, T alpha, T beta)                \
    {                                                                                \
        V acc[NN_MR][2];                                                             \
        const M mask = MASK(nr);                                                     \
        _Pragma("GCC unroll 6")                                                      \
        for (int i = 0; i < MR_; ++i) { acc[i][0] = ZERO(); acc[i][1] = ZERO(); }    \
        ptrdiff_t off = 0;                                                           \
        for (ptrdiff_t p = 0; p < k; ++p) {                                          \
            const V x0 = LOAD(b0), x1 = TWO ? LOAD(b1) : ZERO();                     \
            _Pragma("GCC unroll 6")                                                  \
            for (int i = 0; i < MR_; ++i) {                                          \
                const V av = SET1(a[i * rs_a + off]);                                \
                acc[i][0] = FMA(av, x0, acc[i][0]);                                  \
                if (TWO) acc[i][1] = FMA(av, x1, acc[i][1]);                         \
            }                                                                        \
            off += cs_a;                                                             \
            b0 += rs_b;                                                              \
            if (TWO) b1 += rs_b;                                                     \
        }                                                                            \
        const V va = SET1(alpha), vb = SET1(beta);                                   \
        _Pragma("GCC unroll 6")                                                      \
        for (int i = 0; i < MR_; ++i)                                                \
            for (int h = 0; h < 1 + TWO; ++h) {                                      \
                T *ci = c + i * ldc + h * NRV;                                       \
                const M mh = h ? MASK(NRV) : mask;                                   \
                V x = MUL(va, acc[i][h]);                                            \
                if (beta != (T)0) {                                                  \
                    V y = MUL(vb, MLOAD(ZERO(), mh, ci));                            \
                    NN_ROUNDED(x); NN_ROUNDED(y);                                    \
                    x = ADD(x, y);                                                   \
                }                                                                    \
                MSTORE(ci, mh, x);                                                   \
            }                                                                        \
    }                                                                                \
    NN_TARGET_AVX512 static void                                                     \
    NAME(ptrdiff_t mr, ptrdiff_t nr, ptrdiff_t k, const T *a, ptrdiff_t rs_a,        \
         ptrdiff_t cs_a, const T *b0, const T *b1, ptrdiff_t rs_b, T *c, ptrdiff_t ldc, \
         T alpha, T beta)                                                            \
    {                                                                                \
        switch (mr) {                                                                \
        case 1: NN_EDGE_CASE(NAME, 1); break;                                        \
        case 2: NN_EDGE_CASE(NAME, 2); break;                                        \
        case 3: NN_EDGE_CASE(NAME, 3); break;                                        \
        case 4: NN_EDGE_CASE(NAME, 4); break;                                        \
        case 5: NN_EDGE_CASE(NAME, 5); break;                                        \
        default: NN_EDGE_CASE(NAME, 6);                                              \
        }                                                                            \
    }

#define NN_MASK16(n) ((__mmask16)((1u << (n)) - 1u))
#define NN_MASK8(n) ((__mmask8)((1u << (n)) - 1u))
NN_EDGE_AVX512(nn_sgemm_edge_avx512, float, __m512, __mmask16, _mm512_loadu_ps,
               _mm512_mask_loadu_ps, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_setzero_ps,
               _mm512_mul_ps, _mm512_add_ps, _mm512_mask_storeu_ps, NN_MASK16, NN_NR_F32)
NN_EDGE_AVX512(nn_dgemm_edge_avx512, double, __m512d, __mmask8, _mm512_loadu_pd,
               _mm512_mask_loadu_pd, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_setzero_pd,
               _mm512_mul_pd, _mm512_add_pd, _mm512_mask_storeu_pd, NN_MASK8, NN_NR_F64)

static int nn_cpu_has_avx512f(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}


/* Transposed packing in 8 x 8 (float) and 4 x 4 (double) register transposes. */
NN_TARGET_AVX2 static void
nn_spack_bt_avx2(ptrdiff_t kc, const float *w, ptrdiff_t ldw, float *buf)
{
    ptrdiff_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        for (int half = 0; half < 2; ++half) {
            const float *r = w + (half * 8) * ldw + p;
            __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + ldw);
            __m256 r2 = _mm256_loadu_ps(r + 2 * ldw), r3 = _mm256_loadu_ps(r + 3 * ldw);
            __m256 r4 = _mm256_loadu_ps(r + 4 * ldw), r5 = _mm256_loadu_ps(r + 5 * ldw);
            __m256 r6 = _mm256_loadu_ps(r + 6 * ldw), r7 = _mm256_loadu_ps(r + 7 * ldw);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = buf + p * NN_NR_F32 + half * 8;
            _mm256_storeu_ps(o + 0 * NN_NR_F32, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(o + 1 * NN_NR_F32, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(o + 2 * NN_NR_F32, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(o + 3 * NN_NR_F32, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(o + 4 * NN_NR_F32, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(o + 5 * NN_NR_F32, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(o + 6 * NN_NR_F32, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(o + 7 * NN_NR_F32, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    for (; p < kc; ++p)
        for (int j = 0; j < NN_NR_F32; ++j)
            buf[p * NN_NR_F32 + j] = w[j * ldw + p];
}

NN_TARGET_AVX2 static void
nn_dpack_bt_avx2(ptrdiff_t kc, const double *w, ptrdiff_t ldw, double *buf)
{
    ptrdiff_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        for (int half = 0; half < 2; ++half) {
            const double *r = w + (half * 4) * ldw + p;
            __m256d r0 = _mm256_loadu_pd(r), r1 = _mm256_loadu_pd(r + ldw);
            __m256d r2 = _mm256_loadu_pd(r + 2 * ldw), r3 = _mm256_loadu_pd(r + 3 * ldw);
            __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
            __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double *o = buf + p * NN_NR_F64 + half * 4;
            _mm256_storeu_pd(o + 0 * NN_NR_F64, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(o + 1 * NN_NR_F64, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(o + 2 * NN_NR_F64, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(o + 3 * NN_NR_F64, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    }
    for (; p < kc; ++p)
        for (int j = 0; j < NN_NR_F64; ++j)
            buf[p * NN_NR_F64 + j] = w[j * ldw + p];
}

static int nn_cpu_has_avx2_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define NN_HAVE_X86_KERNELS 0
static int nn_cpu_has_avx2_fma(void) { return 0; }
#endif

/* ---- dispatch -------------------------------------------------------------
 * Chosen once when the module loads: AVX-512 where the CPU has it (measured on
 * this project's Zen 5 VM, 1 thread, float32: 256x1024x784 101 -> 145 GFLOP/s,
 * 128x128x784 105 -> 144; with the two-panel kernel, CPU-time quartile of 40 calls,
 * 256x1024x784 131 -> 169, 1024x784x256 153 -> 202; with both it and the in-place
 * edge kernel, 1-thread fits in CPU time: W1 235-273k -> 350k samples/s, W2
 * 0.87-1.10M -> 1.31-1.33M, W4 12.3-13.7k -> 17.7-17.9k), else AVX2+FMA, else
 * portable. NNCORE_SIMD=avx2 or
 * NNCORE_SIMD=generic forces the narrower kernels (to test them on this machine).
 * Returns the name of the path taken. */

static nn_sukr_t nn_sgemm_ukr = nn_sgemm_ukr_generic;
static nn_dukr_t nn_dgemm_ukr = nn_dgemm_ukr_generic;
static nn_spack_t nn_spack_bt = nn_spack_bt_generic;
static nn_dpack_t nn_dpack_bt = nn_dpack_bt_generic;
static nn_stiny_t nn_sgemm_tiny = nn_sgemm_tiny_generic;
static nn_dtiny_t nn_dgemm_tiny = nn_dgemm_tiny_generic;
static nn_sukr2_t nn_sgemm_ukr2 = NULL;
static nn_dukr2_t nn_dgemm_ukr2 = NULL;
static nn_sedge_t nn_sgemm_edge = NULL;
static nn_dedge_t nn_dgemm_edge = NULL;

static const char *nn_ukr_select(void)
{
    const char *want = getenv("NNCORE_SIMD");
    int generic = want != NULL && strcmp(want, "generic") == 0;
#if NN_HAVE_X86_KERNELS
    int avx2_only = want != NULL && strcmp(want, "avx2") == 0;
    if (!generic && !avx2_only && nn_cpu_has_avx2_fma() && nn_cpu_has_avx512f()) {
        nn_sgemm_ukr = nn_sgemm_ukr_avx512;
        nn_dgemm_ukr = nn_dgemm_ukr_avx512;
        nn_spack_bt = nn_spack_bt_avx2;
        nn_dpack_bt = nn_dpack_bt_avx2;
        nn_sgemm_tiny = nn_sgemm_tiny_avx2;
        nn_dgemm_tiny = nn_dgemm_tiny_avx2;
        nn_sgemm_ukr2 = nn_sgemm_ukr2_avx512;
        nn_dgemm_ukr2 = nn_dgemm_ukr2_avx512;
        nn_sgemm_edge = nn_sgemm_edge_avx512;
        nn_dgemm_edge = nn_dgemm_edge_avx512;
        return "avx512f";
    }
    if (!generic && nn_cpu_has_avx2_fma()) {
        nn_sgemm_ukr = nn_sgemm_ukr_avx2;
        nn_dgemm_ukr = nn_dgemm_ukr_avx2;
        nn_spack_bt = nn_spack_bt_avx2;
        nn_dpack_bt = nn_dpack_bt_avx2;
        nn_sgemm_tiny = nn_sgemm_tiny_avx2;
        nn_dgemm_tiny = nn_dgemm_tiny_avx2;
        nn_sgemm_ukr2 = NULL;
        nn_dgemm_ukr2 = NULL;
        nn_sgemm_edge = NULL;
        nn_dgemm_edge = NULL;
        return "avx2+fma";
    }
#endif
    (void)generic;
    nn_sgemm_ukr = nn_sgemm_ukr_generic;
    nn_dgemm_ukr = nn_dgemm_ukr_generic;
    nn_spack_bt = nn_spack_bt_generic;
    nn_dpack_bt = nn_dpack_bt_generic;
    nn_sgemm_tiny = nn_sgemm_tiny_generic;
    nn_dgemm_tiny = nn_dgemm_tiny_generic;
    nn_sgemm_ukr2 = NULL;
    nn_dgemm_ukr2 = NULL;
    nn_sgemm_edge = NULL;
    nn_dgemm_edge = NULL;
    return "generic";
}

#endif
