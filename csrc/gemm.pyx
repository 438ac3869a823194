"""Packed, register-tiled GEMM:  C = alpha * op(A) @ op(B) + beta * C.

Design:
- The loops are BLIS's (jc -> pc -> ic -> jr -> ir -> micro-kernel): B is
  packed KC x NC into NR-column panels, A is packed MC x KC into MR-row panels,
  and an MR x NR micro-kernel from microkernel.h (AVX2+FMA or portable, picked
  when the module loads) multiplies one A panel by one B panel. Where packing
  would not pay, full panels are read where they lie: row-major A
  (a_in_place), and row-major B for strips of few rows (b_in_place). Packed
  or not, the micro-kernel does the same arithmetic in the same order.
- op() is a pair of element strides: a transposed operand is packed from the
  same memory with its strides swapped, so X @ W.T costs no copy.
- Threads: C is cut into n_threads strips of whole micro-panels along the
  dimension (m in MR rows or n in NR columns) that has more of them. Each
  thread runs the serial algorithm on its strip with its own packing buffers.
  The k loop is never split and tiles keep their places, so every C element
  is the same fixed-order sum whatever the thread count: bitwise equal
  results for 1, 2 or 16 threads.
- Below PARALLEL_MIN_FLOPS the call stays on one thread and never enters a
  parallel region; above, it takes one thread per PARALLEL_MIN_FLOPS / 2 at
  most, and the cut (rows or columns of C) that duplicates less packing.
- An optional epilogue (bias add, elementwise activation into a second
  output) runs on each tile right after its last k block, while it is in L1.
- sgemm_check_a / dgemm_check_a also check op(A) for NaN and inf, each block right
  after the macro-kernel read it (from cache), once whatever the thread count: a
  forward pass checks its input without a pass of its own.
- A product of at most TINY_MAX_MADDS multiply-adds (one k block, alpha 1,
  beta 0) skips packing and padded tiles: a plain loop forms each element with
  the micro-kernel's own accumulation chain, so the bits are the same.
- Python sees `gemm(a, b, c, alpha, beta, n_threads)` on memoryviews;
  nncore.functional validates shapes, dtypes and aliasing before calling it.
"""
from libc.stdlib cimport malloc, free
from libc.stdint cimport uintptr_t
from cython.parallel cimport prange, threadid

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport (MR, NR_F32, NR_F64, KC, MC_F32, MC_F64, NC_F32,
                                       NC_F64, PARALLEL_MIN_FLOPS, REGION_MIN_FLOPS,
                                       RESIDENT_B_MAX, SHARED_A_MAX, B_IN_PLACE_MAX_M,
                                       TINY_MAX_MADDS)
from nncore._kernels.activation_math cimport nn_epilogue_f32, nn_epilogue_f64
from nncore._kernels.gemm cimport Epilogue, SPLIT_AUTO, SPLIT_ROWS, SPLIT_COLUMNS

