# C-level entry to nncore._gemm, for the other kernel modules (and for other
# packages: `from nncore._gemm cimport sgemm`).
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
