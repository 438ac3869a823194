"""The fused training step: forward, loss, backward and update of a whole
Dense stack in one call without the GIL.

Design:
- A StepPlan gathers once (per fit) the pointers of every layer's weights,
  biases, gradients, workspaces and optimizer state; the Python objects that
  own them are kept alive by the plan. A step then costs one Python call.
- The step calls exactly the kernels the layer-by-layer path calls, in the
  same order with the same arguments (GEMM with the bias/activation epilogue,
  nncore._losses, the fused grad_z + bias-gradient pass, nncore._optim), so
  the two paths give bitwise the same weights.
- Order: forward l = 1..L; loss (+ 1/2 l2 sum ||W||^2); if the loss is not
  finite, stop with nothing updated; backward l = L..1 (no dL/dX for layer 1);
  grad_W += l2 W; updates in parameter order W_1, b_1, W_2, ...
- The update is all or nothing, without a copy of the weights: G = max |grad|
  (one read of the gradients) must be finite, and upper bounds of max |w| and
  max |state| carried from step to step (next_bounds) must stay below
  LIMIT = max_float / 16, which no float operation of the update can overflow
  from. When a bound reaches LIMIT, the update is first computed on copies of
  each 256-element stretch (dry_run, the same kernel) and only then applied.
  The bounds are measured exactly (exact_bounds) when a call starts, since
  Python may have changed the arrays between calls.
- nncore.functional.train_plan validates the model once; StepPlan.step only
  checks the batch against the plan (O(1)).
"""
from libc.float cimport DBL_MAX, FLT_MAX
from libc.math cimport INFINITY, fmax, isfinite, pow, sqrt
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS

import numpy as np

from _types cimport real
from _activation_math cimport ACT_SOFTMAX, softmax_row
from nncore._gemm cimport Epilogue, sgemm, dgemm
from nncore._losses cimport loss_f32, loss_f64
from nncore._optim cimport sgd_f32, sgd_f64, adam_f32, adam_f64
from nncore._dense cimport grad_z_and_bias_f32, grad_z_and_bias_f64

cdef extern from "vmath.h" nogil:
    bint nn_all_finite_f32(const float* p, Py_ssize_t n)
    bint nn_all_finite_f64(const double* p, Py_ssize_t n)
    double nn_absmax_f32(const float* p, Py_ssize_t n)
    double nn_absmax_f64(const double* p, Py_ssize_t n)

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1


cdef struct LayerPtrs:
    Py_ssize_t n_in, n_out
    int act
    double slope
    void* w
    void* b          # NULL: no bias
    void* gw
    void* gb
    void* z          # (batch_max, n_out) workspaces; a == z for identity
    void* a
    void* gz
    void* gx         # (batch_max, n_in); unused for layer 1
    void* s1w        # optimizer state: SGD velocity / Adam m (NULL: none)
    void* s1b
    void* s2w        # Adam v
    void* s2b


cdef struct Bounds:
    bint known       # False: measure them before the next update
    double w, s1, s2 # >= max |w|, |state1|, |state2| over every layer (weights and biases)


cdef struct Hyper:
    int optimizer, nesterov, loss
    double lr, momentum, weight_decay, l2
    double beta1, beta2, eps, step_size, bc2_sqrt


cdef inline int gemm_r(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                       const real* a, Py_ssize_t rs_a, Py_ssize_t cs_a,
                       const real* b, Py_ssize_t rs_b, Py_ssize_t cs_b,
                       real* c, Py_ssize_t ldc, const Epilogue* ep, int nt) noexcept nogil:
    if real is float:
        return sgemm(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, nt)
    else:
        return dgemm(m, n, k, 1, a, rs_a, cs_a, b, rs_b, cs_b, 0, c, ldc, ep, nt)