cdef extern from "nncore/_kernels/microkernel.h" nogil:
    void nn_sgemm_ukr(Py_ssize_t k, const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                      const float* b, Py_ssize_t rs_b, float* c, Py_ssize_t ldc, float alpha,
                      float beta)
    void nn_dgemm_ukr(Py_ssize_t k, const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                      const double* b, Py_ssize_t rs_b, double* c, Py_ssize_t ldc,
                      double alpha, double beta)
    void nn_sgemm_tiny(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a,
                       Py_ssize_t rs_a, Py_ssize_t cs_a, const float* b, Py_ssize_t rs_b,
                       Py_ssize_t cs_b, float* c, Py_ssize_t ldc)
    void nn_dgemm_tiny(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a,
                       Py_ssize_t rs_a, Py_ssize_t cs_a, const double* b, Py_ssize_t rs_b,
                       Py_ssize_t cs_b, double* c, Py_ssize_t ldc)
    void nn_spack_bt(Py_ssize_t kc, const float* w, Py_ssize_t ldw, float* buf)
    void nn_dpack_bt(Py_ssize_t kc, const double* w, Py_ssize_t ldw, double* buf)
    ctypedef void (*nn_sukr2_t)(Py_ssize_t k, const float* a, Py_ssize_t rs_a,
                                Py_ssize_t cs_a, const float* b0, const float* b1,
                                Py_ssize_t rs_b, float* c, Py_ssize_t ldc, float alpha,
                                float beta) noexcept nogil
    ctypedef void (*nn_dukr2_t)(Py_ssize_t k, const double* a, Py_ssize_t rs_a,
                                Py_ssize_t cs_a, const double* b0, const double* b1,
                                Py_ssize_t rs_b, double* c, Py_ssize_t ldc, double alpha,
                                double beta) noexcept nogil
    nn_sukr2_t nn_sgemm_ukr2      # NULL: no two-panel kernel on this path
    nn_dukr2_t nn_dgemm_ukr2
    ctypedef void (*nn_sedge_t)(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t k, const float* a,
                                Py_ssize_t rs_a, Py_ssize_t cs_a, const float* b0,
                                const float* b1, Py_ssize_t rs_b, float* c, Py_ssize_t ldc,
                                float alpha, float beta) noexcept nogil
    ctypedef void (*nn_dedge_t)(Py_ssize_t mr, Py_ssize_t nr, Py_ssize_t k, const double* a,
                                Py_ssize_t rs_a, Py_ssize_t cs_a, const double* b0,
                                const double* b1, Py_ssize_t rs_b, double* c,
                                Py_ssize_t ldc, double alpha, double beta) noexcept nogil
    nn_sedge_t nn_sgemm_edge      # NULL: edge tiles go through a padded tile
    nn_dedge_t nn_dgemm_edge
    const char* nn_ukr_select()

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED

cdef extern from "nncore/_kernels/vmath.h" nogil:
    bint nn_all_finite_f32(const float* p, Py_ssize_t n)
    bint nn_all_finite_f64(const double* p, Py_ssize_t n)

cdef extern from *:
    """
    /* A flag any thread may raise (never lowered during a call). */
    static inline void nn_flag_raise(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELAXED); }
    """
    void nn_flag_raise(int* flag) nogil

#: Which micro-kernel this process uses: "avx512f", "avx2+fma" or "generic"
#: (NNCORE_SIMD=avx2 or =generic forces the others; all three give the AVX2 bits
#: but the portable one, which has no fma).
SIMD_PATH = nn_ukr_select().decode()


cdef inline Py_ssize_t cdiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline void pack_a(Py_ssize_t mc, Py_ssize_t kc,
                        const real* a, Py_ssize_t rs, Py_ssize_t cs,  # IN op(A) block
                        real* buf) noexcept nogil:                    # OUT
    """MR-row panels, each kc columns of MR values; short panels zero-padded."""
    cdef Py_ssize_t ir, ir_i, i, p, mr
    cdef const real* ap
    for ir_i in range(cdiv(mc, MR)):
        ir = ir_i * MR
        mr = min(MR, mc - ir)
        ap = a + ir * rs
        if cs == 1:                              # rows contiguous: read along them
            for i in range(mr):
                for p in range(kc):
                    buf[p * MR + i] = ap[i * rs + p]
        else:                                    # (rs == 1: six contiguous values a column)
            for p in range(kc):
                for i in range(mr):
                    buf[p * MR + i] = ap[i * rs + p * cs]
        for i in range(mr, MR):
            for p in range(kc):
                buf[p * MR + i] = 0
        buf += MR * kc


cdef inline void pack_b(Py_ssize_t kc, Py_ssize_t nc,
                        const real* b, Py_ssize_t rs, Py_ssize_t cs,  # IN op(B) block
                        real* buf, Py_ssize_t nr_max) noexcept nogil:  # OUT
    """NR-column panels, each kc rows of NR values; short panels zero-padded."""
    cdef Py_ssize_t jr, jr_i, j, p, nr
    cdef const real* bp
    for jr_i in range(cdiv(nc, nr_max)):
        jr = jr_i * nr_max
        nr = min(nr_max, nc - jr)
        bp = b + jr * cs
        if cs == 1:
            for p in range(kc):
                for j in range(nr):
                    buf[p * nr_max + j] = bp[p * rs + j]
        elif rs == 1 and nr == nr_max:               # op(B) = M.T: register transposes
            if real is float:
                nn_spack_bt(kc, bp, cs, buf)
            else:
                nn_dpack_bt(kc, bp, cs, buf)
        else:
            for j in range(nr):
                for p in range(kc):
                    buf[p * nr_max + j] = bp[p * rs + j * cs]
        for j in range(nr, nr_max):
            for p in range(kc):
                buf[p * nr_max + j] = 0
        buf += nr_max * kc


