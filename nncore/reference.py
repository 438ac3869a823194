"""The NumPy twins of nncore's compiled kernels: the specification.

Same names, arguments and `out=` behaviour as nncore.functional (less
`backend` and `n_threads`). Plain NumPy written for clarity; no validation
(functional checks before it calls either backend).

Names follow the maths: x (n_samples, n_in), w (n_out, n_in) one row per
neuron, b (n_out,), z = x @ w.T + b, a = f(z); gradients grad_*.
"""
import math

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


# ---- optimizer updates --------------------------------------------------------

def sgd_step(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False,
             weight_decay=0.0):
    """SGD with momentum, PyTorch's convention (dampening 0), in place:

        g = grad + weight_decay * param
        momentum == 0:  param -= lr * g
        else:           velocity = momentum * velocity + g
                        param -= lr * (g + momentum * velocity)   nesterov
                        param -= lr * velocity                    otherwise

    velocity starts at zeros, so the first step sets it to g. A zero
    weight_decay is skipped (not multiplied in).
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum == 0:
        param -= lr * g
        return None
    velocity[...] = momentum * velocity + g
    if nesterov:
        param -= lr * (g + momentum * velocity)
    else:
        param -= lr * velocity
    return None


def adam_step(param, grad, m, v, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0):
    """Adam, PyTorch's convention (L2 weight decay on the gradient), in place;
    step t >= 1 counts this update:

        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        param -= (lr / (1 - beta1**t)) * m / denom

    The scalar factors are Python floats (double), as in PyTorch's
    single-tensor Adam; float32 arrays are updated in float32.
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
    param -= step_size * m / denom
    return None
