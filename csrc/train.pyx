"""The training step: forward, loss, backward and update of a whole Dense
stack in one call without the GIL, whole or in two phases.

Design:
- A StepPlan gathers once (per fit) the pointers of every layer's weights,
  biases, gradients, workspaces and optimizer state; the Python objects that
  own them are kept alive by the plan. A step then costs one Python call.
- A step is two phases, each callable on its own: gradients (forward l = 1..L;
  loss + 1/2 l2 sum ||W||^2; if the loss is not finite, stop; backward
  l = L..1, no dL/dX for layer 1; grad_W += l2 W) and apply (the optimizer
  update of grad_*, parameters in the order W_1, b_1, W_2, ...). StepPlan.step
  runs both in one region and is bitwise gradients() then apply(): the same
  kernels (GEMM with the bias/activation epilogue, nncore._kernels.losses, the fused
  grad_z + bias-gradient pass, nncore._kernels.optim) with the same arguments.
- StepPlan.run holds the batch schedule, the one copy of it: epochs of
  batches (rows in order or gathered by a permutation, the last batch
  partial, row scales w_i / sum w or 1/n, a batch of zero weights skipped,
  one learning rate per epoch, the optimizer's step count). It resumes from
  any (epoch, batch) and returns after max_batches batches or `seconds`, so
  a fit can hand control back to Python per batch, per epoch, or only to
  check for Ctrl-C.
- The update is all or nothing, without a copy of the weights: G = max |grad|
  (one read of the gradients) must be finite, and upper bounds of max |w| and
  max |state| carried from step to step (next_bounds) must stay below
  LIMIT = max_float / 16, which no float operation of the update can overflow
  from. When a bound reaches LIMIT, the update is first computed on copies of
  each 256-element stretch (dry_run, the same kernel) and only then applied.
  The bounds are measured exactly (exact_bounds) when a call starts, since
  Python may have changed the arrays between calls.
- Threads: a call is one OpenMP parallel region. Every thread runs the same
  code (run_par) and takes its part of each phase -- a strip of each GEMM
  (the strips the threaded GEMM would cut), column strips of grad_z, and in
  the gradient check and the updates the block of each weight gradient it
  computed (still in its cache) -- and a barrier separates dependent phases;
  the loss, the bounds, the biases and the bookkeeping run on thread 0. Each
  output is computed by one thread in the serial order, so results are
  bitwise the same for any thread count. Below 2 STEP_FLOPS_PER_THREAD a step
  never opens a region.
- A small step (small_step: every product at most TINY_MAX_MADDS multiply-adds, one
  thread) runs grads_small / apply_small instead: two C functions (train_step.h) with
  the same loops, kernels and order, so the same bits, without the parts, barriers
  and calls of a team (a 1-2-1 step on 3 points is ~100 flops).
- nncore.functional.train_plan validates the model once; the methods only
  check the batch against the plan (O(1)).
"""
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport INFINITY, fmax, isfinite, pow, sqrt
from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cython.parallel cimport parallel, threadid
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS

import numpy as np

from nncore._kernels.gemm import SIMD_PATH

from nncore._kernels.types cimport real
from nncore._kernels.blocking cimport STEP_FLOPS_PER_THREAD, TINY_MAX_MADDS
from nncore._kernels.activation_math cimport softmax_row
from nncore._kernels.codes cimport ACT_SOFTMAX, OPT_SGD, OPT_ADAM, OPT_RMSPROP
from nncore._kernels.gemm cimport (Epilogue, gemm_part_size, gemm_part_strip,
                                   gemm_part_threads, sgemm_part, dgemm_part, SPLIT_AUTO,
                                   SPLIT_ROWS, SPLIT_COLUMNS)
from nncore._kernels.losses cimport loss_f32, loss_f64
from nncore._kernels.dense cimport (grad_z_part_threads, grad_z_and_bias_part_f32,
                                    grad_z_and_bias_part_f64)

#: A step uses one thread per this many flops (at least 2 of them to go parallel).
FLOPS_PER_THREAD = STEP_FLOPS_PER_THREAD

# The small step multiplies-adds as the tiny GEMM does: with fma unless it is generic.
cdef bint TINY_FMA = SIMD_PATH != "generic"

cdef extern from "nncore/_kernels/vmath.h" nogil:
    bint nn_all_finite_f32(const float* p, Py_ssize_t n)
    bint nn_all_finite_f64(const double* p, Py_ssize_t n)
    double nn_absmax_f32(const float* p, Py_ssize_t n)
    double nn_absmax_f64(const double* p, Py_ssize_t n)

cdef extern from "nncore/_kernels/nn_clock.h" nogil:
    double nn_seconds()

cdef extern from "nncore/_kernels/nn_openmp.h" nogil:
    int NN_OPENMP_ENABLED
    int nn_omp_num_threads()

cdef extern from "nncore/_kernels/nn_barrier.h" nogil:
    ctypedef struct nn_barrier_t:
        pass
    void nn_barrier_init(nn_barrier_t* b)
    void nn_barrier_wait(nn_barrier_t* b, int n)


cdef extern from "nncore/_kernels/train_step.h" nogil:
    enum: NN_SMALL_MAX
    ctypedef struct LayerPtrs "nn_layer_t":      # one Dense layer
        Py_ssize_t n_in, n_out
        int act
        double slope
        void* w
        void* b          # NULL: no bias
        void* gw
        void* gb
        void* z          # (batch_max, n_out) workspaces; z == a when f' follows from a
        void* a          #   (the epilogue then writes f(z) over z)
        void* gz         # NULL: formed in place of dL/da
        void* gx         # (batch_max, n_in); unused for layer 1
        void* s1w        # optimizer state: SGD velocity / Adam m (NULL: none)
        void* s1b
        void* s2w        # Adam v
        void* s2b
    ctypedef struct Hyper "nn_hyper_t":
        int optimizer, nesterov, loss
        double lr, momentum, weight_decay, l2
        double beta1, beta2, eps, step_size, bc2_sqrt   # Adam
        double alpha                                    # RMSprop (eps, momentum shared)
    void nn_update_f32(const Hyper* h, Py_ssize_t n, float* p, const float* g, float* s1,
                       float* s2, double weight_decay)
    void nn_update_f64(const Hyper* h, Py_ssize_t n, double* p, const double* g,
                       double* s1, double* s2, double weight_decay)
    void nn_small_apply_f32(const LayerPtrs* layers, int n_layers, const Hyper* h)
    void nn_small_apply_f64(const LayerPtrs* layers, int n_layers, const Hyper* h)
    int nn_small_grads_f32(bint fma, const LayerPtrs* layers, int n_layers, int loss,
                           double l2, const float* x, const float* t, const Py_ssize_t* y,
                           const double* s, Py_ssize_t n, float* grad_out, double* value,
                           double* gmax)
    int nn_small_grads_f64(bint fma, const LayerPtrs* layers, int n_layers, int loss,
                           double l2, const double* x, const double* t,
                           const Py_ssize_t* y, const double* s, Py_ssize_t n,
                           double* grad_out, double* value, double* gmax)


cdef struct Bounds:
    bint known       # False: measure them before the next update
    double w, s1, s2 # >= max |w|, |state1|, |state2| over every layer (weights and biases)


cdef struct Shared:
    # What one thread of a region tells the others, read after a barrier.
    int rc           # step status (thread 0 writes it)
    int skip[2]      # batch b skipped (all weights 0): slot b % 2
    int stop         # the run stops before the next batch (thread 0 writes it)
    bint small       # every step is a small_step (then nt = 1: grads_small runs it)
    double value     # the batch loss
    double* tmax     # (threads,) each thread's max |gradient|
    int* bad         # (threads,) each thread's rows of the batch hold NaN or inf
    void* gbuf       # (threads, gbuf_size) GEMM packing buffers, 64-byte aligned
    Py_ssize_t gbuf_size
    nn_barrier_t bar # the team's barrier (sync)


cdef inline void sync(Shared* sh, int nt) noexcept nogil:
    """Every thread of the team waits here for the others (nn_barrier.h)."""
    if nt > 1:
        nn_barrier_wait(&sh.bar, nt)


cdef inline void gemm_p(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                        const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                        const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                        real* c, Py_ssize_t ldc, const Epilogue* ep,
                        int t, int nt, int orient, real* buf) noexcept nogil:
    """Thread t's part of c = a @ b (all threads call it; see csrc/gemm.pxd). A tiny
    product is thread 0's (gemm_part_threads would say so)."""
    cdef int p = (1 if m * n * k <= TINY_MAX_MADDS
                  else gemm_part_threads(m, n, k, rs_a, cs_a, nt, orient, real is double))
    if real is float:
        sgemm_part(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc, ep, t, p, orient, buf)
    else:
        dgemm_part(m, n, k, a, rs_a, cs_a, b, rs_b, cs_b, c, ldc, ep, t, p, orient, buf)