cdef inline void epilogue_tile(const Epilogue* ep, real* c, Py_ssize_t ldc,
                               Py_ssize_t mr, Py_ssize_t nr,
                               Py_ssize_t row, Py_ssize_t col) noexcept nogil:
    """C[i, j] += bias[col + j]; act[row + i, col + j] = f(C[i, j]) (elementwise.h)."""
    cdef const real* bias = <const real*> ep.bias
    cdef real* act = <real*> ep.act_out
    if bias != NULL:
        bias = bias + col
    if act != NULL:
        act = act + row * ep.ld_act + col
    if real is float:
        nn_epilogue_f32(c, ldc, mr, nr, bias, ep.activation, <float> ep.slope, act, ep.ld_act)
    else:
        nn_epilogue_f64(c, ldc, mr, nr, bias, ep.activation, ep.slope, act, ep.ld_act)


cdef inline bint a_in_place(Py_ssize_t rs_a, Py_ssize_t cs_a, Py_ssize_t n,
                            Py_ssize_t itemsize) noexcept nogil:
    """Read full A panels where they lie instead of packing them.

    Pays for row-major A (cs_a == 1): no packing pass, and the six rows stream
    from L1/L2 as well as a packed panel does -- unless rows are a multiple of
    4 KiB apart and n is wide (the rows then share L1 sets; measured 0.90x at
    256x1024 . 1024x1024). Column-major A (the dW product) packs: measured
    0.8x in place. bench/kernels.py shows the figures.
    """
    return cs_a == 1 and ((rs_a * itemsize) % 4096 != 0 or n <= 64)


cdef inline bint b_in_place(Py_ssize_t m, Py_ssize_t rs_b, Py_ssize_t cs_b, Py_ssize_t n,
                            Py_ssize_t itemsize) noexcept nogil:
    """Read full B panels where they lie instead of packing them.

    Pays for row-major B (cs_b == 1) used by few A panels (m <= B_IN_PLACE_MAX_M),
    where packing would not amortize: 16 x 32 . 32 x 784 (the W2 weight
    gradient) 20 -> 17 us. With more A panels the strided panel rows (a page
    every row or two) cost more than packing them once: 1024 x 256 . 256 x 784
    took 10% longer in place. Not when rows are a multiple of 4 KiB apart (they
    would share L1 sets) or no full panel exists. (A/B against packing, 1 thread,
    best of 7; `bench/kernels.py --full` has the W2 products against OpenBLAS.)
    """
    cdef Py_ssize_t nr = NR_F32 if itemsize == 4 else NR_F64
    return (m <= B_IN_PLACE_MAX_M and cs_b == 1 and n >= nr
            and (rs_b * itemsize) % 4096 != 0)


