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


# ---- activations ------------------------------------------------------------

ACTIVATIONS = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu",
               "softplus", "softmax")


def _sigmoid(z):
    """1 / (1 + exp(-z)) through exp(-|z|), which never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def activation_forward(name, z, out=None, *, slope=0.01):
    """a = f(z), elementwise; softmax along the last axis.

    step(z) = 1[z > 0] (step(0) = 0); relu(z) = z 1[z > 0];
    leaky_relu(z) = z if z > 0 else slope z; softplus(z) = max(z, 0) + log1p(exp(-|z|));
    softmax(z)_j = exp(z_j - max z) / sum_k exp(z_k - max z).
    """
    if name == "identity":
        a = z
    elif name == "step":
        a = (z > 0).astype(z.dtype)
    elif name == "sigmoid":
        a = _sigmoid(z)
    elif name == "tanh":
        a = np.tanh(z)
    elif name == "relu":
        a = np.where(z > 0, z, 0)
    elif name == "leaky_relu":
        a = np.where(z > 0, z, slope * z)
    elif name == "softplus":
        a = np.where(z > 0, z, 0) + np.log1p(np.exp(-np.abs(z)))
    elif name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
    else:
        raise ValueError(f"unknown activation {name!r}")
    return _into(out, a.astype(z.dtype, copy=False))


def activation_backward(name, z, a, grad_a, out=None, *, slope=0.01):
    """grad_z = grad_a * f'(z), with f' from whichever of z, a is cheaper.

    identity' = 1; step' = 0 (everywhere, by convention); sigmoid' = a (1 - a);
    tanh' = 1 - a^2; relu' = 1[z > 0] (relu'(0) = 0); leaky_relu' = 1 or slope;
    softplus' = sigmoid(z); softmax: grad_z = a (grad_a - sum(grad_a a, last axis)).
    """
    if name == "identity":
        g = grad_a
    elif name == "step":
        g = np.zeros_like(grad_a)
    elif name == "sigmoid":
        g = grad_a * (a * (1 - a))
    elif name == "tanh":
        g = grad_a * (1 - a * a)
    elif name == "relu":
        g = np.where(z > 0, grad_a, 0)
    elif name == "leaky_relu":
        g = np.where(z > 0, grad_a, slope * grad_a)
    elif name == "softplus":
        g = grad_a * _sigmoid(z)
    elif name == "softmax":
        g = a * (grad_a - (grad_a * a).sum(axis=-1, keepdims=True))
    else:
        raise ValueError(f"unknown activation {name!r}")
    return _into(out, g.astype(grad_a.dtype, copy=False))


# ---- dense layer ------------------------------------------------------------

def dense_forward(x, weight, bias, activation, *, z_out=None, a_out=None, slope=0.01):
    """z = x @ weight.T + bias, a = f(z).

    x (n, n_in), weight (n_out, n_in), bias (n_out,) or None -> z, a (n, n_out).
    """
    z = x @ weight.T
    if bias is not None:
        z = z + bias
    z = _into(z_out, z)
    a = activation_forward(activation, z, a_out, slope=slope)
    return z, a


def dense_backward(x, weight, z, a, grad_a, activation, *, grad_x=None,
                   grad_weight=None, grad_bias=None, grad_z=None,
                   need_grad_x=True, slope=0.01):
    """The chain rule through one dense layer.

    grad_z = grad_a * f'(z); grad_weight = grad_z.T @ x; grad_bias = grad_z.sum(0);
    grad_x = grad_z @ weight (None when need_grad_x is False).
    """
    gz = activation_backward(activation, z, a, grad_a, grad_z, slope=slope)
    gw = _into(grad_weight, gz.T @ x)
    gb = _into(grad_bias, gz.sum(axis=0))
    gx = _into(grad_x, gz @ weight) if need_grad_x else None
    return gx, gw, gb
