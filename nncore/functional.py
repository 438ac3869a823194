"""The one validated door to nncore's kernels.

Each function checks shapes, dtypes and memory layout, allocates a missing
`out`, resolves `n_threads` and runs `backend="compiled"` (the Cython
kernels) or `backend="numpy"` (their twins in nncore.reference). Bad input
raises ValueError/TypeError naming the argument before any compiled code
runs. float32 and float64 are supported; arguments of one call share one
dtype.
"""
import numpy as np

from nncore import _checks, _gemm, reference
from nncore._threads import resolve_num_threads


# ---- gemm -------------------------------------------------------------------

def gemm(a, b, out=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
         backend="compiled", n_threads=None):
    """C = alpha * op(A) @ op(B) + beta * C.

    Parameters
    ----------
    a : ndarray (m, k), or (k, m) with trans_a
    b : ndarray (k, n), or (n, k) with trans_b
    out : ndarray (m, n), optional. Read only when beta != 0 (then required).
    trans_a, trans_b : bool. op(X) = X.T when set; no copy is made.
    alpha, beta : float

    Returns
    -------
    out : ndarray (m, n)
    """
    _checks.backend(backend)
    a = _checks.float_array(a, "a", 2)
    b = _checks.float_array(b, "b", 2)
    dtype = _checks.same_dtype(a=a, b=b)
    alpha = _checks.real_scalar(alpha, "alpha")
    beta = _checks.real_scalar(beta, "beta")
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    (m, k), (k2, n) = opa.shape, opb.shape
    if k != k2:
        raise ValueError(f"op(a) has shape {opa.shape} and op(b) {opb.shape}: "
                         f"inner dimensions {k} and {k2} differ")
    if out is None and beta != 0:
        raise ValueError("beta != 0 reads out: pass out=")
    out = _checks.out_array(out, "out", (m, n), dtype)
    if backend == "numpy":
        return reference.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b,
                              alpha=alpha, beta=beta)
    opa = _checks.strided_ok(_checks.unaliased(opa, out))
    opb = _checks.strided_ok(_checks.unaliased(opb, out))
    _gemm.gemm(opa, opb, out, alpha, beta, resolve_num_threads(n_threads))
    return out