cdef inline void macro_kernel(Py_ssize_t mc, Py_ssize_t nc, Py_ssize_t kc, real alpha,
                              const real* a_blk, Py_ssize_t rs_a, Py_ssize_t cs_a,
                              bint direct, const real* bblk, Py_ssize_t rs_b,
                              real beta_p, real* c, Py_ssize_t ldc, bint last,
                              const Epilogue* ep, Py_ssize_t row, Py_ssize_t col,
                              real* abuf, real* bbuf) noexcept nogil:
    """C[0:mc, 0:nc] (+)= A block (mc x kc) @ B block (kc x nc): the jr and ir loops
    around the micro-kernel; the epilogue after the last k block. B: packed
    (rs_b = 0), or read in place with row stride rs_b -- a short edge panel is
    then packed into bbuf first."""
    cdef Py_ssize_t jr, ir, ir_i, nr, mr, i, j, NR, width, half
    cdef Py_ssize_t rs_p, cs_p, rs_bp
    cdef bint pair
    cdef real* cij
    cdef const real* ap
    cdef const real* bp
    cdef const real* bp1
    cdef real tile[6 * 16]      # MR x max(NR): edge tiles land here first
    if real is float:
        NR = NR_F32
    else:
        NR = NR_F64
    if not direct:
        pack_a(mc, kc, a_blk, rs_a, cs_a, abuf)
    jr = 0
    while jr < nc:                                    # 2nd loop: one or two B panels (L1)
        nr = min(NR, nc - jr)
        pair = jr + 2 * NR <= nc and (nn_sgemm_ukr2 != NULL if real is float
                                      else nn_dgemm_ukr2 != NULL)
        if rs_b == 0:                                 # packed
            bp = bblk + jr * kc; rs_bp = NR
            bp1 = bp + NR * kc
        elif nr == NR:                                # in place
            bp = bblk + jr; rs_bp = rs_b
            bp1 = bp + NR
        else:
            pack_b(kc, nr, bblk + jr, rs_b, 1, bbuf, NR)
            bp = bbuf; rs_bp = NR
            bp1 = NULL
        width = 2 * NR if pair else nr
        for ir_i in range(cdiv(mc, MR)):              # 1st loop: one A panel
            ir = ir_i * MR
            mr = min(MR, mc - ir)
            cij = c + ir * ldc + jr
            if not direct:
                ap = abuf + ir * kc; rs_p = 1; cs_p = MR
            elif mr == MR:
                ap = a_blk + ir * rs_a; rs_p = rs_a; cs_p = cs_a
            else:                                     # short panel: pad it
                pack_a(mr, kc, a_blk + ir * rs_a, rs_a, cs_a, abuf)
                ap = abuf; rs_p = 1; cs_p = MR
            if pair and mr == MR:                     # two panels, 12 accumulators
                if real is float:
                    nn_sgemm_ukr2(kc, ap, rs_p, cs_p, bp, bp1, rs_bp, cij, ldc, alpha,
                                  beta_p)
                else:
                    nn_dgemm_ukr2(kc, ap, rs_p, cs_p, bp, bp1, rs_bp, cij, ldc, alpha,
                                  beta_p)
            elif mr == MR and nr == NR:               # micro-kernel
                if real is float:
                    nn_sgemm_ukr(kc, ap, rs_p, cs_p, bp, rs_bp, cij, ldc, alpha, beta_p)
                else:
                    nn_dgemm_ukr(kc, ap, rs_p, cs_p, bp, rs_bp, cij, ldc, alpha, beta_p)
            elif (nn_sgemm_edge != NULL if real is float else nn_dgemm_edge != NULL):
                if real is float:                     # edge, written in place
                    nn_sgemm_edge(mr, nr, kc, ap, rs_p, cs_p, bp, bp1 if pair else NULL,
                                  rs_bp, cij, ldc, alpha, beta_p)
                else:
                    nn_dgemm_edge(mr, nr, kc, ap, rs_p, cs_p, bp, bp1 if pair else NULL,
                                  rs_bp, cij, ldc, alpha, beta_p)
            else:                                     # edge: full tiles, copy part
                for half in range(2 if pair else 1):
                    if real is float:
                        nn_sgemm_ukr(kc, ap, rs_p, cs_p, bp1 if half else bp, rs_bp, tile,
                                     NR, 1, 0)
                    else:
                        nn_dgemm_ukr(kc, ap, rs_p, cs_p, bp1 if half else bp, rs_bp, tile,
                                     NR, 1, 0)
                    for i in range(mr):
                        for j in range(half * NR, half * NR + nr):
                            if beta_p == 0:
                                cij[i * ldc + j] = alpha * tile[i * NR + j - half * NR]
                            else:
                                cij[i * ldc + j] = (alpha * tile[i * NR + j - half * NR]
                                                    + beta_p * cij[i * ldc + j])
            if last and ep != NULL:
                epilogue_tile(ep, cij, ldc, mr, width, row + ir, col + jr)
        jr += width


cdef inline void check_block(const real* a, Py_ssize_t rs, Py_ssize_t cs, Py_ssize_t mc,
                             Py_ssize_t kc, int* bad) noexcept nogil:
    """Raise *bad when op(A)[0:mc, 0:kc] (element strides rs, cs) holds NaN or inf:
    read right after the macro-kernel used the block, from cache."""
    cdef Py_ssize_t i, p
    cdef bint ok = True
    if cs == 1:
        for i in range(mc):
            ok &= (nn_all_finite_f32(<const float*> a + i * rs, kc) if real is float
                   else nn_all_finite_f64(<const double*> a + i * rs, kc))
    elif rs == 1:
        for p in range(kc):
            ok &= (nn_all_finite_f32(<const float*> a + p * cs, mc) if real is float
                   else nn_all_finite_f64(<const double*> a + p * cs, mc))
    else:
        for i in range(mc):
            for p in range(kc):
                ok &= a[i * rs + p * cs] - a[i * rs + p * cs] == 0
    if not ok:
        nn_flag_raise(bad)


