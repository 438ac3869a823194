"""The one validated door to nncore's kernels.

Each function checks shapes, dtypes and memory layout, allocates a missing
`out`, resolves `n_threads` and runs `backend="compiled"` (the Cython
kernels) or `backend="numpy"` (their twins in nncore.reference). Bad input
raises ValueError/TypeError naming the argument before any compiled code
runs. float32 and float64 are supported; arguments of one call share one
dtype.
"""
import math
import numbers

import numpy as np

from nncore import _checks, _gemm, _optim, reference
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


# ---- optimizer updates --------------------------------------------------------

def _updated_in_place(x, name, like=None):
    """x is an ndarray nncore can update in place through a flat view: float32/64,
    C-contiguous, writeable, and (given `like`) of like's shape and dtype."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place), "
                        f"got {type(x).__name__}")
    _checks.float_array(x, name)
    if like is not None:
        _checks.same_dtype(param=like, **{name: x})
        _checks.shape(x, name, like.shape)
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (it is updated in place, never "
                         f"copied), got strides {x.strides} for shape {x.shape}")
    if not x.flags.writeable:
        raise ValueError(f"{name} is read-only but is updated in place")
    return x


def _gradient(grad, param, *state):
    """grad checked against param; copied when it may share memory with an
    array the update writes, so the step always reads the gradient as passed."""
    grad = _checks.float_array(grad, "grad")
    _checks.same_dtype(param=param, grad=grad)
    _checks.shape(grad, "grad", param.shape)
    return _checks.unaliased(grad, param, *state)


def _distinct(**arrays):
    """No two updated arrays share memory (one buffer cannot hold two states)."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    for i, (name_a, a) in enumerate(items):
        for name_b, b in items[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name_a} and {name_b} share memory: each is updated "
                                 f"in place and needs its own array")


def _beta(value, name):
    value = _checks.real_scalar(value, name)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _step_count(step):
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int >= 1 (the count after this update), "
                        f"got {type(step).__name__} {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the count after this update), got {step}")
    return int(step)


def sgd_step(param, grad, velocity=None, *, lr, momentum=0.0, nesterov=False,
             weight_decay=0.0, backend="compiled", n_threads=None):
    """One SGD step in place, PyTorch's torch.optim.SGD with dampening 0:

        g = grad + weight_decay * param
        momentum == 0:  param -= lr * g
        else:           velocity = momentum * velocity + g
                        param -= lr * (g + momentum * velocity)   (nesterov)
                        param -= lr * velocity                    (otherwise)

    Start velocity at zeros: the first step then sets it to g, as PyTorch
    initialises its momentum buffer to the first gradient.

    Parameters
    ----------
    param : ndarray, any shape, float32 or float64, C-contiguous, writeable.
        Updated in place.
    grad : ndarray, param's shape and dtype, any layout. Read only; copied
        first when it shares memory with param or velocity.
    velocity : ndarray like param, or None. Updated in place; required when
        momentum > 0, ignored (left as is) when momentum == 0.
    lr : float > 0
    momentum : float >= 0
    nesterov : bool. Nesterov momentum; needs momentum > 0.
    weight_decay : float >= 0. L2 penalty added to the gradient.
    backend : "compiled" or "numpy"
    n_threads : int >= 1, optional

    Returns
    -------
    None
    """
    _checks.backend(backend)
    param = _updated_in_place(param, "param")
    lr = _checks.real_scalar(lr, "lr", positive=True)
    momentum = _checks.real_scalar(momentum, "momentum", nonnegative=True)
    weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
    if not isinstance(nesterov, (bool, np.bool_)):
        raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__} {nesterov!r}")
    nesterov = bool(nesterov)
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0, got momentum=0.0")
    if velocity is None and momentum > 0:
        raise ValueError(f"velocity is required when momentum > 0 (got momentum={momentum}): "
                         f"pass an array like param, zeros before the first step")
    if velocity is not None:
        velocity = _updated_in_place(velocity, "velocity", like=param)
        _distinct(param=param, velocity=velocity)
    if momentum == 0:
        velocity = None                      # not read, not written
    grad = _gradient(grad, param, velocity)
    n_threads = resolve_num_threads(n_threads)
    if backend == "numpy":
        return reference.sgd_step(param, grad, velocity, lr=lr, momentum=momentum,
                                  nesterov=nesterov, weight_decay=weight_decay)
    _optim.sgd_step(param.reshape(-1), _checks.contiguous(grad).reshape(-1),
                    None if velocity is None else velocity.reshape(-1),
                    lr, momentum, weight_decay, nesterov, n_threads)
    return None


def adam_step(param, grad, m, v, *, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, backend="compiled", n_threads=None):
    """One Adam step in place, PyTorch's torch.optim.Adam (L2 weight decay
    added to the gradient, not AdamW's decoupled decay); t = step:

        g = grad + weight_decay * param
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        denom = sqrt(v) / sqrt(bias_correction2) + eps
        param -= (lr / bias_correction1) * m / denom

    The same order of operations as PyTorch's single-tensor Adam, and the
    scalar factors are computed once per call in double as there, so float64
    results agree with PyTorch to rounding. (PyTorch >= 2.0 forms m with
    `exp_avg.lerp_(grad, 1 - beta1)`: the same value, rounded differently.)
    Start m and v at zeros and pass step = 1, 2, 3, ...

    Parameters
    ----------
    param : ndarray, any shape, float32 or float64, C-contiguous, writeable.
        Updated in place.
    grad : ndarray, param's shape and dtype, any layout. Read only; copied
        first when it shares memory with param, m or v.
    m, v : ndarray like param. First and second moment estimates, updated
        in place.
    step : int >= 1. The number of updates including this one.
    lr : float > 0
    beta1, beta2 : float in [0, 1)
    eps : float > 0
    weight_decay : float >= 0. L2 penalty added to the gradient.
    backend : "compiled" or "numpy"
    n_threads : int >= 1, optional

    Returns
    -------
    None
    """
    _checks.backend(backend)
    param = _updated_in_place(param, "param")
    m = _updated_in_place(m, "m", like=param)
    v = _updated_in_place(v, "v", like=param)
    _distinct(param=param, m=m, v=v)
    step = _step_count(step)
    lr = _checks.real_scalar(lr, "lr", positive=True)
    beta1 = _beta(beta1, "beta1")
    beta2 = _beta(beta2, "beta2")
    eps = _checks.real_scalar(eps, "eps", positive=True)
    weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
    grad = _gradient(grad, param, m, v)
    n_threads = resolve_num_threads(n_threads)
    if backend == "numpy":
        return reference.adam_step(param, grad, m, v, step=step, lr=lr, beta1=beta1,
                                   beta2=beta2, eps=eps, weight_decay=weight_decay)
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    _optim.adam_step(param.reshape(-1), _checks.contiguous(grad).reshape(-1),
                     m.reshape(-1), v.reshape(-1), beta1, beta2, step_size,
                     bias_correction2_sqrt, eps, weight_decay, n_threads)
    return None