cdef int step_impl(LayerPtrs* layers, int n_layers, const Hyper* h, Bounds* bnd,
                   const real* x, const real* t, const Py_ssize_t* y, const double* s,
                   Py_ssize_t n, real* grad_out, double* value, int nt) noexcept nogil:
    """One step; returns 0, 1 (loss not finite: nothing updated), 2 (a gradient,
    or the update, would not be finite: nothing updated), or < 0 on error."""
    cdef Py_ssize_t l, i, size
    cdef LayerPtrs* L
    cdef const real* inp
    cdef real* g
    cdef real* w
    cdef real* gw
    cdef Epilogue ep
    cdef int rc
    cdef double acc, penalty = 0, gmax = 0
    cdef real zero = 0
    cdef Bounds nb

    # forward: z = inp @ W.T + b, a = f(z)
    inp = x
    for l in range(n_layers):
        L = &layers[l]
        ep.bias = L.b
        ep.activation = L.act
        ep.slope = L.slope
        ep.ld_act = L.n_out
        ep.act_out = NULL if (L.act == ACT_SOFTMAX or L.a == L.z) else L.a
        rc = gemm_r(n, L.n_out, L.n_in, inp, L.n_in, 1, <real*> L.w, 1, L.n_in,
                    <real*> L.z, L.n_out, &ep, nt)
        if rc != 0:
            return rc
        if L.act == ACT_SOFTMAX:
            for i in range(n):
                softmax_row(<real*> L.z + i * L.n_out, <real*> L.a + i * L.n_out, L.n_out)
        inp = <real*> L.a

    # loss and penalty
    L = &layers[n_layers - 1]
    if real is float:
        rc = loss_f32(h.loss, n, L.n_out, <float*> L.a, t, y, s, grad_out, value, nt)
    else:
        rc = loss_f64(h.loss, n, L.n_out, <double*> L.a, t, y, s, grad_out, value, nt)
    if rc != 0:
        return -10 + rc
    if h.l2 != 0:
        for l in range(n_layers):
            w = <real*> layers[l].w
            size = layers[l].n_in * layers[l].n_out
            acc = 0
            for i in range(size):
                acc += <double> w[i] * <double> w[i]
            penalty += 0.5 * h.l2 * acc
        value[0] = value[0] + penalty
    if not isfinite(value[0]):
        return 1

    # backward
    g = grad_out
    for l in range(n_layers - 1, -1, -1):
        L = &layers[l]
        inp = x if l == 0 else <real*> layers[l - 1].a
        if real is float:
            grad_z_and_bias_f32(L.act, <float> L.slope, <float*> L.z, <float*> L.a, g,
                                <float*> L.gz, <float*> L.gb, n, L.n_out, nt)
        else:
            grad_z_and_bias_f64(L.act, L.slope, <double*> L.z, <double*> L.a, g,
                                <double*> L.gz, <double*> L.gb, n, L.n_out, nt)
        rc = gemm_r(L.n_out, L.n_in, n, <real*> L.gz, 1, L.n_out, inp, L.n_in, 1,
                    <real*> L.gw, L.n_in, NULL, nt)
        if rc != 0:
            return rc
        if l > 0:
            rc = gemm_r(n, L.n_in, L.n_out, <real*> L.gz, L.n_out, 1, <real*> L.w, L.n_in, 1,
                        <real*> L.gx, L.n_in, NULL, nt)
            if rc != 0:
                return rc
            g = <real*> L.gx

    # l2 gradient; G = max |gradient|
    for l in range(n_layers):
        L = &layers[l]
        w = <real*> L.w
        gw = <real*> L.gw
        size = L.n_in * L.n_out
        if h.l2 != 0:
            for i in range(size):
                gw[i] = <real> (<double> gw[i] + h.l2 * <double> w[i])
        gmax = fmax(gmax, absmax(gw, size))
        if L.b != NULL:
            gmax = fmax(gmax, absmax(<real*> L.gb, L.n_out))
    if not isfinite(gmax):
        return 2

    # the updates (weights decay, biases do not), all or nothing
    if not bnd.known:
        exact_bounds(layers, n_layers, bnd, zero)
    if next_bounds(h, gmax, bnd, &nb, zero):
        bnd[0] = nb
    elif dry_run(layers, n_layers, h, zero):
        bnd.known = False
    else:
        return 2
    for l in range(n_layers):
        L = &layers[l]
        update(L.w, L.gw, L.s1w, L.s2w, L.n_in * L.n_out, h, h.weight_decay, nt, zero)
        if L.b != NULL:
            update(L.b, L.gb, L.s1b, L.s2b, L.n_out, h, 0.0, nt, zero)
    return 0


cdef inline double absmax(const real* p, Py_ssize_t size) noexcept nogil:
    if real is float:
        return nn_absmax_f32(p, size)
    else:
        return nn_absmax_f64(p, size)


cdef void exact_bounds(const LayerPtrs* layers, int n_layers, Bounds* bnd,
                       real tag) noexcept nogil:
    """bnd = max |w|, |state1|, |state2| over every layer, measured."""
    cdef Py_ssize_t l, size
    cdef const LayerPtrs* L
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
               s2c if s2 != NULL else NULL, m, h, weight_decay, 1, tag)
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
                        const Hyper* h, double weight_decay, int nt, real dtype_tag) noexcept nogil:
    if h.optimizer == OPT_SGD:
        if real is float:
            sgd_f32(size, <float*> p, <float*> g, <float*> s1, <float> h.lr, <float> h.momentum,
                    <float> weight_decay, h.nesterov, nt)
        else:
            sgd_f64(size, <double*> p, <double*> g, <double*> s1, h.lr, h.momentum,
                    weight_decay, h.nesterov, nt)
    else:
        if real is float:
            adam_f32(size, <float*> p, <float*> g, <float*> s1, <float*> s2,
                     <float> h.beta1, <float> (1.0 - h.beta1), <float> h.beta2,
                     <float> (1.0 - h.beta2), <float> h.step_size, <float> h.bc2_sqrt,
                     <float> h.eps, <float> weight_decay, nt)
        else:
            adam_f64(size, <double*> p, <double*> g, <double*> s1, <double*> s2,
                     h.beta1, 1.0 - h.beta1, h.beta2, 1.0 - h.beta2, h.step_size,
                     h.bc2_sqrt, h.eps, weight_decay, nt)


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
    void* grad_out       # (batch_max, k)
    bint accuracy


