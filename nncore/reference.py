"""The NumPy twins of nncore's compiled kernels: the specification.

Same names, arguments and `out=` behaviour as nncore.functional (less
`backend` and `n_threads`). Plain NumPy written for clarity; no validation
(functional checks before it calls either backend).

Names follow the maths: x (n_samples, n_in), w (n_out, n_in) one row per
neuron, b (n_out,), z = x @ w.T + b, a = f(z); gradients grad_*.
"""
import numpy as np


def _into(out, value):
    """Write value into out (allocating when out is None); return out."""
    if out is None:
        return np.ascontiguousarray(value)
    out[...] = value
    return out


# ---- gemm -------------------------------------------------------------------

def gemm(a, b, out=None, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out, op = transpose if trans_*.

    op(a): (m, k), op(b): (k, n), out: (m, n). beta == 0: out is not read
    (it may hold NaN).
    """
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    product = alpha * (opa @ opb)
    if beta == 0 or out is None:
        return _into(out, product)
    out[...] = product + beta * out
    return out