cdef void gemm_strip(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha,
                     const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                     const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                     real beta, real* c, Py_ssize_t ldc,
                     const Epilogue* ep, Py_ssize_t row0, Py_ssize_t col0,
                     real* abuf, real* bbuf, bint resident, int* a_bad) noexcept nogil:
    """The serial algorithm on one strip of C (rows row0.., columns col0..).

    resident: B (all of k) is packed once and the ic loop runs outside the pc
    loop, so each MC x NC block of C stays in L2 while its k blocks accumulate
    (for tall C, e.g. a forward pass over 10,000 rows; same sums, same order).
    a_bad (NULL: no check): raised when A holds NaN or inf, each block checked
    once, after the strip holding column 0 of C used it.
    """
    cdef Py_ssize_t jc, pc, ic, jc_i, pc_i, ic_i, nc, kc, mc, nc_pad
    cdef Py_ssize_t NR, MC, NC
    cdef bint direct
    cdef bint check = a_bad != NULL and col0 == 0
    if m * n * k <= TINY_MAX_MADDS and k <= KC and alpha == 1 and beta == 0:
        if real is float:                             # the micro-kernel's sums, unpadded
            nn_sgemm_tiny(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc)
        else:
            nn_dgemm_tiny(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc)
        if ep != NULL:
            epilogue_tile(ep, c, ldc, m, n, row0, col0)
        if check:
            check_block(a, rs_a, cs_a, m, k, a_bad)
        return
    direct = a_in_place(rs_a, cs_a, n, sizeof(real))
    cdef Py_ssize_t rs_bd = rs_b if b_in_place(m, rs_b, cs_b, n, sizeof(real)) else 0
    if real is float:
        NR = NR_F32; MC = MC_F32; NC = NC_F32
    else:
        NR = NR_F64; MC = MC_F64; NC = NC_F64

    for jc_i in range(cdiv(n, NC)):                   # 5th loop: NC columns of C
        jc = jc_i * NC
        nc = min(NC, n - jc)
        if resident:
            nc_pad = cdiv(nc, NR) * NR
            for pc_i in range(cdiv(k, KC) if rs_bd == 0 else 0):
                pc = pc_i * KC                        # pack all of B: block p at p KC nc_pad
                pack_b(min(KC, k - pc), nc, b + pc * rs_b + jc * cs_b, rs_b, cs_b,
                       bbuf + pc * nc_pad, NR)
            for ic_i in range(cdiv(m, MC)):           # 3rd loop: MC rows ...
                ic = ic_i * MC
                mc = min(MC, m - ic)
                for pc_i in range(cdiv(k, KC)):       # 4th loop inside: C block stays in L2
                    pc = pc_i * KC
                    kc = min(KC, k - pc)
                    macro_kernel(mc, nc, kc, alpha, a + ic * rs_a + pc * cs_a, rs_a, cs_a,
                                 direct,
                                 bbuf + pc * nc_pad if rs_bd == 0 else b + pc * rs_b + jc,
                                 rs_bd, beta if pc == 0 else 1, c + ic * ldc + jc, ldc,
                                 pc + kc == k, ep, row0 + ic, col0 + jc, abuf, bbuf)
                    if check and jc == 0:
                        check_block(a + ic * rs_a + pc * cs_a, rs_a, cs_a, mc, kc, a_bad)
            continue
        for pc_i in range(cdiv(k, KC)):               # 4th loop: KC-deep slice, pack B
            pc = pc_i * KC
            kc = min(KC, k - pc)
            if rs_bd == 0:
                pack_b(kc, nc, b + pc * rs_b + jc * cs_b, rs_b, cs_b, bbuf, NR)
            for ic_i in range(cdiv(m, MC)):           # 3rd loop: MC rows, pack A
                ic = ic_i * MC
                mc = min(MC, m - ic)
                macro_kernel(mc, nc, kc, alpha, a + ic * rs_a + pc * cs_a, rs_a, cs_a,
                             direct, bbuf if rs_bd == 0 else b + pc * rs_b + jc, rs_bd,
                             beta if pc == 0 else 1, c + ic * ldc + jc, ldc,
                             pc + kc == k, ep, row0 + ic, col0 + jc, abuf, bbuf)
                if check and jc == 0:
                    check_block(a + ic * rs_a + pc * cs_a, rs_a, cs_a, mc, kc, a_bad)


