# C-level entry to nncore._kernels.gemm, for the other kernel modules (other
# packages cimport the stable names of nncore/kernels.pxd instead).
#
#   C = alpha * op(A) @ op(B) + beta * C,  op(A): (m, k), op(B): (k, n), C: (m, n)
#
# A and B are given by pointer and element strides (rs: row, cs: column) of
# op(A) and op(B), so a transpose is a swap of strides. C is row-major with
# row stride ldc. beta == 0 writes C without reading it. After the last k
# block each tile of C gets the epilogue, while it is hot in cache:
#   C[i, j] += bias[j]                (bias != NULL)
#   act_out[i, j] = f(C[i, j])        (act_out != NULL; elementwise f)
# Returns 0, or -1 when the packing buffers cannot be allocated.

cdef struct Epilogue:
    const void* bias
    void* act_out
    Py_ssize_t ld_act
    int activation
    double slope

cdef int sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
               const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               float beta, float* c, Py_ssize_t ldc,
               const Epilogue* ep, int n_threads) noexcept nogil

cdef int dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
               const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               double beta, double* c, Py_ssize_t ldc,
               const Epilogue* ep, int n_threads) noexcept nogil

# sgemm/dgemm with alpha 1, beta 0 that also raise *a_bad (never lower it) when op(A)
# holds NaN or inf: each block of A is checked right after the macro-kernel read it,
# from cache (a forward pass then reads its input from memory once).
cdef int sgemm_check_a(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                       const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                       float* c, Py_ssize_t ldc, const Epilogue* ep, int n_threads,
                       int* a_bad) noexcept nogil
cdef int dgemm_check_a(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                       const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                       double* c, Py_ssize_t ldc, const Epilogue* ep, int n_threads,
                       int* a_bad) noexcept nogil

# How gemm_part cuts C over threads: SPLIT_AUTO (least duplicated packing), or
# by rows / columns of C where that gives every thread a panel.
cdef enum:
    SPLIT_AUTO = 0
    SPLIT_ROWS = 1
    SPLIT_COLUMNS = 2

# One thread's share of C = op(A) @ op(B) (alpha 1, beta 0), for a caller that
# runs its own parallel region (the fused training step): thread t of nt
# computes the strip gemm would give it, so the result is the same for any nt.
# nt = gemm_part_threads(...) (1 for a product too small to split); threads
# t >= nt do nothing. buf: gemm_part_size(...) elements of the dtype, 64-byte
# aligned, one per thread.
cdef Py_ssize_t gemm_part_size(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                               bint f64) noexcept nogil
cdef int gemm_part_threads(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           Py_ssize_t rs_a, Py_ssize_t cs_a, int n_threads, int orient,
                           bint f64) noexcept nogil
# Thread t's strip of C there (t < nt): rows [lo, hi) (returns True) or columns.
cdef bint gemm_part_strip(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t rs_a,
                         Py_ssize_t cs_a, int t, int nt, int orient, bint f64,
                         Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil
cdef void sgemm_part(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                     const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                     float* c, Py_ssize_t ldc, const Epilogue* ep,
                     int t, int nt, int orient, float* buf) noexcept nogil
cdef void dgemm_part(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                     const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                     double* c, Py_ssize_t ldc, const Epilogue* ep,
                     int t, int nt, int orient, double* buf) noexcept nogil


# Whether an array (rows, cols) with byte strides s0, s1 at p and the bytes
# [q, q + q_bytes) may share memory (bounds only, as numpy.may_share_memory): the
# Python-facing kernels refuse such an input (nncore.functional copies it).
cdef inline bint may_overlap(const char* p, Py_ssize_t rows, Py_ssize_t cols,
                             Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t isz,
                             const char* q, Py_ssize_t q_bytes) noexcept nogil:
    cdef const char* lo = p
    cdef const char* hi = p + isz
    if rows == 0 or cols == 0 or q_bytes == 0:
        return False
    if s0 < 0: lo += (rows - 1) * s0
    else: hi += (rows - 1) * s0
    if s1 < 0: lo += (cols - 1) * s1
    else: hi += (cols - 1) * s1
    return lo < q + q_bytes and q < hi
