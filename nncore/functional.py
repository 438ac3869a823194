"""The one validated door to nncore's kernels.

Each function checks shapes, dtypes and memory layout, allocates a missing
`out`, resolves `n_threads` and runs `backend="compiled"` (the Cython
kernels) or `backend="numpy"` (their twins in nncore.reference). Bad input
raises ValueError/TypeError naming the argument before any compiled code
runs. float32 and float64 are supported; arguments of one call share one
dtype.
"""
import numpy as np

from nncore import _activations, _checks, _dense, _gemm, reference
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


# ---- activations ------------------------------------------------------------

ACTIVATIONS = reference.ACTIVATIONS


def _activation(name, slope):
    """(kernel code, slope as float) for an activation name."""
    _checks.choice(name, "activation", ACTIVATIONS)
    return _activations.CODES[name], _checks.real_scalar(slope, "slope")


def _rows(x):
    """x as a 2-D (rows, last axis) view."""
    return x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x


def _input(x, name, ndim=None):
    """A float array, made C-contiguous (copied only when it is not)."""
    x = _checks.float_array(x, name, ndim)
    if ndim is None and x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-D array")
    return _checks.contiguous(x)


def activation_forward(name, z, out=None, *, slope=0.01, backend="compiled", n_threads=None):
    """a = f(z): identity, step, sigmoid, tanh, relu, leaky_relu, softplus, softmax.

    Parameters
    ----------
    name : str, one of ACTIVATIONS
    z : ndarray (..., n), float32 or float64. softmax normalises the last axis.
    out : ndarray like z, optional; may be z itself (in place)
    slope : float, the negative-side slope of leaky_relu

    Returns
    -------
    out : ndarray like z
    """
    _checks.backend(backend)
    code, slope = _activation(name, slope)
    z = _input(z, "z")
    out = _checks.out_array(out, "out", z.shape, z.dtype)
    if backend == "numpy":
        return reference.activation_forward(name, z, out, slope=slope)
    if out is not z:
        z = _checks.unaliased(z, out)
    _activations.activation_forward(code, slope, _rows(z), _rows(out),
                                    resolve_num_threads(n_threads))
    return out


def activation_backward(name, z, a, grad_a, out=None, *, slope=0.01,
                        backend="compiled", n_threads=None):
    """grad_z = grad_a * f'(z) (softmax: grad_z = a (grad_a - sum(grad_a a))).

    Parameters
    ----------
    name : str, one of ACTIVATIONS
    z, a, grad_a : ndarray (..., n), one dtype; a = f(z), grad_a = dL/da
    out : ndarray like z, optional; may be grad_a itself (in place)

    Returns
    -------
    out : ndarray, dL/dz
    """
    _checks.backend(backend)
    code, slope = _activation(name, slope)
    z, a, grad_a = _input(z, "z"), _input(a, "a"), _input(grad_a, "grad_a")
    _checks.same_dtype(z=z, a=a, grad_a=grad_a)
    _checks.shape(a, "a", z.shape)
    _checks.shape(grad_a, "grad_a", z.shape)
    out = _checks.out_array(out, "out", z.shape, z.dtype)
    if backend == "numpy":
        return reference.activation_backward(name, z, a, grad_a, out, slope=slope)
    z, a = _checks.unaliased(z, out), _checks.unaliased(a, out)
    if out is not grad_a:
        grad_a = _checks.unaliased(grad_a, out)
    _activations.activation_backward(code, slope, _rows(z), _rows(a), _rows(grad_a),
                                     _rows(out), resolve_num_threads(n_threads))
    return out


# ---- dense layer ------------------------------------------------------------

def _dense_operands(x, weight):
    x = _checks.float_array(x, "x", 2)
    weight = _checks.float_array(weight, "weight", 2)
    _checks.same_dtype(x=x, weight=weight)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {weight.shape} "
                         f"= (n_out, n_in) with n_in = {weight.shape[1]}")
    return _checks.strided_ok(x), _checks.strided_ok(weight)