cdef Py_ssize_t step_flops(const LayerPtrs* layers, int n_layers, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t l, f = 0
    for l in range(n_layers):
        f += 2 * n * layers[l].n_in * layers[l].n_out * (3 if l > 0 else 2)
    return f


cdef Py_ssize_t gemm_buffer_size(const LayerPtrs* layers, int n_layers, Py_ssize_t n,
                                 bint f64) noexcept nogil:
    """Elements of one thread's GEMM buffer: the largest any product of a step needs."""
    cdef Py_ssize_t l, size = 0
    cdef const LayerPtrs* L
    for l in range(n_layers):
        L = &layers[l]
        size = max(size, gemm_part_size(n, L.n_out, L.n_in, f64))
        size = max(size, gemm_part_size(L.n_out, L.n_in, n, f64))
        size = max(size, gemm_part_size(n, L.n_in, L.n_out, f64))
    return (size + 15) // 16 * 16


cdef inline int loss_penalty(const LayerPtrs* layers, int n_layers, const Hyper* h,
                             const real* t, const Py_ssize_t* y, const double* s,
                             Py_ssize_t n, real* grad_out, double* value) noexcept nogil:
    """value = loss (+ 1/2 l2 sum ||W||^2, summed in double) and grad_out = dL/da of
    the last layer. Returns 0, 1 (the loss is not finite) or -10 + the loss kernel's
    error."""
    cdef const LayerPtrs* L = &layers[n_layers - 1]
    cdef const real* w
    cdef Py_ssize_t l, i, size
    cdef double acc, penalty = 0
    cdef int rc
    value[0] = 0
    if real is float:
        rc = loss_f32(h.loss, n, L.n_out, <float*> L.a, t, y, s, grad_out, value, 1)
    else:
        rc = loss_f64(h.loss, n, L.n_out, <double*> L.a, t, y, s, grad_out, value, 1)
    if rc != 0:
        return -10 + rc
    if h.l2 != 0:
        for l in range(n_layers):
            w = <const real*> layers[l].w
            size = layers[l].n_in * layers[l].n_out
            acc = 0
            for i in range(size):
                acc += <double> w[i] * <double> w[i]
            penalty += 0.5 * h.l2 * acc
        value[0] = value[0] + penalty
    return 0 if isfinite(value[0]) else 1


cdef bint small_step(const LayerPtrs* layers, int n_layers, Py_ssize_t n) noexcept nogil:
    """Every product of a step of n >= 1 rows is tiny (the three of a layer have
    n n_in n_out multiply-adds each): grads_small runs it. (Its scratch holds
    NN_SMALL_MAX elements of a weight matrix or of an output row.)"""
    cdef Py_ssize_t l
    if n < 1:
        return False
    for l in range(n_layers):
        if (n * layers[l].n_in * layers[l].n_out > TINY_MAX_MADDS
                or layers[l].n_in * layers[l].n_out > NN_SMALL_MAX):
            return False
    return True


cdef int grads_small(LayerPtrs* layers, int n_layers, const Hyper* h,
                     const real* x, const real* t, const Py_ssize_t* y, const double* s,
                     Py_ssize_t n, real* grad_out, Shared* sh) noexcept nogil:
    """grads_par on one thread (fused) for a small_step, bitwise, as one C function
    (small_step.h): sh.value the loss, sh.tmax[0] = G = max |gradient|."""
    cdef int rc
    if real is float:
        rc = nn_small_grads_f32(TINY_FMA, layers, n_layers, h.loss, h.l2, x, t, y, s, n,
                                grad_out, &sh.value, sh.tmax)
    else:
        rc = nn_small_grads_f64(TINY_FMA, layers, n_layers, h.loss, h.l2, x, t, y, s, n,
                                grad_out, &sh.value, sh.tmax)
    sh.rc = rc
    return rc


cdef int grads_par(LayerPtrs* layers, int n_layers, const Hyper* h,
                   const real* x, const real* t, const Py_ssize_t* y, const double* s,
                   Py_ssize_t n, real* grad_out, Shared* sh, int tid, int nt,
                   bint fused) noexcept nogil:
    """The gradient phase, run by every thread tid of nt (nt = 1: no region):
    forward, loss (+ penalty), backward, grad_W += l2 W. Returns, in every thread,
    0, 1 (the loss is not finite: the gradients are not formed) or < 0 on error;
    sh.value: the loss. fused: each thread also leaves in sh.tmax[tid] the max |g|
    of the weight-gradient block it computed (the apply phase's check)."""
    cdef Py_ssize_t l, i, lo, hi, r, r0, r1, c0, c1
    cdef LayerPtrs* L
    cdef const real* inp
    cdef real* g
    cdef real* gz
    cdef real* w
    cdef real* gw
    cdef real* buf = <real*> sh.gbuf + tid * sh.gbuf_size
    cdef Epilogue ep
    cdef int rc, p
    cdef double gmax = 0
    cdef real zero = 0

    # forward: z = inp @ W.T + b, a = f(z)
    inp = x
    for l in range(n_layers):
        L = &layers[l]
        ep.bias = L.b
        ep.activation = L.act
        ep.slope = L.slope
        ep.ld_act = L.n_out
        ep.act_out = NULL if L.act == ACT_SOFTMAX else L.a
        gemm_p(n, L.n_out, L.n_in, inp, L.n_in, 1, <real*> L.w, 1, L.n_in,
               <real*> L.z, L.n_out, &ep, tid, nt, SPLIT_COLUMNS, buf)
        if L.act == ACT_SOFTMAX:
            sync(sh, nt)
            for i in range(tid * n // nt, (tid + 1) * n // nt):
                softmax_row(<real*> L.z + i * L.n_out, <real*> L.a + i * L.n_out, L.n_out)
        sync(sh, nt)
        inp = <real*> L.a

    if tid == 0:
        sh.rc = loss_penalty(layers, n_layers, h, t, y, s, n, grad_out, &sh.value)
    sync(sh, nt)
    rc = sh.rc
    if rc != 0:
        return rc

    # backward
    g = grad_out
    for l in range(n_layers - 1, -1, -1):
        L = &layers[l]
        inp = x if l == 0 else <real*> layers[l - 1].a
        gz = <real*> L.gz if L.gz != NULL else g
        p = grad_z_part_threads(L.act, n, L.n_out, nt)
        if real is float:
            grad_z_and_bias_part_f32(L.act, <float> L.slope, <float*> L.z, <float*> L.a, g,
                                     gz, <float*> L.gb, n, L.n_out, tid, p)
        else:
            grad_z_and_bias_part_f64(L.act, L.slope, <double*> L.z, <double*> L.a, g,
                                     gz, <double*> L.gb, n, L.n_out, tid, p)
        sync(sh, nt)
        gemm_p(L.n_out, L.n_in, n, gz, 1, L.n_out, inp, L.n_in, 1,
               <real*> L.gw, L.n_in, NULL, tid, nt, SPLIT_ROWS, buf)
        if l > 0:
            gemm_p(n, L.n_in, L.n_out, gz, L.n_out, 1, <real*> L.w, L.n_in, 1,
                   <real*> L.gx, L.n_in, NULL, tid, nt, SPLIT_AUTO, buf)
            g = <real*> L.gx
        sync(sh, nt)

    # l2 gradient (and, fused, G = max |gradient|). Each thread takes the block of
    # each weight gradient it computed (still in its cache), thread 0 the biases.
    if h.l2 == 0 and not fused:
        return 0
    for l in range(n_layers):
        L = &layers[l]
        weight_block(L, n, tid, nt, &r0, &r1, &c0, &c1, zero)
        w = <real*> L.w
        gw = <real*> L.gw
        for r in range(r0, r1):
            lo = r * L.n_in + c0
            hi = r * L.n_in + c1
            if h.l2 != 0:
                add_l2_stretch(gw, w, lo, hi, h.l2)
            if fused:
                gmax = fmax(gmax, absmax(gw + lo, hi - lo))
        if fused and L.b != NULL and tid == 0:
            gmax = fmax(gmax, absmax(<real*> L.gb, L.n_out))
    sh.tmax[tid] = gmax
    if h.l2 != 0 and not fused:
        sync(sh, nt)                                     # grad_W complete before returning
    return 0


cdef int apply_par(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, Py_ssize_t n,
                   long* step, Shared* sh, int tid, int nt, bint fused,
                   real tag) noexcept nogil:
    """The apply phase, run by every thread: the optimizer update of the gradients
    in grad_W, grad_b (weights decay, biases do not), all or nothing. Returns, in
    every thread, 0 (updated; step[0] advanced by one) or 2 (a gradient, or the
    update, would not be finite: nothing changed). n: the rows of the gradient
    phase, which fixes each thread's block; fused: sh.tmax already holds each
    thread's max |g| (else it is measured here, over the same blocks)."""
    cdef Py_ssize_t l, r, r0, r1, c0, c1
    cdef LayerPtrs* L
    cdef double gmax = 0
    cdef int rc
    cdef real zero = tag
    if not fused:
        for l in range(n_layers):
            L = &layers[l]
            weight_block(L, n, tid, nt, &r0, &r1, &c0, &c1, zero)
            for r in range(r0, r1):
                gmax = fmax(gmax, absmax(<real*> L.gw + r * L.n_in + c0, c1 - c0))
            if L.b != NULL and tid == 0:
                gmax = fmax(gmax, absmax(<real*> L.gb, L.n_out))
        sh.tmax[tid] = gmax
    sync(sh, nt)
    if tid == 0:
        gmax = sh.tmax[0]
        for r in range(1, nt):
            gmax = fmax(gmax, sh.tmax[r])
        sh.rc = apply_decide(layers, n_layers, h, bnd, gmax, step, zero)
    sync(sh, nt)
    rc = sh.rc
    if rc != 0:
        return rc
    for l in range(n_layers):
        L = &layers[l]
        weight_block(L, n, tid, nt, &r0, &r1, &c0, &c1, zero)
        if c0 == 0 and c1 == L.n_in:                 # whole rows: one stretch
            update_stretch(L.w, L.gw, L.s1w, L.s2w, r0 * L.n_in, r1 * L.n_in, h,
                           h.weight_decay, zero)
        else:
            for r in range(r0, r1):
                update_stretch(L.w, L.gw, L.s1w, L.s2w, r * L.n_in + c0, r * L.n_in + c1,
                               h, h.weight_decay, zero)
        if L.b != NULL and tid == 0:
            update_stretch(L.b, L.gb, L.s1b, L.s2b, 0, L.n_out, h, 0.0, zero)
    return 0


cdef int apply_decide(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, double gmax,
                      long* step, real tag) noexcept nogil:
    """Whether the update of gradients with G = max |g| = gmax goes ahead (0) or
    not (2), and its step count and Adam's bias corrections (thread 0): G finite
    and the bounds after it below LIMIT, or else a dry run that stays finite."""
    cdef Bounds nb
    cdef int rc = 0
    step[0] += 1                                     # this update's step count
    if h.optimizer == OPT_ADAM:                      # Adam's bias corrections of step t
        h.step_size = h.lr / (1 - pow(h.beta1, <double> step[0]))
        h.bc2_sqrt = sqrt(1 - pow(h.beta2, <double> step[0]))
    if not isfinite(gmax):
        rc = 2
    else:
        if not bnd.known:
            exact_bounds(layers, n_layers, h, bnd, tag)
        if next_bounds(h, gmax, bnd, &nb, tag):
            bnd[0] = nb
        elif dry_run(layers, n_layers, h, tag):
            bnd.known = False
        else:
            rc = 2
    if rc != 0:
        step[0] -= 1                                 # nothing was updated
    return rc


cdef int apply_small(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, long* step,
                     Shared* sh, real tag) noexcept nogil:
    """apply_par on one thread after grads_small (G in sh.tmax[0]): each parameter
    in one stretch, as thread 0 alone takes it there (train_step.h)."""
    cdef int rc = apply_decide(layers, n_layers, h, bnd, sh.tmax[0], step, tag)
    sh.rc = rc
    if rc != 0:
        return rc
    if real is float:
        nn_small_apply_f32(layers, n_layers, h)
    else:
        nn_small_apply_f64(layers, n_layers, h)
    return 0


cdef inline void weight_block(const LayerPtrs* L, Py_ssize_t n, int tid, int nt,
                              Py_ssize_t* r0, Py_ssize_t* r1, Py_ssize_t* c0,
                              Py_ssize_t* c1, real tag) noexcept nogil:
    """Rows [r0, r1) x columns [c0, c1) of layer L's weight gradient: the strip thread
    tid computed in the dW GEMM (n_out x n_in, k = n rows); all of it for thread 0
    when that product ran on one thread; nothing for the threads it left idle."""
    cdef int p = 1 if nt == 1 else gemm_part_threads(L.n_out, L.n_in, n, 1, L.n_out, nt,
                                                     SPLIT_ROWS, real is double)
    cdef Py_ssize_t lo, hi
    r0[0] = r1[0] = c0[0] = c1[0] = 0
    if tid >= p:
        return
    if p == 1:
        r1[0] = L.n_out
        c1[0] = L.n_in
    elif gemm_part_strip(L.n_out, L.n_in, n, 1, L.n_out, tid, p, SPLIT_ROWS, real is double,
                         &lo, &hi):
        r0[0] = lo
        r1[0] = hi
        c1[0] = L.n_in
    else:
        r1[0] = L.n_out
        c0[0] = lo
        c1[0] = hi


cdef inline void update_stretch(void* p, void* g, void* s1, void* s2, Py_ssize_t lo,
                                Py_ssize_t hi, const Hyper* h, double weight_decay,
                                real tag) noexcept nogil:
    """update() on elements [lo, hi) of one parameter, on this thread."""
    if hi > lo:
        update(<real*> p + lo, <real*> g + lo, <real*> s1 + lo if s1 != NULL else NULL,
               <real*> s2 + lo if s2 != NULL else NULL, hi - lo, h, weight_decay, tag)


cdef inline void add_l2_stretch(real* gw, const real* w, Py_ssize_t lo, Py_ssize_t hi,
                                double l2) noexcept nogil:
    """gw[i] += l2 w[i] for i in [lo, hi), in double: the one place the step adds
    the gradient of the l2 term."""
    cdef Py_ssize_t i
    for i in range(lo, hi):
        gw[i] = <real> (<double> gw[i] + l2 * <double> w[i])


cdef inline double absmax(const real* p, Py_ssize_t size) noexcept nogil:
    if real is float:
        return nn_absmax_f32(p, size)
    else:
        return nn_absmax_f64(p, size)


cdef inline bint any_negative(const void* p, Py_ssize_t size, real tag) noexcept nogil:
    cdef const real* x = <const real*> p
    cdef Py_ssize_t i
    cdef bint neg = False
    if p == NULL:
        return False
    for i in range(size):
        neg |= x[i] < 0
    return neg


cdef void exact_bounds(const LayerPtrs* layers, int n_layers, const Hyper* h, Bounds* bnd,
                       real tag) noexcept nogil:
    """bnd = max |w|, |state1|, |state2| over every layer, measured. A mean of squares
    (Adam's v: state2, RMSprop's: state1) below 0 -- no update makes one, but Python
    may have written it -- makes its bound inf, so that the update is tried on copies
    first (dry_run) and refused when the square root turns it into NaN."""
    cdef Py_ssize_t l, size
    cdef const LayerPtrs* L
    cdef bint negative = False
    bnd.w = bnd.s1 = bnd.s2 = 0
    for l in range(n_layers):
        L = &layers[l]
        size = L.n_in * L.n_out
        bnd.w = fmax(bnd.w, absmax(<real*> L.w, size))
        if L.s1w != NULL:
            bnd.s1 = fmax(bnd.s1, absmax(<real*> L.s1w, size))
        if L.s2w != NULL:
            bnd.s2 = fmax(bnd.s2, absmax(<real*> L.s2w, size))
        if L.b != NULL:
            bnd.w = fmax(bnd.w, absmax(<real*> L.b, L.n_out))
            if L.s1b != NULL:
                bnd.s1 = fmax(bnd.s1, absmax(<real*> L.s1b, L.n_out))
            if L.s2b != NULL:
                bnd.s2 = fmax(bnd.s2, absmax(<real*> L.s2b, L.n_out))
        if h.optimizer == OPT_ADAM:
            negative |= (any_negative(L.s2w, size, tag)
                         or any_negative(L.s2b if L.b != NULL else NULL, L.n_out, tag))
        elif h.optimizer == OPT_RMSPROP:
            negative |= (any_negative(L.s1w, size, tag)
                         or any_negative(L.s1b if L.b != NULL else NULL, L.n_out, tag))
    if negative:
        if h.optimizer == OPT_ADAM:
            bnd.s2 = INFINITY
        else:
            bnd.s1 = INFINITY
    bnd.known = True


cdef bint next_bounds(const Hyper* h, double gmax, const Bounds* bnd, Bounds* nb,
                      real tag) noexcept nogil:
    """nb = bounds of |w|, |state| after the update, from bnd and G = max |grad|
    (every product and sum of the update rule taken in magnitude, times 1 + 1e-6
    for the float rounding). True when all stay below LIMIT: then no operation
    of the update can overflow.

        SGD   g <= G + wd W;  V' = mu V + g;  W' = W + lr (g + mu V' | V' | g)
        Adam  g <= G + wd W;  M' = b1 M + (1-b1) g;  V' = b2 V + (1-b2) g^2;
              W' = W + step_size M' / eps           (the denominator is >= eps)
        RMSprop  g <= G + wd W;  V' = a V + (1-a) g^2 (state1);  d <= g / eps;
              B' = mu B + d (state2);  W' = W + lr (B' | d)
    """
    cdef double limit = (FLT_MAX if real is float else DBL_MAX) / 16
    cdef double slack = 1 + 1e-6
    cdef double g = gmax + h.weight_decay * bnd.w, d
    nb.known = True
    nb.s1 = bnd.s1
    nb.s2 = bnd.s2
    if h.optimizer == OPT_SGD:
        if h.momentum != 0:
            nb.s1 = (h.momentum * bnd.s1 + g) * slack
            d = g + h.momentum * nb.s1 if h.nesterov else nb.s1
        else:
            d = g
        nb.w = (bnd.w + h.lr * d) * slack
        return g < limit and nb.s1 < limit and h.lr * d < limit and nb.w < limit
    if h.optimizer == OPT_RMSPROP:
        nb.s1 = (h.alpha * bnd.s1 + (1 - h.alpha) * g * g) * slack
        d = g / h.eps * slack
        if h.momentum != 0:
            nb.s2 = (h.momentum * bnd.s2 + d) * slack
            d = nb.s2
        nb.w = (bnd.w + h.lr * d) * slack
        return (g * g < limit and nb.s1 < limit and nb.s2 < limit and h.lr * d < limit
                and nb.w < limit)
    nb.s1 = (h.beta1 * bnd.s1 + (1 - h.beta1) * g) * slack
    nb.s2 = (h.beta2 * bnd.s2 + (1 - h.beta2) * g * g) * slack
    d = h.step_size * nb.s1
    nb.w = (bnd.w + d / h.eps) * slack
    return (g * g < limit and nb.s1 < limit and nb.s2 < limit and d < limit
            and nb.w < limit)


cdef enum:
    DRY_RUN_CHUNK = 256


cdef bint dry_run(const LayerPtrs* layers, int n_layers, const Hyper* h,
                  real tag) noexcept nogil:
    """True when the update would leave every parameter and state finite:
    it runs on copies of DRY_RUN_CHUNK elements at a time (the same kernel,
    so the same values) and nothing is written."""
    cdef Py_ssize_t l
    cdef const LayerPtrs* L
    for l in range(n_layers):
        L = &layers[l]
        if not dry_run_array(L.w, L.gw, L.s1w, L.s2w, L.n_in * L.n_out, h,
                             h.weight_decay, tag):
            return False
        if L.b != NULL and not dry_run_array(L.b, L.gb, L.s1b, L.s2b, L.n_out, h, 0.0, tag):
            return False
    return True


cdef bint dry_run_array(const void* p, const void* g, const void* s1, const void* s2,
                        Py_ssize_t size, const Hyper* h, double weight_decay,
                        real tag) noexcept nogil:
    cdef real pc[DRY_RUN_CHUNK]
    cdef real s1c[DRY_RUN_CHUNK]
    cdef real s2c[DRY_RUN_CHUNK]
    cdef Py_ssize_t c, lo, m
    for c in range((size + DRY_RUN_CHUNK - 1) // DRY_RUN_CHUNK):
        lo = c * DRY_RUN_CHUNK
        m = min(<Py_ssize_t> DRY_RUN_CHUNK, size - lo)
        memcpy(pc, <const real*> p + lo, m * sizeof(real))
        if s1 != NULL:
            memcpy(s1c, <const real*> s1 + lo, m * sizeof(real))
        if s2 != NULL:
            memcpy(s2c, <const real*> s2 + lo, m * sizeof(real))
        update(pc, <void*> (<const real*> g + lo), s1c if s1 != NULL else NULL,
               s2c if s2 != NULL else NULL, m, h, weight_decay, tag)
        if not (all_finite(pc, m) and (s1 == NULL or all_finite(s1c, m))
                and (s2 == NULL or all_finite(s2c, m))):
            return False
    return True


cdef inline bint all_finite(const real* p, Py_ssize_t size) noexcept nogil:
    if real is float:
        return nn_all_finite_f32(p, size)
    else:
        return nn_all_finite_f64(p, size)


cdef inline void update(void* p, void* g, void* s1, void* s2, Py_ssize_t size,
                        const Hyper* h, double weight_decay, real dtype_tag) noexcept nogil:
    """The optimizer update of size elements, on this thread (the caller splits)."""
    if real is float:
        nn_update_f32(h, size, <float*> p, <float*> g, <float*> s1, <float*> s2, weight_decay)
    else:
        nn_update_f64(h, size, <double*> p, <double*> g, <double*> s1, <double*> s2,
                      weight_decay)


cdef inline double accuracy_frac(const real* o, const real* t, const Py_ssize_t* y,
                                 Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Fraction right: argmax(o_i) == y_i for labels; (o_ij > 0) == t_ij otherwise
    (as nncore.losses predicts; the first maximum wins a tie, as np.argmax)."""
    cdef Py_ssize_t i, j, best, count = 0
    if y != NULL:
        for i in range(n):
            best = 0
            for j in range(1, k):
                if o[i * k + j] > o[i * k + best]:
                    best = j
            count += best == y[i]
        return <double> count / n
    for i in range(n * k):
        count += (1 if o[i] > 0 else 0) == t[i]
    return <double> count / (n * k)


cdef struct Batches:
    const void* X        # (n, n_in) the whole training set
    const void* T        # (n, k) float targets, or NULL
    const Py_ssize_t* Y  # (n,) labels, or NULL
    const double* W      # (n,) sample weights, or NULL
    Py_ssize_t n, n_in, k
    void* xbuf           # (batch_max, n_in) gathered rows
    void* tbuf
    Py_ssize_t* ybuf
    double* wbuf
    double* scale        # (batch_max,) s_i
    const double* given  # (n,) row scales given by the caller (gradients' scale), or NULL
    void* grad_out       # (batch_max, k)
    bint accuracy


cdef enum:
    # What a run does with each batch.
    RUN_STEP = 0         # gradients, then apply: one training step
    RUN_GRADIENTS = 1    # the gradient phase only
    RUN_APPLY = 2        # the apply phase only (no data)


cdef struct Epochs:
    # A run of batches (StepPlan.run, .step, .gradients, .apply); thread 0 fills
    # the results.
    int mode
    Py_ssize_t E, n, batch_size
    const Py_ssize_t* orders     # (E, n) or NULL: rows in order
    const double* lrs            # (E,)
    double* sums                 # (E, 3): sum of loss * rows, rows, accuracy * rows
    Py_ssize_t epoch, batch      # IN: where to start; OUT: the next batch to run
    Py_ssize_t max_batches       # stop after this many batches (<= 0: no limit)
    Py_ssize_t check_epochs      # the rows of epochs e < check_epochs are checked finite
    double seconds               # stop at the first batch boundary after this (<= 0: none)
    int rc                       # the status of the last batch run
    double value                 # its loss
    double frac                  # and its accuracy


cdef int batch_par(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, Batches* d,
                   const Py_ssize_t* order, Py_ssize_t start, Py_ssize_t nb, Py_ssize_t b,
                   int mode, bint check, long* step, Shared* sh, double* frac, int tid,
                   int nt, real tag) noexcept nogil:
    """Rows order[start:start + nb] (or start.. in order) -> one step (or its gradient
    phase), run by every thread (b numbers the batch). Returns grads_par's or
    apply_par's status, 3 when every sample weight of the batch is 0 (skipped:
    nothing computed), or, with check, 4 when a row of X holds NaN or inf (each
    thread reads its rows just before the step reads them all: nothing computed).
    step, frac (accuracy): thread 0."""
    cdef Py_ssize_t i, r, lo, hi
    cdef const real* x
    cdef const real* t = NULL
    cdef const Py_ssize_t* y = NULL
    cdef const double* w = NULL
    cdef double wsum = 0, inv
    cdef int rc
    if order == NULL:                                # rows in order: no copy
        x = <const real*> d.X + start * d.n_in
        if d.T != NULL:
            t = <const real*> d.T + start * d.k
        if d.Y != NULL:
            y = d.Y + start
        if d.W != NULL:
            w = d.W + start
    else:                                            # gather the shuffled rows
        lo = tid * nb // nt
        hi = (tid + 1) * nb // nt
        for i in range(lo, hi):
            r = order[start + i]
            memcpy(<real*> d.xbuf + i * d.n_in, <const real*> d.X + r * d.n_in,
                   d.n_in * sizeof(real))
            if d.T != NULL:
                memcpy(<real*> d.tbuf + i * d.k, <const real*> d.T + r * d.k,
                       d.k * sizeof(real))
            if d.Y != NULL:
                d.ybuf[i] = d.Y[r]
            if d.W != NULL:
                d.wbuf[i] = d.W[r]
        x = <const real*> d.xbuf
        t = <const real*> d.tbuf if d.T != NULL else NULL
        y = d.ybuf if d.Y != NULL else NULL
        w = d.wbuf if d.W != NULL else NULL
        sync(sh, nt)
    if check:
        lo = tid * nb // nt
        hi = (tid + 1) * nb // nt
        sh.bad[tid] = not all_finite(x + lo * d.n_in, (hi - lo) * d.n_in)
    if tid == 0:
        sh.skip[b & 1] = False
        if d.given != NULL:                          # the caller's scales (sharded steps)
            for i in range(nb):
                d.scale[i] = d.given[start + i]
        elif w != NULL:                              # s_i = w_i / sum(w), summed in order
            for i in range(nb):
                wsum += w[i]
            sh.skip[b & 1] = wsum == 0
            if wsum != 0:
                for i in range(nb):
                    d.scale[i] = w[i] / wsum
        else:
            inv = 1.0 / nb
            for i in range(nb):
                d.scale[i] = inv
    sync(sh, nt)
    if check:
        for i in range(nt):
            if sh.bad[i]:
                return 4                             # (set once: the run stops here)
    if sh.skip[b & 1]:
        return 3
    if sh.small:
        rc = grads_small(layers, n_layers, h, x, t, y, d.scale, nb, <real*> d.grad_out, sh)
    else:
        rc = grads_par(layers, n_layers, h, x, t, y, d.scale, nb, <real*> d.grad_out,
                       sh, tid, nt, mode == RUN_STEP)
    if rc == 0 and mode == RUN_STEP:
        if sh.small:
            rc = apply_small(layers, n_layers, h, bnd, step, sh, tag)
        else:
            rc = apply_par(layers, n_layers, h, bnd, nb, step, sh, tid, nt, True, tag)
    if tid == 0 and rc == 0 and d.accuracy:
        frac[0] = accuracy_frac(<const real*> layers[n_layers - 1].a, t, y, nb, d.k)
    return rc


cdef void run_par(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, Batches* d,
                  Epochs* run, long* step, Shared* sh, int tid, int nt,
                  real tag) noexcept nogil:
    """StepPlan.run's loop, run by every thread; thread 0 keeps the books and
    decides where to stop (all threads read it after the barrier that starts
    each batch)."""
    cdef Py_ssize_t nb, done = 0, n_batches = (run.n + run.batch_size - 1) // run.batch_size
    cdef Py_ssize_t e = run.epoch, b = run.batch, stride = 1, next_check = 1
    cdef const Py_ssize_t* order
    cdef double frac = 0, t0 = 0, t_last = 0, now
    cdef int rc = 0
    if run.mode == RUN_APPLY:
        if tid == 0:
            h.lr = run.lrs[0]
        sync(sh, nt)
        rc = apply_par(layers, n_layers, h, bnd, run.n, step, sh, tid, nt, False, tag)
        if tid == 0:
            run.rc = rc
        return
    if tid == 0 and run.seconds > 0:
        t0 = t_last = nn_seconds()
    while e < run.E:
        sync(sh, nt)                                     # the last step is done everywhere
        if sh.stop:
            break
        if tid == 0:
            h.lr = run.lrs[e]
        order = run.orders + e * run.n if run.orders != NULL else NULL
        nb = min(run.batch_size, run.n - b * run.batch_size)
        rc = batch_par(layers, n_layers, h, bnd, d, order, b * run.batch_size, nb, b,
                       run.mode, e < run.check_epochs, step, sh, &frac, tid, nt, tag)
        if rc != 0 and rc != 3:
            break                                    # this batch is not consumed
        if tid == 0:
            if rc == 0:
                run.sums[3 * e] += sh.value * nb
                run.sums[3 * e + 1] += nb
                run.sums[3 * e + 2] += frac * nb
            done += 1
            sh.stop = run.max_batches > 0 and done >= run.max_batches
            if run.seconds > 0 and done >= next_check:
                # the clock can be a system call (~0.4 us on a VM): read it every
                # `stride` batches, doubled while that is under a millisecond
                now = nn_seconds()
                sh.stop = sh.stop or now - t0 >= run.seconds
                if now - t_last < 1e-3 and stride < 4096:
                    stride *= 2
                t_last = now
                next_check = done + stride
        b += 1
        if b == n_batches:
            b = 0
            e += 1
    if tid == 0:
        run.epoch, run.batch = e, b
        run.rc = rc
        run.value = sh.value
        run.frac = frac


cdef inline size_t shared_bytes(int nt, Py_ssize_t gbuf_size, Py_ssize_t itemsize) noexcept:
    """The bytes of raw that shared_start lays out."""
    return nt * gbuf_size * itemsize + nt * (sizeof(double) + sizeof(int)) + 64


cdef inline void shared_start(Shared* sh, char* raw, int nt,
                              Py_ssize_t itemsize) noexcept:
    """sh before a region: nt GEMM buffers of sh.gbuf_size elements, 64-byte aligned,
    then nt maxima and nt row flags, in raw (malloc'd by the caller, shared_bytes);
    nothing stopped, skipped or found non-finite yet."""
    cdef int i
    sh.gbuf = <void*> ((<uintptr_t> raw + 63) & ~(<uintptr_t> 63))
    sh.tmax = <double*> (<char*> sh.gbuf + nt * sh.gbuf_size * itemsize)
    sh.bad = <int*> (sh.tmax + nt)
    for i in range(nt):
        sh.bad[i] = False
    sh.rc = 0
    sh.skip[0] = sh.skip[1] = False
    sh.stop = False
    sh.small = False
    sh.value = 0
    nn_barrier_init(&sh.bar)


cdef void* contiguous_ptr(object arr, str name) except? NULL:
    """ptr(arr), or a ValueError naming arr when it is not C-contiguous."""
    try:
        return ptr(arr)
    except (BufferError, ValueError):               # (NumPy raises ValueError)
        raise ValueError(f"StepPlan: {name} must be C-contiguous") from None


cdef bint rows_below(const Py_ssize_t* rows, Py_ssize_t size, Py_ssize_t n) noexcept nogil:
    """Every rows[i] in [0, n) (one unsigned compare each: a negative one wraps above n)."""
    cdef Py_ssize_t i
    cdef bint bad = False
    for i in range(size):
        bad |= <size_t> rows[i] >= <size_t> n
    return not bad


cdef void* ptr(object arr) except? NULL:
    """Data pointer of a C-contiguous array (None -> NULL). The caller keeps
    the array alive for as long as the pointer is used."""
    cdef Py_buffer view
    cdef void* p
    if arr is None:
        return NULL
    PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)
    p = view.buf
    PyBuffer_Release(&view)
    return p


cdef class StepPlan:
    """Pointers into a model's arrays for nogil training steps (see module docstring).

    layers: list of dicts with keys n_in, n_out, act (kernel code), slope and
    the arrays w, b, gw, gb, z, a, gz, gx, s1w, s1b, s2w, s2b
    (C-contiguous, batch_max rows for workspaces; b/s* may be None). hyper: the
    optimizer's kernel parameters by name (momentum, nesterov; beta1, beta2,
    eps; alpha, eps, momentum). Built by nncore.functional.train_plan, which
    checks every array first.
    """
    cdef LayerPtrs* layers
    cdef int n_layers
    cdef bint f64
    cdef Hyper h
    cdef Bounds bnd
    cdef Py_ssize_t rows            # rows of the last gradient phase (apply's blocks)
    cdef readonly Py_ssize_t batch_max, n_inputs, n_outputs
    cdef readonly bint accuracy
    cdef object keep
    cdef object buffers
    cdef Batches own                # the pointers into buffers (data() starts from it)

    def __cinit__(self, list layers, bint f64, Py_ssize_t batch_max, int loss_code,
                  int optimizer, dict hyper, double weight_decay, double l2, dict buffers,
                  bint accuracy):
        cdef Py_ssize_t i
        self.layers = <LayerPtrs*> malloc(len(layers) * sizeof(LayerPtrs))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = len(layers)
        self.f64 = f64
        self.batch_max = batch_max
        self.rows = batch_max
        self.keep = layers
        self.buffers = b = buffers   # x, t, y, w, scale, grad_out: (batch_max, ...)
        self.own.xbuf = ptr(b["x"]); self.own.tbuf = ptr(b["t"])
        self.own.ybuf = <Py_ssize_t*> ptr(b["y"]); self.own.wbuf = <double*> ptr(b["w"])
        self.own.scale = <double*> ptr(b["scale"]); self.own.grad_out = ptr(b["grad_out"])
        for i, d in enumerate(layers):
            self.layers[i].n_in = d["n_in"]
            self.layers[i].n_out = d["n_out"]
            self.layers[i].act = d["act"]
            self.layers[i].slope = d["slope"]
            self.layers[i].w = ptr(d["w"]); self.layers[i].b = ptr(d["b"])
            self.layers[i].gw = ptr(d["gw"]); self.layers[i].gb = ptr(d["gb"])
            self.layers[i].z = ptr(d["z"]); self.layers[i].a = ptr(d["a"])
            self.layers[i].gz = ptr(d["gz"]); self.layers[i].gx = ptr(d["gx"])
            self.layers[i].s1w = ptr(d["s1w"]); self.layers[i].s1b = ptr(d["s1b"])
            self.layers[i].s2w = ptr(d["s2w"]); self.layers[i].s2b = ptr(d["s2b"])
        self.n_inputs = layers[0]["n_in"]
        self.n_outputs = layers[len(layers) - 1]["n_out"]   # (wraparound is off)
        self.accuracy = accuracy
        self.h.loss = loss_code
        self.h.optimizer = optimizer
        self.h.momentum = hyper.get("momentum", 0.0)
        self.h.nesterov = hyper.get("nesterov", False)
        self.h.beta1 = hyper.get("beta1", 0.0)
        self.h.beta2 = hyper.get("beta2", 0.0)
        self.h.eps = hyper.get("eps", 1.0)
        self.h.alpha = hyper.get("alpha", 0.0)
        self.h.weight_decay = weight_decay
        self.h.l2 = l2

    def __dealloc__(self):
        free(self.layers)

    cdef int data(self, Batches* d, object X, object t, object y, object w) except -1:
        """Check a data set against the plan and fill d (O(1) but for nothing)."""
        cdef Py_ssize_t n = X.shape[0]
        if X.dtype.char != ("d" if self.f64 else "f") or X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise TypeError(f"StepPlan: X must be (n, {self.n_inputs}) in the plan's dtype")
        if (t is None) == (y is None):
            raise ValueError("StepPlan: pass exactly one of t and y")
        if t is not None and (t.dtype != X.dtype or t.ndim != 2 or t.shape[0] != n
                              or t.shape[1] != self.n_outputs):
            raise TypeError(f"StepPlan: t must be (n, {self.n_outputs}) in X's dtype")
        if y is not None and (y.dtype.kind != "i" or y.dtype.itemsize != sizeof(Py_ssize_t)
                              or y.ndim != 1 or y.shape[0] != n):
            raise TypeError("StepPlan: y must be (n,) intp labels")
        if w is not None and (w.dtype.char != "d" or w.ndim != 1 or w.shape[0] != n):
            raise TypeError("StepPlan: w must be (n,) float64")
        d[0] = self.own
        d.X = contiguous_ptr(X, "X"); d.T = contiguous_ptr(t, "t")
        d.Y = <const Py_ssize_t*> contiguous_ptr(y, "y")
        d.W = <const double*> contiguous_ptr(w, "w")
        d.n, d.n_in, d.k = n, self.n_inputs, self.n_outputs
        d.given = NULL
        d.accuracy = self.accuracy
        return 0

    cdef raise_for(self, int rc):
        if rc == -1:
            raise MemoryError("nncore: cannot allocate GEMM packing buffers")
        if rc == -12:
            raise ValueError("nncore: a label is outside [0, n_outputs)")
        if rc < 0:
            raise MemoryError("nncore: the loss kernel could not allocate its buffers")

    cdef int drive(self, Batches* d, Epochs* run, long* step, int n_threads) except -1:
        """Run `run` in one parallel region of up to n_threads threads (one per
        STEP_FLOPS_PER_THREAD of a step of min(batch_size, n) rows), or on this
        thread when the step is small or OpenMP is absent."""
        cdef Shared sh
        cdef Py_ssize_t rows = min(run.batch_size, run.n)
        cdef Py_ssize_t itemsize = sizeof(double) if self.f64 else sizeof(float)
        cdef int nt = n_threads if NN_OPENMP_ENABLED else 1
        cdef int tid, team
        cdef bint f64 = self.f64
        cdef LayerPtrs* layers = self.layers
        cdef int n_layers = self.n_layers
        cdef Hyper* h = &self.h
        cdef Bounds* bnd = &self.bnd
        cdef char* raw
        nt = self.team(rows, nt)
        sh.gbuf_size = (gemm_buffer_size(layers, n_layers, rows, f64)
                        if run.mode != RUN_APPLY else 0)
        raw = <char*> malloc(shared_bytes(nt, sh.gbuf_size, itemsize))
        if raw == NULL:
            raise MemoryError("nncore: cannot allocate GEMM packing buffers")
        shared_start(&sh, raw, nt, itemsize)
        sh.small = nt == 1 and small_step(layers, n_layers, rows)
        bnd.known = False                          # Python may have changed the arrays
        with nogil:
            if nt == 1:
                if f64:
                    run_par(layers, n_layers, h, bnd, d, run, step, &sh, 0, 1, <double> 0)
                else:
                    run_par(layers, n_layers, h, bnd, d, run, step, &sh, 0, 1, <float> 0)
            else:
                with parallel(num_threads=nt):
                    tid = threadid()
                    team = nn_omp_num_threads()     # may be fewer than asked
                    if f64:
                        run_par(layers, n_layers, h, bnd, d, run, step, &sh, tid, team,
                                <double> 0)
                    else:
                        run_par(layers, n_layers, h, bnd, d, run, step, &sh, tid, team,
                                <float> 0)
        free(raw)
        self.raise_for(run.rc)
        return 0

    cdef void batch_run(self, Epochs* run, int mode, Py_ssize_t n, double* lr,
                        double* sums) noexcept:
        """run: one batch of all n rows, in order."""
        run.mode = mode
        run.E, run.n, run.batch_size, run.orders, run.lrs = 1, n, n, NULL, lr
        run.sums = sums
        run.epoch = run.batch = 0
        run.max_batches, run.seconds = 1, 0
        run.check_epochs = 0
        run.rc = 0
        run.value = run.frac = 0

    def step(self, X, t, y, w, double lr, long step, int n_threads):
        """One training step on all rows of X (n <= batch_max, in order): float
        targets t (n, n_outputs) or labels y (n,) intp, sample weights w (n,) or None.
        Bitwise the same as gradients(...) then apply(...).

        Returns (status, loss, accuracy, step): status 0 updated; 1 loss not
        finite; 2 a gradient, or the update, would make a parameter or an
        optimizer state NaN or inf; 3 all sample weights 0 (skipped). Nothing is
        updated unless the status is 0. accuracy is the fraction right (0 for
        mse); step the optimizer's step count after the step (one more when updated).
        """
        cdef Batches d
        cdef Epochs run
        cdef double sums[3]
        cdef Py_ssize_t n = X.shape[0]
        if n < 1 or n > self.batch_max:
            raise ValueError(f"StepPlan.step: n = {n} outside [1, {self.batch_max}]")
        self.data(&d, X, t, y, w)
        self.batch_run(&run, RUN_STEP, n, &lr, sums)
        self.rows = n
        self.drive(&d, &run, &step, n_threads)
        return run.rc, run.value, run.frac if run.rc == 0 else 0.0, step

    def gradients(self, X, t, y, w, int n_threads, scale=None, bint l2=True):
        """The gradient phase of step on all rows of X: forward, loss, backward and
        grad_W += l2 W into the model's gradient arrays; weights, optimizer state
        and step count untouched.

        scale: (n,) float64 row scales s_i to use instead of w_i / sum(w) (or 1/n),
        e.g. w_i / sum(w) over a larger batch these rows are a shard of (w is then
        ignored and no batch is skipped); the loss is sum_i s_i l_i. l2=False leaves
        out the l2 term (the penalty in the loss and grad_W += l2 W), to be added once
        after gradients of shards are summed.

        Returns (status, loss, accuracy): status 0 gradients formed; 1 the loss is
        not finite; 3 all sample weights 0 (nothing computed).
        """
        cdef Batches d
        cdef Epochs run
        cdef double sums[3]
        cdef double lr = 0
        cdef double saved_l2 = self.h.l2
        cdef long step = 0
        cdef Py_ssize_t n = X.shape[0]
        if n < 1 or n > self.batch_max:
            raise ValueError(f"StepPlan.gradients: n = {n} outside [1, {self.batch_max}]")
        self.data(&d, X, t, y, w)
        if scale is not None:
            if (scale.dtype.char != "d" or scale.ndim != 1 or scale.shape[0] != n
                    or not scale.flags.c_contiguous):
                raise TypeError(f"StepPlan.gradients: scale must be ({n},) float64, "
                                f"C-contiguous")
            d.given = <const double*> ptr(scale)
        self.batch_run(&run, RUN_GRADIENTS, n, &lr, sums)
        self.rows = n
        if not l2:
            self.h.l2 = 0
        try:
            self.drive(&d, &run, &step, n_threads)
        finally:
            self.h.l2 = saved_l2
        return run.rc, run.value, run.frac if run.rc == 0 else 0.0

    def apply(self, double lr, long step, int n_threads):
        """The apply phase of step: the optimizer update of the gradients the
        model's gradient arrays hold now (from gradients(), maybe changed since),
        all or nothing.

        Returns (status, step): status 0 updated (step + 1); 2 a gradient, or the
        update, would make a parameter or an optimizer state NaN or inf (nothing
        updated, step unchanged).
        """
        cdef Batches d
        cdef Epochs run
        cdef double sums[3]
        self.batch_run(&run, RUN_APPLY, self.rows, &lr, sums)
        self.drive(&d, &run, &step, n_threads)
        return run.rc, step

    def run(self, X, t, y, w, orders, Py_ssize_t batch_size, double[::1] lrs,
            double[:, ::1] sums, Py_ssize_t epoch, Py_ssize_t batch, Py_ssize_t max_batches,
            double seconds, long step, int n_threads, Py_ssize_t check_epochs=0):
        """Training steps over (X, t | y, w) in one call, from batch `batch` of epoch
        `epoch` on: epoch e (e < E = len(lrs)) visits the rows in orders[e] (an
        (E, n) intp array of permutations; None: in order) in batches of
        batch_size, the last one partial, with learning rate lrs[e]; a batch whose
        sample weights are all 0 is skipped. sums[e] (E, 3) accumulates the loss *
        rows, rows and accuracy * rows of each step of epoch e.

        The rows of each batch of epochs e < check_epochs are checked for NaN and
        inf just before its step (which then reads them from cache): a batch that
        holds one stops the run with status 4, nothing of it computed.

        Stops after max_batches batches (<= 0: no limit), at the first batch
        boundary after `seconds` (<= 0: none), at the end of epoch E - 1, at a
        step that diverged (status 1 or 2, as in step), or at status 4; the batch
        it stopped at is not consumed.
        Returns (epoch, batch, status, loss, accuracy, step): the next batch to
        run, and the status, loss and accuracy of the last batch run.
        """
        cdef Batches d
        cdef Epochs run
        cdef Py_ssize_t E = lrs.shape[0], n = X.shape[0]
        cdef Py_ssize_t n_batches
        if batch_size < 1 or batch_size > self.batch_max:
            raise ValueError(f"StepPlan.run: batch_size {batch_size} outside "
                             f"[1, {self.batch_max}]")
        if n < 1:
            raise ValueError("StepPlan.run: X holds no rows")
        n_batches = (n + batch_size - 1) // batch_size
        if sums.shape[0] != E or sums.shape[1] != 3:
            raise ValueError(f"StepPlan.run: sums must be ({E}, 3)")
        if not (0 <= epoch <= E and 0 <= batch < n_batches) or (epoch == E and batch):
            raise ValueError(f"StepPlan.run: start (epoch {epoch}, batch {batch}) outside "
                             f"{E} epochs of {n_batches} batches")
        self.data(&d, X, t, y, w)
        run.orders = NULL
        if orders is not None:
            if (orders.dtype.kind != "i" or orders.dtype.itemsize != sizeof(Py_ssize_t)
                    or orders.ndim != 2 or orders.shape[0] != E or orders.shape[1] != n
                    or not orders.flags.c_contiguous):
                raise TypeError(f"StepPlan.run: orders must be ({E}, {n}) intp, C-contiguous")
            run.orders = <const Py_ssize_t*> ptr(orders)
            if not rows_below(run.orders, E * n, n):
                raise ValueError("StepPlan.run: orders holds a row outside [0, n)")
        if epoch == E:
            return epoch, batch, 0, 0.0, 0.0, step
        run.mode = RUN_STEP
        run.E, run.n, run.batch_size, run.lrs = E, n, batch_size, &lrs[0]
        run.sums = &sums[0, 0]
        run.epoch, run.batch = epoch, batch
        run.max_batches, run.seconds = max_batches, seconds
        run.check_epochs = check_epochs
        run.rc = 0
        run.value = run.frac = 0
        self.rows = min(batch_size, n)
        self.drive(&d, &run, &step, n_threads)
        return (run.epoch, run.batch, run.rc, run.value,
                run.frac if run.rc == 0 else 0.0, step)

    # ---- sharded steps (nncore._sharded): a process's shards of one step in one call ----

    cdef Py_ssize_t flat_size(self) noexcept:
        """Elements of a flat gradient: grad_W1, grad_b1, grad_W2, ... (the order of the
        model's gradients())."""
        cdef Py_ssize_t l, size = 0
        for l in range(self.n_layers):
            size += self.layers[l].n_in * self.layers[l].n_out
            if self.layers[l].b != NULL:
                size += self.layers[l].n_out
        return size

    cdef void flat_layers(self, LayerPtrs* out, char* flat) noexcept:
        """out: this plan's layers with grad_W, grad_b pointing into the flat gradient."""
        cdef Py_ssize_t l, off = 0
        cdef Py_ssize_t itemsize = sizeof(double) if self.f64 else sizeof(float)
        for l in range(self.n_layers):
            out[l] = self.layers[l]
            out[l].gw = flat + off * itemsize
            off += out[l].n_in * out[l].n_out
            if out[l].b != NULL:
                out[l].gb = flat + off * itemsize
                off += out[l].n_out

    cdef check_flat(self, arr, str name, Py_ssize_t ndim, Py_ssize_t rows):
        cdef Py_ssize_t N = self.flat_size()
        cdef tuple shape = (N,)
        if ndim == 2:
            shape = (rows, N)
        if (not isinstance(arr, np.ndarray) or arr.dtype.char != ("d" if self.f64 else "f")
                or arr.shape != shape or not arr.flags.c_contiguous
                or not arr.flags.writeable):
            raise TypeError(f"StepPlan: {name} must be a writeable C-contiguous {shape} "
                            f"array in the plan's dtype")

    def shard_gradients(self, X, t, y, const Py_ssize_t[::1] order,
                        const double[::1] scale, const Py_ssize_t[:, ::1] shards,
                        leaves, const Py_ssize_t[:, ::1] adds, double[:, ::1] results,
                        int n_threads):
        """The gradient phase without the l2 term (gradients(..., scale=, l2=False)) of
        the S shards of one sharded step, in one call: shard s reads the rows
        order[start:start + count] of X (t | y), (start, count) = shards[s], with the
        row scales scale[start:start + count] (scale is aligned with order), and
        leaves its gradients in leaves[s] (flat: grad_W1, grad_b1, grad_W2, ...); a
        shard of count 0 computes nothing. Then, if every loss was finite, the
        additions leaves[a] += leaves[b] for each row (a, b) of adds, in order (a
        shard's subtree of nncore._sharded's tree). The model's gradient arrays are
        not touched.

        results (S, 3) OUT: each shard's (status, loss, accuracy) as gradients()
        returns them ((0, 0, 0) for count 0). Returns 0, or 1 when a loss was not
        finite (the additions were not made).
        """
        cdef Batches d
        cdef Shared sh
        cdef Py_ssize_t S = shards.shape[0], K = adds.shape[0], R = order.shape[0]
        cdef Py_ssize_t N = self.flat_size(), n = X.shape[0]
        cdef Py_ssize_t s, i, start, count, rows = 0
        cdef Py_ssize_t itemsize = sizeof(double) if self.f64 else sizeof(float)
        cdef int nt = n_threads if NN_OPENMP_ENABLED else 1
        cdef int tid, team, r, status = 0
        cdef int* final = &status
        cdef double saved_l2 = self.h.l2
        cdef LayerPtrs* copies
        cdef char* raw
        cdef char* flat
        cdef bint f64 = self.f64
        cdef int n_layers = self.n_layers
        cdef Hyper* h = &self.h
        cdef Bounds* bnd = &self.bnd
        cdef const Py_ssize_t* po = &order[0] if R else NULL
        cdef const Py_ssize_t* ps = &shards[0, 0] if S else NULL
        cdef const Py_ssize_t* pa = &adds[0, 0] if K else NULL
        cdef double* pr = &results[0, 0] if S else NULL
        self.data(&d, X, t, y, None)
        self.check_flat(leaves, "leaves", 2, S)
        if shards.shape[1] != 2 or adds.shape[1] != 2 or results.shape[0] != S \
                or results.shape[1] != 3 or scale.shape[0] != R:
            raise ValueError("StepPlan.shard_gradients: shards and adds must be (S, 2) and "
                             "(K, 2), results (S, 3), scale as long as order")
        for s in range(S):
            start, count = shards[s, 0], shards[s, 1]
            if start < 0 or count < 0 or count > self.batch_max or start > R - count:
                raise ValueError(f"StepPlan.shard_gradients: shard {s} (start {start}, "
                                 f"{count} rows) outside order or above batch_max")
            for i in range(start, start + count):
                if order[i] < 0 or order[i] >= n:
                    raise ValueError("StepPlan.shard_gradients: order holds a row outside "
                                     "[0, n)")
            rows = max(rows, count)
        for i in range(K):
            if not (0 <= adds[i, 0] < S and 0 <= adds[i, 1] < S and adds[i, 0] != adds[i, 1]):
                raise ValueError("StepPlan.shard_gradients: adds must name two different "
                                 "rows of leaves")
        if rows == 0:
            results[:, :] = 0
            return 0
        d.given = &scale[0]
        nt = self.team(rows, nt)
        copies = <LayerPtrs*> malloc(S * n_layers * sizeof(LayerPtrs))
        sh.gbuf_size = gemm_buffer_size(self.layers, n_layers, rows, f64)
        raw = <char*> malloc(shared_bytes(nt, sh.gbuf_size, itemsize))
        if raw == NULL or copies == NULL:
            free(raw)
            free(copies)
            raise MemoryError("nncore: cannot allocate GEMM packing buffers")
        flat = <char*> ptr(leaves)
        for s in range(S):
            self.flat_layers(copies + s * n_layers, flat + s * N * itemsize)
        shared_start(&sh, raw, nt, itemsize)
        self.rows = rows
        self.h.l2 = 0
        with nogil:
            if nt == 1:
                if f64:
                    status = shards_par(copies, n_layers, h, bnd, &d, po, ps, S, <double*> flat,
                                        N, pa, K, pr, &sh, 0, 1)
                else:
                    status = shards_par(copies, n_layers, h, bnd, &d, po, ps, S, <float*> flat,
                                        N, pa, K, pr, &sh, 0, 1)
            else:
                with parallel(num_threads=nt):
                    tid = threadid()
                    team = nn_omp_num_threads()
                    if f64:
                        r = shards_par(copies, n_layers, h, bnd, &d, po, ps, S,
                                       <double*> flat, N, pa, K, pr, &sh, tid, team)
                    else:
                        r = shards_par(copies, n_layers, h, bnd, &d, po, ps, S,
                                       <float*> flat, N, pa, K, pr, &sh, tid, team)
                    if tid == 0:
                        final[0] = r
        self.h.l2 = saved_l2
        free(raw)
        free(copies)
        self.raise_for(status)
        return status

    def apply_from(self, grad, double lr, long step, bint l2, bint keep_bounds,
                   int n_threads):
        """apply() reading the gradients from grad (N,) (flat: grad_W1, grad_b1, ...)
        instead of the model's gradient arrays; l2: grad_W += l2 W in grad first (as
        gradients() would have). keep_bounds: nothing changed the parameters or the
        optimizer state since the last apply_from, so the bounds of the all-or-nothing
        check carry over (the same decision, without measuring every array).

        Returns (status, step) as apply.
        """
        cdef Shared sh
        cdef int nt = n_threads if NN_OPENMP_ENABLED else 1
        cdef int tid, team, r, status = 0
        cdef int* final = &status
        cdef bint f64 = self.f64, add_l2 = l2 and self.h.l2 != 0
        cdef int n_layers = self.n_layers
        cdef Py_ssize_t rows = self.rows
        cdef Hyper* h = &self.h
        cdef Bounds* bnd = &self.bnd
        cdef long* pstep = &step
        cdef LayerPtrs* copies
        self.check_flat(grad, "grad", 1, 0)
        nt = self.team(rows, nt)
        copies = <LayerPtrs*> malloc(n_layers * sizeof(LayerPtrs))
        sh.tmax = <double*> malloc(nt * sizeof(double))
        if copies == NULL or sh.tmax == NULL:
            free(copies)
            free(sh.tmax)
            raise MemoryError()
        self.flat_layers(copies, <char*> ptr(grad))
        sh.gbuf, sh.gbuf_size = NULL, 0
        sh.rc = 0
        nn_barrier_init(&sh.bar)
        if not keep_bounds:
            bnd.known = False
        h.lr = lr
        with nogil:
            if nt == 1:
                if f64:
                    status = apply_flat_par(copies, n_layers, h, bnd, rows, pstep, &sh, 0, 1,
                                            add_l2, <double> 0)
                else:
                    status = apply_flat_par(copies, n_layers, h, bnd, rows, pstep, &sh, 0, 1,
                                            add_l2, <float> 0)
            else:
                with parallel(num_threads=nt):
                    tid = threadid()
                    team = nn_omp_num_threads()
                    if f64:
                        r = apply_flat_par(copies, n_layers, h, bnd, rows, pstep, &sh, tid,
                                           team, add_l2, <double> 0)
                    else:
                        r = apply_flat_par(copies, n_layers, h, bnd, rows, pstep, &sh, tid,
                                           team, add_l2, <float> 0)
                    if tid == 0:
                        final[0] = r
        free(sh.tmax)
        free(copies)
        return status, step

    def add_l2(self, grad, Py_ssize_t lo, Py_ssize_t hi):
        """grad[i] += l2 W[i] for the weights' elements among grad[lo:hi] (flat, as
        apply_from; biases do not decay), as apply_from(l2=True) adds it: a process
        adds the term to its slice of a root that others read in place
        (nncore.distributed)."""
        cdef Py_ssize_t l, a, b, size, off = 0
        cdef char* flat
        cdef Py_ssize_t itemsize = sizeof(double) if self.f64 else sizeof(float)
        cdef double l2 = self.h.l2
        self.check_flat(grad, "grad", 1, 0)
        if not 0 <= lo <= hi <= self.flat_size():
            raise ValueError(f"StepPlan.add_l2: need 0 <= lo <= hi <= {self.flat_size()}, "
                             f"got lo={lo}, hi={hi}")
        if l2 == 0:
            return
        flat = <char*> ptr(grad)
        with nogil:
            for l in range(self.n_layers):
                size = self.layers[l].n_in * self.layers[l].n_out
                a = lo - off if lo > off else 0
                b = hi - off if hi < off + size else size
                if b > a:
                    if self.f64:
                        add_l2_stretch(<double*> (flat + off * itemsize),
                                       <const double*> self.layers[l].w, a, b, l2)
                    else:
                        add_l2_stretch(<float*> (flat + off * itemsize),
                                       <const float*> self.layers[l].w, a, b, l2)
                off += size
                if self.layers[l].b != NULL:
                    off += self.layers[l].n_out

    def threads(self, Py_ssize_t rows, int n_threads):
        """The threads a step of `rows` rows runs on when asked for n_threads."""
        return self.team(rows, n_threads if NN_OPENMP_ENABLED else 1)

    cdef int team(self, Py_ssize_t rows, int nt) noexcept:
        """drive's thread count for a step of `rows` rows."""
        cdef Py_ssize_t quanta = (step_flops(self.layers, self.n_layers, rows)
                                  + STEP_FLOPS_PER_THREAD - 1) // STEP_FLOPS_PER_THREAD
        if nt < 1 or quanta < 2:
            return 1
        return <int> quanta if nt > quanta else nt


def runs_small(StepPlan plan, Py_ssize_t rows, int n_threads):
    """True when plan's steps of at most `rows` rows, asked for n_threads, run on one
    thread through grads_small / apply_small (bitwise the team path's result)."""
    return (plan.team(rows, n_threads if NN_OPENMP_ENABLED else 1) == 1
            and small_step(plan.layers, plan.n_layers, rows))


cdef int shards_par(LayerPtrs* copies, int n_layers, Hyper* h, Bounds* bnd, Batches* d,
                    const Py_ssize_t* order, const Py_ssize_t* shards, Py_ssize_t S,
                    real* leaves, Py_ssize_t N, const Py_ssize_t* adds, Py_ssize_t K,
                    double* results, Shared* sh, int tid, int nt) noexcept nogil:
    """StepPlan.shard_gradients, run by every thread: each shard's gradient phase on
    its copy of the layers (copies + s * n_layers: gradients into leaves row s), then
    each thread its stretch of every addition."""
    cdef Py_ssize_t s, k, i, lo, hi
    cdef int rc, bad = 0
    cdef double frac = 0
    cdef long step = 0
    cdef real* a
    cdef const real* b
    for s in range(S):
        if shards[2 * s + 1] == 0:
            if tid == 0:
                results[3 * s] = results[3 * s + 1] = results[3 * s + 2] = 0
            continue
        sync(sh, nt)                          # the last shard is done everywhere
        frac = 0
        rc = batch_par(copies + s * n_layers, n_layers, h, bnd, d, order, shards[2 * s],
                       shards[2 * s + 1], s, RUN_GRADIENTS, False, &step, sh, &frac, tid,
                       nt, <real> 0)
        if tid == 0:
            results[3 * s] = rc
            results[3 * s + 1] = sh.value
            results[3 * s + 2] = frac if rc == 0 else 0
        if rc < 0:
            return rc
        bad = bad or rc != 0
    if bad:
        return 1
    sync(sh, nt)
    lo = tid * N // nt
    hi = (tid + 1) * N // nt
    for k in range(K):
        a = leaves + adds[2 * k] * N
        b = leaves + adds[2 * k + 1] * N
        for i in range(lo, hi):
            a[i] = a[i] + b[i]
    return 0


cdef int apply_flat_par(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, Py_ssize_t n,
                        long* step, Shared* sh, int tid, int nt, bint l2,
                        real tag) noexcept nogil:
    """StepPlan.apply_from, run by every thread: grad_W += l2 W (each thread a stretch,
    in double as the gradient phase adds it), then apply_par."""
    cdef Py_ssize_t l, size
    if l2:
        for l in range(n_layers):
            size = layers[l].n_in * layers[l].n_out
            add_l2_stretch(<real*> layers[l].gw, <const real*> layers[l].w,
                           tid * size // nt, (tid + 1) * size // nt, h.l2)
        sync(sh, nt)
    return apply_par(layers, n_layers, h, bnd, n, step, sh, tid, nt, False, tag)