cdef int batch_impl(LayerPtrs* layers, int n_layers, Hyper* h, Bounds* bnd, Batches* d,
                    const Py_ssize_t* order, Py_ssize_t start, Py_ssize_t nb,
                    long* t_adam, int nt, double* value, double* frac,
                    real tag) noexcept nogil:
    """Rows order[start:start + nb] (or start.. in order) -> one step. Returns step_impl's
    status, or 3 when every sample weight of the batch is 0 (skipped)."""
    cdef Py_ssize_t i, r
    cdef const real* x
    cdef const real* t = NULL
    cdef const Py_ssize_t* y = NULL
    cdef const double* w = NULL
    cdef double wsum = 0
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
        for i in range(nb):
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
    if w != NULL:                                    # s_i = w_i / sum(w), summed in order
        for i in range(nb):
            wsum += w[i]
        if wsum == 0:
            return 3
        for i in range(nb):
            d.scale[i] = w[i] / wsum
    else:
        for i in range(nb):
            d.scale[i] = 1.0 / nb
    if h.optimizer == OPT_ADAM:                      # bias corrections of step t
        t_adam[0] += 1
        h.step_size = h.lr / (1 - pow(h.beta1, <double> t_adam[0]))
        h.bc2_sqrt = sqrt(1 - pow(h.beta2, <double> t_adam[0]))
    rc = step_impl(layers, n_layers, h, bnd, x, t, y, d.scale, nb, <real*> d.grad_out,
                   value, nt)
    if rc != 0 and h.optimizer == OPT_ADAM:
        t_adam[0] -= 1                               # nothing was updated
    if rc == 0 and d.accuracy:
        frac[0] = accuracy_frac(<const real*> layers[n_layers - 1].a, t, y, nb, d.k)
    return rc


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
    (C-contiguous, batch_max rows for workspaces; b/s* may be None). Built
    by nncore.functional.train_plan, which checks every array first.
    """
    cdef LayerPtrs* layers
    cdef int n_layers
    cdef bint f64
    cdef Hyper h
    cdef Bounds bnd
    cdef readonly Py_ssize_t batch_max, n_inputs, n_outputs
    cdef readonly bint accuracy
    cdef object keep
    cdef object buffers

    def __cinit__(self, list layers, bint f64, Py_ssize_t batch_max, int loss_code,
                  int optimizer, double momentum, bint nesterov, double weight_decay,
                  double l2, double beta1, double beta2, double eps, dict buffers):
        cdef Py_ssize_t i
        self.layers = <LayerPtrs*> malloc(len(layers) * sizeof(LayerPtrs))
        if self.layers == NULL:
            raise MemoryError()
        self.n_layers = len(layers)
        self.f64 = f64
        self.batch_max = batch_max
        self.keep = layers
        self.buffers = buffers       # x, t, y, w, scale, grad_out: (batch_max, ...)
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
        self.accuracy = loss_code != 0                        # every loss but mse
        self.h.loss = loss_code
        self.h.optimizer = optimizer
        self.h.momentum = momentum
        self.h.nesterov = nesterov
        self.h.weight_decay = weight_decay
        self.h.l2 = l2
        self.h.beta1, self.h.beta2, self.h.eps = beta1, beta2, eps

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
        b = self.buffers
        d.X = ptr(X); d.T = ptr(t); d.Y = <const Py_ssize_t*> ptr(y)
        d.W = <const double*> ptr(w)
        d.n, d.n_in, d.k = n, self.n_inputs, self.n_outputs
        d.xbuf = ptr(b["x"]); d.tbuf = ptr(b["t"]); d.ybuf = <Py_ssize_t*> ptr(b["y"])
        d.wbuf = <double*> ptr(b["w"]); d.scale = <double*> ptr(b["scale"])
        d.grad_out = ptr(b["grad_out"])
        d.accuracy = self.accuracy
        return 0

    cdef raise_for(self, int rc):
        if rc == -1:
            raise MemoryError("nncore: cannot allocate GEMM packing buffers")
        if rc == -12:
            raise ValueError("nncore: a label is outside [0, n_outputs)")
        if rc < 0:
            raise MemoryError("nncore: the loss kernel could not allocate its buffers")

    def step(self, X, t, y, w, double lr, long t_adam, int n_threads):
        """One training step on all rows of X (n <= batch_max, in order): float
        targets t (n, n_outputs) or labels y (n,) intp, sample weights w (n,) or None.

        Returns (status, loss, accuracy, t_adam): status 0 updated; 1 loss not
        finite; 2 a gradient, or the update, would make a parameter or an
        optimizer state NaN or inf; 3 all sample weights 0 (skipped). Nothing is
        updated unless the status is 0. accuracy is the fraction
        right (0 for mse); t_adam the Adam step count after the step.
        """
        cdef Batches d
        cdef double value = 0, frac = 0
        cdef Py_ssize_t n = X.shape[0]
        cdef int rc
        if n < 1 or n > self.batch_max:
            raise ValueError(f"StepPlan.step: n = {n} outside [1, {self.batch_max}]")
        self.data(&d, X, t, y, w)
        self.h.lr = lr
        self.bnd.known = False                    # Python may have changed the arrays
        with nogil:
            if self.f64:
                rc = batch_impl(self.layers, self.n_layers, &self.h, &self.bnd, &d, NULL, 0,
                                n, &t_adam, n_threads, &value, &frac, <double> 0)
            else:
                rc = batch_impl(self.layers, self.n_layers, &self.h, &self.bnd, &d, NULL, 0,
                                n, &t_adam, n_threads, &value, &frac, <float> 0)
        self.raise_for(rc)
        return rc, value, frac, t_adam

    def run_epochs(self, X, t, y, w, orders, Py_ssize_t batch_size, double[::1] lrs,
                   long t_adam, int n_threads):
        """len(lrs) epochs over (X, t | y, w) in one call: epoch e visits the rows
        in orders[e] (an (E, n) intp array of permutations; None: in order) in
        batches of batch_size, with learning rate lrs[e].

        Returns (epochs_done, totals, seen, correct, stop, t_adam): per epoch the
        sums of loss * batch rows, of batch rows and of accuracy * batch rows;
        stop is None, or (epoch, batch, status, loss) of the first step that
        diverged (status 1 or 2, as in step) -- training stops there.
        """
        cdef Batches d
        cdef Py_ssize_t E = lrs.shape[0], n = X.shape[0], e, b, nb, n_batches
        cdef const Py_ssize_t* po = NULL
        cdef const Py_ssize_t* order
        cdef double value = 0, frac = 0
        cdef int rc = 0
        cdef Py_ssize_t done = 0, stop_batch = 0
        if batch_size < 1 or batch_size > self.batch_max:
            raise ValueError(f"StepPlan.run_epochs: batch_size {batch_size} outside "
                             f"[1, {self.batch_max}]")
        self.data(&d, X, t, y, w)
        if orders is not None:
            if (orders.dtype.kind != "i" or orders.dtype.itemsize != sizeof(Py_ssize_t)
                    or orders.ndim != 2 or orders.shape[0] != E or orders.shape[1] != n):
                raise TypeError(f"StepPlan.run_epochs: orders must be ({E}, {n}) intp")
            if n and (orders.min() < 0 or orders.max() >= n):
                raise ValueError("StepPlan.run_epochs: orders holds a row outside [0, n)")
            po = <const Py_ssize_t*> ptr(orders)
        totals = np.zeros(E)
        seen = np.zeros(E)
        correct = np.zeros(E)
        cdef double[::1] tot_v = totals, seen_v = seen, cor_v = correct
        n_batches = (n + batch_size - 1) // batch_size
        self.bnd.known = False
        with nogil:
            for e in range(E):
                self.h.lr = lrs[e]
                order = po + e * n if po != NULL else NULL
                for b in range(n_batches):
                    nb = min(batch_size, n - b * batch_size)
                    if self.f64:
                        rc = batch_impl(self.layers, self.n_layers, &self.h, &self.bnd, &d, order,
                                        b * batch_size, nb, &t_adam, n_threads, &value,
                                        &frac, <double> 0)
                    else:
                        rc = batch_impl(self.layers, self.n_layers, &self.h, &self.bnd, &d, order,
                                        b * batch_size, nb, &t_adam, n_threads, &value,
                                        &frac, <float> 0)
                    if rc == 3:
                        continue
                    if rc != 0:
                        stop_batch = b
                        break
                    tot_v[e] += value * nb
                    seen_v[e] += nb
                    cor_v[e] += frac * nb
                if rc != 0 and rc != 3:
                    break
                done += 1
        self.raise_for(rc)
        stop = (done, stop_batch, rc, value) if rc not in (0, 3) else None
        return done, totals, seen, correct, stop, t_adam