cdef inline void layout(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t* a_size,
                        Py_ssize_t* per_thread, bint* resident, real tag) noexcept nogil:
    """Packing buffers of one thread: A block (a_size elements), then B; B is
    packed whole (resident) when C is tall and all of B stays in L2/L3."""
    cdef Py_ssize_t NR, MC, NC, b_size
    if real is float:
        NR = NR_F32; MC = MC_F32; NC = NC_F32
    else:
        NR = NR_F64; MC = MC_F64; NC = NC_F64
    a_size[0] = min(MC, cdiv(m, MR) * MR) * min(<Py_ssize_t> KC, k)
    b_size = min(<Py_ssize_t> KC, k) * min(NC, cdiv(n, NR) * NR)
    resident[0] = (m > MC and k > KC and n <= NC
                   and k * cdiv(n, NR) * NR * <Py_ssize_t> sizeof(real) <= RESIDENT_B_MAX)
    if resident[0]:
        b_size = k * cdiv(n, NR) * NR
    per_thread[0] = cdiv(a_size[0] + b_size, 16) * 16


cdef inline Py_ssize_t strip_parts(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                                   Py_ssize_t rs_a, Py_ssize_t cs_a, int nt, int orient,
                                   bint* split_rows, real tag) noexcept nogil:
    """Threads take strips of whole panels: of rows of C, each thread then packing
    all of B (k n), or of columns, each packing all of A (m k) -- nothing when A is
    read in place and small enough (SHARED_A_MAX) to share from cache. Columns when
    they give every thread a panel and duplicate less packing; else whichever gives
    every thread a panel; else the longer count. orient (SPLIT_ROWS, SPLIT_COLUMNS)
    asks for one cut where it gives every thread a panel. (Where strips fall
    changes no result: each C element is the same sum.)"""
    cdef Py_ssize_t pm = cdiv(m, MR), pn
    cdef double cost_a = <double> m * k, cost_b = <double> k * n
    if real is float:
        pn = cdiv(n, NR_F32)
    else:
        pn = cdiv(n, NR_F64)
    if (a_in_place(rs_a, cs_a, n, sizeof(real))
            and m * k * <Py_ssize_t> sizeof(real) <= SHARED_A_MAX):
        cost_a = 0
    if orient == SPLIT_ROWS and pm >= nt:
        split_rows[0] = True
    elif orient == SPLIT_COLUMNS and pn >= nt:
        split_rows[0] = False
    elif pn >= nt and (cost_a < cost_b or pm < nt):
        split_rows[0] = False
    elif pm >= nt:
        split_rows[0] = True
    else:
        split_rows[0] = pm >= pn
    return pm if split_rows[0] else pn


cdef void gemm_thread(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha,
                      const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                      const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                      real beta, real* c, Py_ssize_t ldc,
                      const Epilogue* ep, int t, int nt, int orient,
                      real* buf, int* a_bad) noexcept nogil:
    """Strip t of nt (nt <= strip_parts): rows or columns [lo, hi) of C."""
    cdef Py_ssize_t a_size, per_thread, lo, hi
    cdef bint resident
    layout(m, n, k, &a_size, &per_thread, &resident, alpha)
    if strip_of(m, n, k, rs_a, cs_a, t, nt, orient, &lo, &hi, alpha):
        gemm_strip(hi - lo, n, k, alpha, a + lo * rs_a, rs_a, cs_a, b, rs_b, cs_b, beta,
                   c + lo * ldc, ldc, ep, lo, 0, buf, buf + a_size, resident, a_bad)
    else:
        gemm_strip(m, hi - lo, k, alpha, a, rs_a, cs_a, b + lo * cs_b, rs_b, cs_b, beta,
                   c + lo, ldc, ep, 0, lo, buf, buf + a_size, resident, a_bad)