def dense_forward(x, weight, bias, activation, *, z_out=None, a_out=None, slope=0.01,
                  backend="compiled", n_threads=None):
    """z = x @ weight.T + bias, a = f(z), in one GEMM with a fused epilogue.

    Parameters
    ----------
    x : ndarray (n, n_in)
    weight : ndarray (n_out, n_in), one row per neuron
    bias : ndarray (n_out,) or None
    activation : str, one of ACTIVATIONS
    z_out, a_out : ndarray (n, n_out), optional. With activation "identity"
        and no a_out, a is z.

    Returns
    -------
    z, a : ndarray (n, n_out)
    """
    _checks.backend(backend)
    code, slope = _activation(activation, slope)
    x, weight = _dense_operands(x, weight)
    n, n_out = x.shape[0], weight.shape[0]
    if bias is not None:
        bias = _checks.contiguous(_checks.shape(_checks.float_array(bias, "bias", 1),
                                                "bias", (n_out,)))
        _checks.same_dtype(x=x, bias=bias)
    z = _checks.out_array(z_out, "z_out", (n, n_out), x.dtype)
    if a_out is None and activation == "identity":
        a = z
    else:
        a = _checks.out_array(a_out, "a_out", (n, n_out), x.dtype)
        if a is z and activation != "identity":
            raise ValueError(f"a_out is z_out: {activation} needs both z and a kept")
    if backend == "numpy":
        return reference.dense_forward(x, weight, bias, activation, z_out=z,
                                       a_out=None if a is z else a, slope=slope)
    x = _checks.unaliased(x, z, a)
    weight = _checks.unaliased(weight, z, a)
    if bias is not None:
        bias = _checks.unaliased(bias, z, a)
    _dense.dense_forward(x, weight, bias, code, slope, z, a, resolve_num_threads(n_threads))
    return z, a


def dense_backward(x, weight, z, a, grad_a, activation, *, grad_x=None, grad_weight=None,
                   grad_bias=None, grad_z=None, need_grad_x=True, slope=0.01,
                   backend="compiled", n_threads=None):
    """Backward through a = f(x @ weight.T + bias).

    grad_z = grad_a * f'(z); grad_weight = grad_z.T @ x; grad_bias = grad_z.sum(0);
    grad_x = grad_z @ weight.

    Parameters
    ----------
    x : ndarray (n, n_in); weight : ndarray (n_out, n_in)
    z, a, grad_a : ndarray (n, n_out), from dense_forward and dL/da
    grad_x, grad_weight, grad_bias, grad_z : optional outputs; grad_z may be grad_a
    need_grad_x : bool. False skips grad_x (the first layer needs none).

    Returns
    -------
    grad_x : ndarray (n, n_in), or None; grad_weight : (n_out, n_in); grad_bias : (n_out,)
    """
    _checks.backend(backend)
    code, slope = _activation(activation, slope)
    x, weight = _dense_operands(x, weight)
    n, n_in, n_out = x.shape[0], x.shape[1], weight.shape[0]
    arrays = {}
    for name, arr in (("z", z), ("a", a), ("grad_a", grad_a)):
        arr = _checks.shape(_checks.float_array(arr, name, 2), name, (n, n_out))
        arrays[name] = _checks.contiguous(arr)
    z, a, grad_a = arrays["z"], arrays["a"], arrays["grad_a"]
    dtype = _checks.same_dtype(x=x, z=z, a=a, grad_a=grad_a)
    gz = _checks.out_array(grad_z, "grad_z", (n, n_out), dtype)
    gw = _checks.out_array(grad_weight, "grad_weight", (n_out, n_in), dtype)
    gb = _checks.out_array(grad_bias, "grad_bias", (n_out,), dtype)
    gx = _checks.out_array(grad_x, "grad_x", (n, n_in), dtype) if need_grad_x else None
    if backend == "numpy":
        return reference.dense_backward(x, weight, z, a, grad_a, activation, grad_x=gx,
                                        grad_weight=gw, grad_bias=gb, grad_z=gz,
                                        need_grad_x=need_grad_x, slope=slope)
    outs = (gz, gw, gb, gx)
    x, weight = _checks.unaliased(x, *outs), _checks.unaliased(weight, *outs)
    z, a = _checks.unaliased(z, *outs), _checks.unaliased(a, *outs)
    if grad_a is not gz:
        grad_a = _checks.unaliased(grad_a, *outs)
    _dense.dense_backward(x, weight, z, a, grad_a, code, slope, gz, gx, gw, gb,
                          resolve_num_threads(n_threads))
    return gx, gw, gb
