# GEMM block sizes (float32 / float64), chosen for a Zen 3 core:
#   MR x NR   the micro-tile held in 12 ymm registers (AVX2; AVX-512 pairs two of them in
#             12 zmm, microkernel.h)
#   KC        depth of a packed slice: an MR x KC panel of A stays in L1
#   MC        rows of A packed per block: MC x KC (144 KiB / 144 KiB) in L2
#   NC        columns of B packed per block: KC x NC shared by the MC loop
# MC is a multiple of MR, NC a multiple of NR.
#
# Beside them, every kernel's parallel threshold, measured on the same machine:
# below its threshold a call stays on one thread and never enters a parallel
# region (the GEMM's: PARALLEL_MIN_FLOPS, REGION_MIN_FLOPS).
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
    # Products of at most this many multiply-adds (m n k, one k block) skip packing
    # and run a plain loop with the micro-kernel's sums (gemm_strip): a 1-2-1
    # network's layers, where packing and a padded 6 x 16 tile cost more than the
    # arithmetic.
    TINY_MAX_MADDS = 256

    # ---- parallel thresholds of the other kernels ----
    # Activations: an exp costs ~5-10 ns: below ~64k elements a parallel
    # region's 1-5 us and the cold second core are not repaid.
    ELEMENTWISE_PARALLEL_MIN = 1 << 16
    # Below this many elements of grad_z the first backward pass of the dense
    # layer stays on one thread (same reasoning as ELEMENTWISE_PARALLEL_MIN).
    BACKWARD_PARALLEL_MIN = 1 << 16
    # The same inside a parallel region that is already open (the fused step).
    BACKWARD_REGION_MIN = 1 << 13
    # all_finite: ~0.15 ns an element on one core: a parallel region pays from
    # ~1M elements.
    FINITE_PARALLEL_MIN = 1 << 20
    # Below this many elements (N*K) a loss stays on one thread: an element
    # costs 1 (mse) to 25 (bce: exp + log1p) ns, a parallel region
    # microseconds. bench/losses.py on a shared 2-core machine, float32,
    # 256 x 256: 2 threads gave 1.2-2x for softmax CE, BCE and hinge, and
    # nothing for mse, which gains (1.3-2.4x) from about 64K-2M elements.
    LOSS_PARALLEL_MIN = 1 << 16
    # Below these many elements an optimizer update stays on one thread.
    # Measured on the 2-core Zen 3 VM with the thresholds set to 1: best of
    # 2 x 300 calls of the def wrappers, microseconds, 1 thread / 2 threads:
    #
    #   n          float32                          float64
    #              sgd       momentum  adam         sgd       momentum  adam
    #   1 024      1.1/2.1   1.3/2.2    2.2/2.8     1.4/2.3   2.4/2.4    4.4/5.2
    #   4 096      1.6/2.3   2.0/2.6    5.0/4.3     4.3/4.6   4.2/3.5   13.1/8.4
    #   8 192      2.3/2.7   3.1/3.1    8.8/6.3     4.3/3.9   4.4/4.4   25.0/14.3
    #   16 384     3.6/3.8   4.7/4.0   16.3/9.8     6.8/5.6   7.8/5.4   49.1/26.5
    #   32 768     5.6/4.7   7.8/5.4   30.9/17.3   11.8/8.7  15.7/9.3   96.7/50.4
    #   65 536     9.8/6.1  15.2/9.4   61.7/32.5   22.1/14.1 29.3/19.3  191/98
    #   100 352   12.4/8.1  20.4/15.4  92.5/48.9   32.9/18.8 43.5/25.0  294/150  (784 x 128)
    #   1 048 576  122/98    195/107    967/486     378/212   694/402   3098/1573
    #
    # A parallel region costs ~1-1.5 us here and two threads on two shared
    # cores are fragile (KERNEL-NOTES), so each threshold is where two threads
    # tie or win for both dtypes. SGD is memory-bound (~0.1-0.2 ns/element)
    # and pays from ~32k elements (a rerun gave 5.0/5.0 for float32 sgd at
    # 32 768: a tie, no loss); Adam is bound by its square root and two
    # divisions (~1 ns/element float32, ~3 ns float64 at SSE2 width) and
    # pays from ~4-8k.
    SGD_PARALLEL_MIN_SIZE = 1 << 15
    ADAM_PARALLEL_MIN_SIZE = 1 << 13
    # RMSprop costs what Adam costs (a square root and a division per element).
    RMSPROP_PARALLEL_MIN_SIZE = 1 << 13
    # Flops (forward + backward GEMMs) a training step needs per thread: up to
    # this a step runs on one thread without opening a parallel region; above,
    # on at most ceil(flops / this) threads, so a small net on many cores does
    # not spend its step in barriers. On the 2-core VM, W2 (1.7 MFLOP a step) on
    # 2 threads gave 1.25-1.35x (best of 15) but 0.96x (median, alternating
    # with 1 thread): a step of ~60 us is too short to risk 14 barriers on
    # shared cores, so it stays on one thread. Not measured beyond 2 cores.
    STEP_FLOPS_PER_THREAD = 1 << 21