cdef inline bint strip_of(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t rs_a,
                          Py_ssize_t cs_a, int t, int nt, int orient, Py_ssize_t* lo,
                          Py_ssize_t* hi, real tag) noexcept nogil:
    """Thread t's strip of C for nt threads: rows [lo, hi) (True) or columns (False)."""
    cdef bint split_rows
    cdef Py_ssize_t parts = strip_parts(m, n, k, rs_a, cs_a, nt, orient, &split_rows, tag)
    cdef Py_ssize_t width = MR if split_rows else (NR_F32 if real is float else NR_F64)
    lo[0] = min(t * parts // nt * width, m if split_rows else n)
    hi[0] = min((t + 1) * parts // nt * width, m if split_rows else n)
    return split_rows


cdef int gemm_impl(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, real alpha,
                   const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                   const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                   real beta, real* c, Py_ssize_t ldc,
                   const Epilogue* ep, int n_threads, int* a_bad) noexcept nogil:
    cdef Py_ssize_t i, j, parts, t, tid
    cdef Py_ssize_t a_size, per_thread
    cdef bint split_rows, resident
    cdef int nt
    cdef char* raw
    cdef real* bufs
    if m <= 0 or n <= 0:
        return 0
    if k <= 0:                                       # C = beta C, then epilogue
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        if ep != NULL:
            epilogue_tile(ep, c, ldc, m, n, 0, 0)
        return 0

    nt = n_threads if NN_OPENMP_ENABLED else 1
    nt = <int> min(<double> nt, 2.0 * m * n * k / (PARALLEL_MIN_FLOPS // 2))
    if nt < 2:                                       # below PARALLEL_MIN_FLOPS
        nt = 1
    parts = strip_parts(m, n, k, rs_a, cs_a, max(nt, 1), SPLIT_AUTO, &split_rows, alpha)
    if nt > parts:
        nt = <int> parts
    if nt < 1:
        nt = 1

    # Packing buffers, one per thread, 64-byte aligned.
    layout(m, n, k, &a_size, &per_thread, &resident, alpha)
    raw = <char*> malloc(nt * per_thread * sizeof(real) + 64)
    if raw == NULL:
        return -1
    bufs = <real*> ((<uintptr_t> raw + 63) & ~(<uintptr_t> 63))

    if nt == 1:
        gemm_thread(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc, ep,
                    0, 1, SPLIT_AUTO, bufs, a_bad)
    else:
        for t in prange(nt, num_threads=nt, schedule='static', chunksize=1):
            tid = threadid()
            gemm_thread(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, ldc, ep,
                        <int> t, nt, SPLIT_AUTO, bufs + tid * per_thread, a_bad)
    free(raw)
    return 0


# ---- one thread's part, for callers inside their own parallel region ----------

cdef Py_ssize_t gemm_part_size(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                               bint f64) noexcept nogil:
    cdef Py_ssize_t a_size, per_thread
    cdef bint resident
    if f64:
        layout(m, n, k, &a_size, &per_thread, &resident, <double> 0)
    else:
        layout(m, n, k, &a_size, &per_thread, &resident, <float> 0)
    return per_thread


cdef int gemm_part_threads(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           Py_ssize_t rs_a, Py_ssize_t cs_a, int n_threads, int orient,
                           bint f64) noexcept nogil:
    cdef Py_ssize_t parts
    cdef bint split_rows
    n_threads = <int> min(<double> n_threads, 2.0 * m * n * k / (REGION_MIN_FLOPS // 2))
    if not NN_OPENMP_ENABLED or n_threads < 2:       # below REGION_MIN_FLOPS
        return 1
    if f64:
        parts = strip_parts(m, n, k, rs_a, cs_a, n_threads, orient, &split_rows, <double> 0)
    else:
        parts = strip_parts(m, n, k, rs_a, cs_a, n_threads, orient, &split_rows, <float> 0)
    return <int> min(<Py_ssize_t> n_threads, parts)


cdef bint gemm_part_strip(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, Py_ssize_t rs_a,
                         Py_ssize_t cs_a, int t, int nt, int orient, bint f64,
                         Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    if f64:
        return strip_of(m, n, k, rs_a, cs_a, t, nt, orient, lo, hi, <double> 0)
    return strip_of(m, n, k, rs_a, cs_a, t, nt, orient, lo, hi, <float> 0)


cdef void sgemm_part(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                     const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                     float* c, Py_ssize_t ldc, const Epilogue* ep,
                     int t, int nt, int orient, float* buf) noexcept nogil:
    if m * n * k <= TINY_MAX_MADDS and k <= KC:      # gemm_strip's tiny path, directly
        if t == 0:
            nn_sgemm_tiny(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc)
            if ep != NULL:
                epilogue_tile(ep, c, ldc, m, n, 0, 0)
    elif t < nt:
        gemm_thread(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, t, nt, orient,
                    buf, NULL)


cdef void dgemm_part(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                     const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                     const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                     double* c, Py_ssize_t ldc, const Epilogue* ep,
                     int t, int nt, int orient, double* buf) noexcept nogil:
    if m * n * k <= TINY_MAX_MADDS and k <= KC:      # gemm_strip's tiny path, directly
        if t == 0:
            nn_dgemm_tiny(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc)
            if ep != NULL:
                epilogue_tile(ep, c, ldc, m, n, 0, 0)
    elif t < nt:
        gemm_thread(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, t, nt, orient,
                    buf, NULL)


cdef int sgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, float alpha,
               const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               float beta, float* c, Py_ssize_t ldc,
               const Epilogue* ep, int n_threads) noexcept nogil:
    return gemm_impl(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b,
                     beta, c, ldc, ep, n_threads, NULL)


cdef int sgemm_check_a(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const float* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                       const float* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                       float* c, Py_ssize_t ldc, const Epilogue* ep, int n_threads,
                       int* a_bad) noexcept nogil:
    return gemm_impl(m, n, k, <float> 1, a, rs_a, cs_a, b, rs_b, cs_b, <float> 0, c, ldc,
                     ep, n_threads, a_bad)


cdef int dgemm_check_a(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                       const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                       double* c, Py_ssize_t ldc, const Epilogue* ep, int n_threads,
                       int* a_bad) noexcept nogil:
    return gemm_impl(m, n, k, <double> 1, a, rs_a, cs_a, b, rs_b, cs_b, <double> 0, c,
                     ldc, ep, n_threads, a_bad)


cdef int dgemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, double alpha,
               const double* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
               const double* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
               double beta, double* c, Py_ssize_t ldc,
               const Epilogue* ep, int n_threads) noexcept nogil:
    return gemm_impl(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b,
                     beta, c, ldc, ep, n_threads, NULL)


def gemm(const real[:, :] a,    # IN  op(A), (m, k), any strides
         const real[:, :] b,    # IN  op(B), (k, n), any strides
         real[:, ::1] c,        # IN/OUT (m, n); not read when beta == 0
         double alpha, double beta, int n_threads):
    """c = alpha * a @ b + beta * c. Transposes are views (a.T) passed in. Returns 0;
    or, with nothing computed, 1 when a or b may share memory with c, 2 when a
    stride of a or b is not a whole number of elements (nncore.functional copies
    the input then)."""
    cdef Py_ssize_t m = c.shape[0], n = c.shape[1], k = a.shape[1]
    cdef Py_ssize_t isz = sizeof(real)
    cdef const real* pa = &a[0, 0] if a.shape[0] > 0 and k > 0 else NULL
    cdef const real* pb = &b[0, 0] if k > 0 and b.shape[1] > 0 else NULL
    cdef real* pc = &c[0, 0] if m > 0 and n > 0 else NULL
    cdef int rc
    if (a.strides[0] % isz or a.strides[1] % isz or b.strides[0] % isz
            or b.strides[1] % isz):
        return 2
    if pc != NULL and (
            (pa != NULL and may_overlap(<const char*> pa, m, k, a.strides[0], a.strides[1],
                                        isz, <const char*> pc, m * n * isz))
            or (pb != NULL and may_overlap(<const char*> pb, k, n, b.strides[0],
                                           b.strides[1], isz, <const char*> pc, m * n * isz))):
        return 1
    with nogil:
        rc = gemm_impl(m, n, k, <real> alpha, pa, a.strides[0] // isz,
                       a.strides[1] // isz, pb, b.strides[0] // isz,
                       b.strides[1] // isz, <real> beta, pc, n,
                       <const Epilogue*> NULL, n_threads, NULL)
    if rc != 0:
        raise MemoryError("nncore.gemm: cannot allocate packing buffers")
    return 0
