# GEMM block sizes (float32 / float64), chosen for a Zen 3 core:
#   MR x NR   the micro-tile held in 12 ymm registers (microkernel.h)
#   KC        depth of a packed slice: an MR x KC panel of A stays in L1
#   MC        rows of A packed per block: MC x KC (144 KiB / 144 KiB) in L2
#   NC        columns of B packed per block: KC x NC shared by the MC loop
# MC is a multiple of MR, NC a multiple of NR.
cdef extern from "nncore/_kernels/microkernel.h":
    const Py_ssize_t MR "NN_MR"
    const Py_ssize_t NR_F32 "NN_NR_F32"
    const Py_ssize_t NR_F64 "NN_NR_F64"

cdef enum:
    KC = 256
    MC_F32 = 144
    MC_F64 = 72
    NC_F32 = 4080
    NC_F64 = 4080
    # Below this many flops (2 m n k) a GEMM stays on one thread. Measured on
    # the 2-core Zen 3 VM, float32, time 1 thread / 2 threads (median of 9):
    #   1.0 MFLOP  0.82-1.16     2.1 MFLOP  0.86-1.22
    #   3.2-4.2    1.09-1.95     8.4        1.44-1.66
    # (entering a parallel region costs ~1-5 us, and each thread packs its own
    # copy of the shared operand). From ~4 MFLOP two threads always won.
    # Above it, a GEMM takes one thread per PARALLEL_MIN_FLOPS / 2 at most
    # (2 threads from 4 MFLOP, 16 from 32): a share below ~2 MFLOP did not pay
    # here, and more threads would only split it finer.
    PARALLEL_MIN_FLOPS = 1 << 22
    # The same inside a parallel region that is already open (the fused
    # training step): only the per-thread packing and a barrier are paid.
    REGION_MIN_FLOPS = 1 << 19
    # Largest packed B (bytes) kept whole for a tall C (gemm_strip's resident order).
    RESIDENT_B_MAX = 1 << 20
    # Largest A (bytes) read in place that threads splitting C by columns share
    # from cache instead of each streaming it from memory (strip_parts).
    SHARED_A_MAX = 1 << 20
    # Most rows of C (of a thread's strip) for which row-major B is read in place
    # rather than packed (b_in_place): measured, float32, 1 thread, m = 16 and 32
    # gained 7-20%, m = 64 broke even, m = 128-1024 lost up to 10%.
    B_IN_PLACE_MAX_M = 36
