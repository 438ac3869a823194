"""The one validated door to nncore's kernels.

Each function checks shapes, dtypes and memory layout, allocates a missing
`out`, resolves `n_threads` and runs `backend="compiled"` (the Cython
kernels) or `backend="numpy"` (their twins in nncore.reference). Bad input
raises ValueError/TypeError naming the argument before any kernel computes
(gemm checks its usual call inline; gemm and dense_forward/backward let the
kernel find an input that overlaps an output, and copy it then). float32 and
float64 are supported; arguments of one call share one dtype.
"""
from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from nncore import _checks, reference
from nncore._kernels import (activations as _activations, codes as _codes, dense as _dense,
                             finite as _finite, gemm as _gemm, losses as _losses,
                             optim as _optim)
from nncore._threads import resolve_num_threads

if TYPE_CHECKING:
    from typing import Protocol

    import numpy.typing as npt

    class TrainPlan(Protocol):
        """What train_plan returns: the compiled StepPlan or reference.StepPlan."""
        batch_max: int

        def step(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
                 w: np.ndarray | None, lr: float, step: int,
                 n_threads: int, /) -> tuple[int, float, float, int]: ...

        def gradients(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
                      w: np.ndarray | None, n_threads: int, /,
                      scale: np.ndarray | None = ..., l2: bool = ...,
                      ) -> tuple[int, float, float]: ...

        def apply(self, lr: float, step: int, n_threads: int, /) -> tuple[int, int]: ...

        def run(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
                w: np.ndarray | None, orders: np.ndarray | None, batch_size: int,
                lrs: np.ndarray, sums: np.ndarray, epoch: int, batch: int,
                max_batches: int, seconds: float, step: int, n_threads: int, /,
                ) -> tuple[int, int, int, float, float, int]: ...


_TYPED: dict[tuple[Any, str], Callable[..., Any]] = {}


def _typed(kernel: Any, dtype: np.dtype) -> Callable[..., Any]:
    """The float or double specialization of a fused Cython kernel: calling it
    directly skips Cython's per-call signature dispatch (~1-1.5 us)."""
    key = (kernel, dtype.char)
    fn = _TYPED.get(key)
    if fn is None:
        fn = _TYPED[key] = kernel["float" if dtype.char == "f" else "double"]
    return fn


def _by_dtype(kernel: Any) -> dict[np.dtype, Callable[..., Any]]:
    """{float32: kernel's float specialization, float64: its double one}: the typed
    kernels of a usual call checked inline, a lookup that refuses other dtypes."""
    return {np.dtype(np.float32): kernel["float"], np.dtype(np.float64): kernel["double"]}


# ---- gemm -------------------------------------------------------------------

_GEMM_KERNELS = _by_dtype(_gemm.gemm)


def gemm(a: npt.ArrayLike, b: npt.ArrayLike, out: np.ndarray | None = None, *,
         trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0,
         backend: str = "compiled", n_threads: int | None = None) -> np.ndarray:
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
    if (backend == "compiled" and type(a) is np.ndarray and type(b) is np.ndarray
            and a.ndim == 2 and b.ndim == 2 and b.dtype is a.dtype
            and type(alpha) is float and type(beta) is float
            and alpha - alpha == 0.0 and beta - beta == 0.0):
        # The usual call, checked inline (a few microseconds less on a small
        # product); anything else -- and any refusal -- takes the checks below.
        kernel = _GEMM_KERNELS.get(a.dtype)
        opa = a.T if trans_a else a
        opb = b.T if trans_b else b
        (m, k), (k2, n) = opa.shape, opb.shape
        c = None
        if out is None:
            if beta == 0.0:
                c = np.empty((m, n), a.dtype)
        elif type(out) is np.ndarray and out.dtype is a.dtype and out.shape == (m, n):
            c = out
        if kernel is not None and k == k2 and c is not None:
            try:
                if kernel(opa, opb, c, alpha, beta, resolve_num_threads(n_threads)) == 0:
                    return c
            except (ValueError, TypeError, BufferError):
                pass                       # (read-only or strided out, n_threads: below)
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
    kernel = _GEMM_KERNELS[dtype]
    n_threads = resolve_num_threads(n_threads)
    if kernel(opa, opb, out, alpha, beta, n_threads) != 0:
        # an input may overlap out, or has strides of part elements: on copies
        kernel(opa.copy(), opb.copy(), out, alpha, beta, n_threads)
    return out


# ---- activations ------------------------------------------------------------

ACTIVATIONS = reference.ACTIVATIONS


def _activation(name: str, slope: float) -> tuple[int, float]:
    """(kernel code, slope as float) for an activation name."""
    _checks.choice(name, "activation", ACTIVATIONS)
    return _codes.ACTIVATIONS[name], _checks.real_scalar(slope, "slope")


def _rows(x: np.ndarray) -> np.ndarray:
    """x as a 2-D (rows, last axis) view (rows counted, not inferred: x may be empty)."""
    return x.reshape(math.prod(x.shape[:-1]), x.shape[-1]) if x.ndim != 2 else x


def _input(x: npt.ArrayLike, name: str, ndim: int | None = None) -> np.ndarray:
    """A float array, made C-contiguous (copied only when it is not)."""
    x = _checks.float_array(x, name, ndim)
    if ndim is None and x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-D array")
    return _checks.contiguous(x)


_ACTIVATION_FORWARD_KERNELS = _by_dtype(_activations.activation_forward)
_ACTIVATION_BACKWARD_KERNELS = _by_dtype(_activations.activation_backward)


def _usual_activation(name: Any, slope: Any, z: Any, out: Any
                      ) -> tuple[int, np.ndarray] | None:
    """(kernel code, out or a new array) for the usual call -- z a 2-D float32/64
    ndarray, a known name, a finite float slope, out None or an ndarray of z's dtype
    and shape -- else None: the full checks follow."""
    if not (type(z) is np.ndarray and z.ndim == 2 and z.dtype in _ACTIVATION_FORWARD_KERNELS
            and type(name) is str and type(slope) is float and slope - slope == 0.0):
        return None
    code = _codes.ACTIVATIONS.get(name)
    o = np.empty(z.shape, z.dtype) if out is None else out
    if (code is None or type(o) is not np.ndarray or o.dtype is not z.dtype
            or o.shape != z.shape):
        return None
    return code, o


def activation_forward(name: str, z: npt.ArrayLike, out: np.ndarray | None = None, *,
                       slope: float = 0.01, backend: str = "compiled",
                       n_threads: int | None = None) -> np.ndarray:
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
    usual = _usual_activation(name, slope, z, out) if backend == "compiled" else None
    if usual is not None and (out is None or out is z or not np.may_share_memory(z, out)):
        code, o = usual                               # the usual call, checked inline
        try:
            _ACTIVATION_FORWARD_KERNELS[z.dtype](code, slope, z, o,
                                                 resolve_num_threads(n_threads))
            return o
        except (ValueError, TypeError, BufferError):
            pass                           # (strided or read-only arrays, n_threads: below)
    _checks.backend(backend)
    code, slope = _activation(name, slope)
    z = _input(z, "z")
    out = _checks.out_array(out, "out", z.shape, z.dtype)
    if backend == "numpy":
        return reference.activation_forward(name, z, out, slope=slope)
    if out is not z:
        z = _checks.unaliased(z, out)
    _ACTIVATION_FORWARD_KERNELS[z.dtype](code, slope, _rows(z), _rows(out),
                                         resolve_num_threads(n_threads))
    return out


def activation_backward(name: str, z: npt.ArrayLike, a: npt.ArrayLike, grad_a: npt.ArrayLike,
                        out: np.ndarray | None = None, *, slope: float = 0.01,
                        backend: str = "compiled", n_threads: int | None = None) -> np.ndarray:
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
    usual = (_usual_activation(name, slope, z, out)
             if backend == "compiled" and type(a) is np.ndarray
             and type(grad_a) is np.ndarray and a.dtype is z.dtype is grad_a.dtype
             and a.shape == z.shape == grad_a.shape else None)
    if usual is not None and (out is None or (not np.may_share_memory(z, out)
                                              and not np.may_share_memory(a, out)
                                              and (out is grad_a
                                                   or not np.may_share_memory(grad_a, out)))):
        code, o = usual                               # the usual call, checked inline
        try:
            _ACTIVATION_BACKWARD_KERNELS[z.dtype](code, slope, z, a, grad_a, o,
                                                  resolve_num_threads(n_threads))
            return o
        except (ValueError, TypeError, BufferError):
            pass                           # (strided or read-only arrays, n_threads: below)
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
    _ACTIVATION_BACKWARD_KERNELS[z.dtype](code, slope, _rows(z), _rows(a), _rows(grad_a),
                                          _rows(out), resolve_num_threads(n_threads))
    return out


# ---- dense layer ------------------------------------------------------------

def _dense_operands(x: npt.ArrayLike,
                    weight: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = _checks.float_array(x, "x", 2)
    weight = _checks.float_array(weight, "weight", 2)
    _checks.same_dtype(x=x, weight=weight)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features but weight has shape {weight.shape} "
                         f"= (n_out, n_in) with n_in = {weight.shape[1]}")
    return _checks.strided_ok(x), _checks.strided_ok(weight)


_DENSE_FORWARD_KERNELS = _by_dtype(_dense.dense_forward)


def dense_forward(x: npt.ArrayLike, weight: npt.ArrayLike, bias: npt.ArrayLike | None,
                  activation: str, *, z_out: np.ndarray | None = None,
                  a_out: np.ndarray | None = None, slope: float = 0.01,
                  backend: str = "compiled", n_threads: int | None = None,
                  finite_x: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """z = x @ weight.T + bias, a = f(z), in one GEMM with a fused epilogue.

    Parameters
    ----------
    x : ndarray (n, n_in)
    weight : ndarray (n_out, n_in), one row per neuron
    bias : ndarray (n_out,) or None
    activation : str, one of ACTIVATIONS
    z_out, a_out : ndarray (n, n_out), optional. With activation "identity"
        and no a_out, a is z. a_out may be z_out when f' follows from a alone
        (A_DERIVABLE): a = f(z) is then written over z.
    finite_x : bool. Raise ValueError when x holds NaN or inf: each block of x is
        checked from cache right after the product read it, so x is read from
        memory once (z_out and a_out then hold what the product made of it).

    Returns
    -------
    z, a : ndarray (n, n_out)
    """
    if (backend == "compiled" and type(x) is np.ndarray and type(weight) is np.ndarray
            and x.ndim == 2 and weight.ndim == 2 and weight.dtype is x.dtype
            and x.shape[1] == weight.shape[1] and type(activation) is str
            and type(slope) is float and slope - slope == 0.0
            and (bias is None or (type(bias) is np.ndarray and bias.dtype is x.dtype
                                  and bias.shape == (weight.shape[0],)))):
        # The usual call, checked inline (~5-10 us less a small layer); anything
        # else -- and any refusal or overlap -- takes the checks below.
        kernel = _DENSE_FORWARD_KERNELS.get(x.dtype)
        code = _codes.ACTIVATIONS.get(activation)
        shape = (x.shape[0], weight.shape[0])
        z = np.empty(shape, x.dtype) if z_out is None else z_out
        if a_out is None:
            a = z if activation == "identity" else np.empty(shape, x.dtype)
        else:
            a = a_out
        if (kernel is not None and code is not None and type(z) is np.ndarray
                and type(a) is np.ndarray and z.dtype is x.dtype and a.dtype is x.dtype
                and z.shape == shape and a.shape == shape
                and (a is not z or a_derivable(activation, slope))):
            try:
                status = kernel(x, weight, bias, code, slope, z, a,
                                resolve_num_threads(n_threads), finite_x)
            except (ValueError, TypeError, BufferError):
                status = None              # (read-only or strided outputs, n_threads: below)
            if status == 0:
                return z, a
            if status == 1:
                raise ValueError("x contains NaN or inf")
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
        if a is z and not a_derivable(activation, slope):
            raise ValueError(f"a_out is z_out: {activation}' needs z kept (only "
                             f"{', '.join(A_DERIVABLE)} with slope >= 0 may share it)")
    if backend == "numpy":
        return reference.dense_forward(x, weight, bias, activation, z_out=z, a_out=a,
                                       slope=slope, finite_x=finite_x)
    kernel = _DENSE_FORWARD_KERNELS[x.dtype]
    n_threads = resolve_num_threads(n_threads)
    status = kernel(x, weight, bias, code, slope, z, a, n_threads, finite_x)
    if status == 2:                                  # an input may share memory with z or a
        status = kernel(x.copy(), weight.copy(), None if bias is None else bias.copy(),
                        code, slope, z, a, n_threads, finite_x)
    if status == 1:
        raise ValueError("x contains NaN or inf")
    return z, a


def dense_backward(x: npt.ArrayLike, weight: npt.ArrayLike, z: npt.ArrayLike,
                   a: npt.ArrayLike, grad_a: npt.ArrayLike, activation: str, *,
                   grad_x: np.ndarray | None = None, grad_weight: np.ndarray | None = None,
                   grad_bias: np.ndarray | None = None, grad_z: np.ndarray | None = None,
                   need_grad_x: bool = True, slope: float = 0.01,
                   backend: str = "compiled", n_threads: int | None = None,
                   ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
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
    kernel = _typed(_dense.dense_backward, dtype)
    n_threads = resolve_num_threads(n_threads)
    if kernel(x, weight, z, a, grad_a, code, slope, gz, gx, gw, gb, n_threads) == 2:
        # an input may share memory with an output: on copies (grad_a may be grad_z)
        kernel(x.copy(), weight.copy(), z.copy(), a.copy(),
               grad_a if grad_a is gz else grad_a.copy(), code, slope, gz, gx, gw, gb,
               n_threads)
    return gx, gw, gb

# ---- losses -----------------------------------------------------------------

LOSSES = reference.LOSSES
_LABEL_LOSSES = ("softmax_cross_entropy", "hinge")


def _row_scale(n: int, sample_weight: npt.ArrayLike | None) -> np.ndarray:
    """s_i = 1/N, or w_i / sum(w) with the sum taken in row order (cumsum), as the
    fused training step takes it, so the two compiled paths agree bitwise."""
    if sample_weight is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(sample_weight, dtype=np.float64)
    return w / np.cumsum(w)[-1]


def loss_forward_backward(name: str, output: npt.ArrayLike, target: npt.ArrayLike,
                          grad_out: np.ndarray | None = None, *,
                          sample_weight: npt.ArrayLike | None = None,
                          backend: str = "compiled",
                          n_threads: int | None = None) -> tuple[float, np.ndarray]:
    """L = sum_i s_i l_i(o_i, t_i) and grad_out = dL/d output, with s_i = 1/N,
    or s_i = w_i / sum(w) given sample_weight w.

    Per-row losses l_i, o = output row i (K entries), margin_j = o_j - o_y + 1:

    - "mse":  l = 1/2 sum_j (o_j - t_j)^2;   dl/do = o - t
    - "softmax_cross_entropy" (from logits):
              l = logsumexp(o) - o_y;   dl/do = softmax(o) - onehot(y);
              logsumexp(o) = m + log sum_j exp(o_j - m), m = max_j o_j
    - "binary_cross_entropy" (from logits, one independent label per entry):
              l = sum_j max(o_j, 0) - o_j t_j + log1p(exp(-|o_j|));
              dl/do = sigmoid(o) - t
    - "hinge" (multiclass SVM, Weston-Watkins as in cs231n, margin 1):
              l = sum_{j != y} max(0, margin_j);
              dl/do_j = 1[margin_j > 0] (j != y),  dl/do_y = -#{j != y : margin_j > 0}.
              A margin of exactly 0 is inactive: it adds 0 to l and 0 to dl/do.

    Rows are computed in double (float32 widened) and gradients rounded once
    to output's dtype. The value is summed in double in row order, so it is
    identical for any n_threads. NaN in output is not checked for: it makes
    the value NaN and reaches the gradient entries that depend on it.

    Parameters
    ----------
    name : str, one of LOSSES
    output : ndarray (N, K), float32 or float64, N >= 1, K >= 1
    target : ndarray
        (N, K) floats for "mse" and "binary_cross_entropy" (the latter in
        [0, 1]), converted to output's dtype; (N,) integer class labels in
        [0, K) for "softmax_cross_entropy" and "hinge" (any integer dtype).
    grad_out : ndarray (N, K), output's dtype, C-contiguous, optional.
        Overwritten (not accumulated) with dL/d output; allocated when None.
    sample_weight : array (N,) of real numbers >= 0, not all zero, optional
    backend : "compiled" or "numpy"
    n_threads : int >= 1, optional (default nncore.get_num_threads())

    Returns
    -------
    value : float
    grad_out : ndarray (N, K)
    """
    _checks.backend(backend)
    _checks.choice(name, "name", LOSSES)
    output = _checks.float_array(output, "output", 2)
    n, k = output.shape
    if n == 0:
        raise ValueError(f"output is an empty batch (shape {output.shape}): "
                         f"the mean over N = 0 samples is undefined")
    if k == 0:
        raise ValueError(f"output must have K >= 1 columns, got shape {output.shape}")
    dtype = output.dtype
    if name in _LABEL_LOSSES:
        target = _checks.class_labels(target, "target", n, k, name)
    else:
        target = _checks.float_target(target, "target", (n, k), dtype, name)
        if name == "binary_cross_entropy":
            bad = (target < 0) | (target > 1)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                raise ValueError(f"target must lie in [0, 1] for binary_cross_entropy, "
                                 f"got {target[i, j]} at index ({i}, {j})")
    if sample_weight is not None:
        sample_weight = _checks.sample_weights(sample_weight, "sample_weight", n)
    grad_out = _checks.out_array(grad_out, "grad_out", (n, k), dtype)
    n_threads = resolve_num_threads(n_threads)
    output = _checks.contiguous(_checks.unaliased(output, grad_out))
    target = _checks.unaliased(target, grad_out)
    if backend == "numpy":
        return reference.loss_forward_backward(name, output, target, grad_out,
                                               sample_weight=sample_weight)
    scale = _row_scale(n, sample_weight)
    kernel = _typed(getattr(_losses, name), dtype)
    value = kernel(output, target, scale, grad_out, n_threads)
    return float(value), grad_out


def l2_penalty(weight: npt.ArrayLike, lam: float, grad_weight: np.ndarray | None = None, *,
               backend: str = "compiled", n_threads: int | None = None) -> float:
    """value = 1/2 lam sum(W^2); grad_weight += lam W in place when given.

    The sum runs in double in index order; the update is computed in double
    and rounded once to the weight's dtype.

    Parameters
    ----------
    weight : ndarray, any shape, float32 or float64 (usually w (n_out, n_in))
    lam : float >= 0
    grad_weight : ndarray of weight's shape and dtype, C-contiguous, optional.
        Accumulated into: the penalty's gradient lam W is added to it.
    backend : "compiled" or "numpy"
    n_threads : int >= 1, optional. Accepted for a uniform API; this O(size)
        kernel runs on one thread.

    Returns
    -------
    value : float
    """
    _checks.backend(backend)
    weight = _checks.float_array(weight, "weight")
    lam = _checks.real_scalar(lam, "lam", nonnegative=True)
    if grad_weight is not None:
        grad_weight = _checks.out_array(grad_weight, "grad_weight", weight.shape,
                                        weight.dtype)
    resolve_num_threads(n_threads)
    weight = _checks.contiguous(_checks.unaliased(weight, grad_weight))
    if backend == "numpy":
        return reference.l2_penalty(weight, lam, grad_weight)
    flat_grad = None if grad_weight is None else grad_weight.reshape(-1)
    return float(_losses.l2_penalty(weight.reshape(-1), lam, flat_grad))

# ---- optimizer updates --------------------------------------------------------

def _updated_in_place(x: object, name: str, like: np.ndarray | None = None) -> np.ndarray:
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


def _gradient(grad: npt.ArrayLike, param: np.ndarray,
              *state: np.ndarray | None) -> np.ndarray:
    """grad checked against param; copied when it may share memory with an
    array the update writes, so the step always reads the gradient as passed."""
    grad = _checks.float_array(grad, "grad")
    _checks.same_dtype(param=param, grad=grad)
    _checks.shape(grad, "grad", param.shape)
    return _checks.unaliased(grad, param, *state)


def _distinct(**arrays: np.ndarray | None) -> None:
    """No two updated arrays share memory (one buffer cannot hold two states)."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    for i, (name_a, a) in enumerate(items):
        for name_b, b in items[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name_a} and {name_b} share memory: each is updated "
                                 f"in place and needs its own array")


def _beta(value: object, name: str) -> float:
    value = _checks.real_scalar(value, name)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def _step_count(step: object) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int >= 1 (the count after this update), "
                        f"got {type(step).__name__} {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the count after this update), got {step}")
    return int(step)


def sgd_step(param: np.ndarray, grad: npt.ArrayLike, velocity: np.ndarray | None = None, *,
             lr: float, momentum: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, backend: str = "compiled",
             n_threads: int | None = None) -> None:
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
    _typed(_optim.sgd_step, param.dtype)(param.reshape(-1), _checks.contiguous(grad).reshape(-1),
                    None if velocity is None else velocity.reshape(-1),
                    lr, momentum, weight_decay, nesterov, n_threads)
    return None


def adam_step(param: np.ndarray, grad: npt.ArrayLike, m: np.ndarray, v: np.ndarray, *,
              step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, weight_decay: float = 0.0,
              backend: str = "compiled", n_threads: int | None = None) -> None:
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
    _typed(_optim.adam_step, param.dtype)(param.reshape(-1), _checks.contiguous(grad).reshape(-1),
                     m.reshape(-1), v.reshape(-1), beta1, beta2, step_size,
                     bias_correction2_sqrt, eps, weight_decay, n_threads)
    return None


def rmsprop_step(param: np.ndarray, grad: npt.ArrayLike, v: np.ndarray,
                 buf: np.ndarray | None = None, *, lr: float, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0,
                 backend: str = "compiled", n_threads: int | None = None) -> None:
    """One RMSprop step in place, PyTorch's torch.optim.RMSprop (centered=False):

        g = grad + weight_decay * param
        v = alpha * v + (1 - alpha) * g * g
        d = g / (sqrt(v) + eps)
        momentum == 0:  param -= lr * d
        else:           buf = momentum * buf + d;  param -= lr * buf

    Start v (and buf) at zeros.

    Parameters
    ----------
    param : ndarray, any shape, float32 or float64, C-contiguous, writeable.
    grad : ndarray, param's shape and dtype, any layout (copied when it shares
        memory with an updated array).
    v : ndarray like param, the square average, updated in place.
    buf : ndarray like param, or None: the momentum buffer, required when momentum > 0.
    lr : float > 0; alpha : float in [0, 1); eps : float > 0; momentum, weight_decay >= 0
    backend : "compiled" or "numpy"; n_threads : int >= 1, optional

    Returns
    -------
    None
    """
    _checks.backend(backend)
    param = _updated_in_place(param, "param")
    v = _updated_in_place(v, "v", like=param)
    lr = _checks.real_scalar(lr, "lr", positive=True)
    alpha = _beta(alpha, "alpha")
    eps = _checks.real_scalar(eps, "eps", positive=True)
    momentum = _checks.real_scalar(momentum, "momentum", nonnegative=True)
    weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
    if buf is None and momentum > 0:
        raise ValueError(f"buf is required when momentum > 0 (got momentum={momentum}): "
                         f"pass an array like param, zeros before the first step")
    if buf is not None:
        buf = _updated_in_place(buf, "buf", like=param)
    if momentum == 0:
        buf = None
    _distinct(param=param, v=v, buf=buf)
    grad = _gradient(grad, param, v, buf)
    n_threads = resolve_num_threads(n_threads)
    if backend == "numpy":
        return reference.rmsprop_step(param, grad, v, buf, lr=lr, alpha=alpha, eps=eps,
                                      momentum=momentum, weight_decay=weight_decay)
    _typed(_optim.rmsprop_step, param.dtype)(
        param.reshape(-1), _checks.contiguous(grad).reshape(-1), v.reshape(-1),
        None if buf is None else buf.reshape(-1), lr, alpha, eps, momentum, weight_decay,
        n_threads)
    return None


# ---- the fused training step ----------------------------------------------------

_PLAN_ARRAYS = ("weight", "bias", "grad_weight", "grad_bias", "z", "a", "grad_z", "grad_x")
# Activations whose derivative the backward kernels can take from a alone: they read
# z only through its sign (relu; leaky_relu with slope >= 0), or not at all.
A_DERIVABLE: tuple[str, ...] = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu")


def a_derivable(activation: str, slope: float = 0.0) -> bool:
    """True when f'(z) follows from a = f(z), so a can overwrite z."""
    return activation in A_DERIVABLE and (activation != "leaky_relu" or slope >= 0)


# The update kernels a plan runs: {name: {hyper-parameter: check}} and which of the
# two state slots each needs, given its hyper-parameters.
_PLAN_OPTIMIZERS: dict[str, tuple[dict[str, Callable[[Any, str], Any]],
                                  Callable[[dict[str, Any]], tuple[str, ...]]]] = {
    "sgd": (dict(momentum=lambda v, n: _checks.real_scalar(v, n, nonnegative=True),
                 nesterov=lambda v, n: bool(v)),
            lambda h: (("state1",) if h["momentum"] else ())),
    "adam": (dict(beta1=_beta, beta2=_beta,
                  eps=lambda v, n: _checks.real_scalar(v, n, positive=True)),
             lambda h: ("state1", "state2")),
    "rmsprop": (dict(alpha=_beta, eps=lambda v, n: _checks.real_scalar(v, n, positive=True),
                     momentum=lambda v, n: _checks.real_scalar(v, n, nonnegative=True)),
                lambda h: ("state1", "state2") if h["momentum"] else ("state1",)),
}


def train_plan(layers: Sequence[Mapping[str, Any]], *, loss: str, batch_max: int,
               optimizer: str = "sgd", hyper: Mapping[str, Any] | None = None,
               weight_decay: float = 0.0, l2: float = 0.0,
               backend: str = "compiled") -> TrainPlan:
    """A training plan: whole training steps of a Dense stack, one call each.

    Each step: forward (a_l = f(a_{l-1} @ W_l.T + b_l)), loss + 1/2 l2 sum ||W||^2,
    backward, grad_W += l2 W (the gradient phase), then the optimizer update of
    every parameter, weight decay on weights only (the apply phase). The update is
    all or nothing: a non-finite loss or gradient, or an update that would leave a
    parameter or an optimizer state NaN or inf, updates nothing (the compiled
    plan checks this without keeping a copy of the weights).

    Parameters
    ----------
    layers : list of dicts, one per layer, with n_in, n_out, activation, slope and
        the arrays weight (n_out, n_in), bias (n_out,) or None, grad_weight,
        grad_bias (n_out,), workspaces z, a (batch_max, n_out), grad_z
        (batch_max, n_out) or None (then grad_z is formed in place of dL/da),
        grad_x (batch_max, n_in), and the optimizer state state1 = (for weight,
        for bias) and state2, None where there is none (SGD: velocity; Adam: m, v;
        RMSprop: square average, momentum buffer). Arrays share one dtype,
        C-contiguous, writeable. z may be a when f' follows from a alone
        (A_DERIVABLE: identity, step, sigmoid, tanh, relu, leaky_relu with
        slope >= 0): the step then keeps one buffer, a = f(z) written over z.
    loss : str, one of LOSSES
    batch_max : int, the most rows a step takes
    optimizer : "sgd", "adam" or "rmsprop"; hyper: its parameters by name, as in
        sgd_step (momentum, nesterov), adam_step (beta1, beta2, eps) and
        rmsprop_step (alpha, eps, momentum); weight_decay, l2 >= 0
    backend : "compiled" (nncore._kernels.train.StepPlan) or "numpy" (its twin,
        nncore.reference.StepPlan); both have the same methods.

    Returns
    -------
    plan : plan.step(X, t, y, w, lr, step, n_threads) for one batch;
        plan.gradients(X, t, y, w, n_threads) and plan.apply(lr, step, n_threads),
        its two phases; plan.run(X, t, y, w, orders, batch_size, lrs, sums, epoch,
        batch, max_batches, seconds, step, n_threads) for epochs of batches in one
        call (rows gathered, scaled and stepped in C).
    """
    _checks.backend(backend)
    _checks.choice(loss, "loss", LOSSES)
    _checks.choice(optimizer, "optimizer", tuple(_PLAN_OPTIMIZERS))
    checks, slots = _PLAN_OPTIMIZERS[optimizer]
    hyper = dict(hyper or {})
    unknown = sorted(set(hyper) - set(checks))
    if unknown:
        raise ValueError(f"hyper: {optimizer} takes {', '.join(checks)}, not {', '.join(unknown)}")
    missing = sorted(set(checks) - set(hyper))
    if missing:
        raise ValueError(f"hyper: {optimizer} needs {', '.join(missing)}")
    hyper = {k: check(hyper[k], k) for k, check in checks.items()}
    weight_decay = _checks.real_scalar(weight_decay, "weight_decay", nonnegative=True)
    l2 = _checks.real_scalar(l2, "l2", nonnegative=True)
    if not layers:
        raise ValueError("layers must not be empty")
    dtype = layers[0]["weight"].dtype
    if dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"weights must be float32 or float64, got {dtype}")
    prepared = []
    for i, d in enumerate(layers):
        n_in, n_out = d["n_in"], d["n_out"]
        if i and n_in != layers[i - 1]["n_out"]:
            raise ValueError(f"layers[{i}] takes {n_in} inputs, layers[{i - 1}] gives "
                             f"{layers[i - 1]['n_out']}")
        shapes = {"weight": (n_out, n_in), "bias": (n_out,), "grad_weight": (n_out, n_in),
                  "grad_bias": (n_out,), "z": (batch_max, n_out), "a": (batch_max, n_out),
                  "grad_z": (batch_max, n_out), "grad_x": (batch_max, n_in)}
        s1w, s1b = d.get("state1") or (None, None)
        s2w, s2b = d.get("state2") or (None, None)
        arrays = dict((k, d.get(k)) for k in _PLAN_ARRAYS)
        arrays.update(s1w=s1w, s1b=s1b, s2w=s2w, s2b=s2b)
        shapes.update(s1w=shapes["weight"], s1b=shapes["bias"], s2w=shapes["weight"],
                      s2b=shapes["bias"])
        if arrays["z"] is arrays["a"] and not a_derivable(d["activation"], d["slope"]):
            raise ValueError(f"layers[{i}]: z is a, but {d['activation']}' needs z kept "
                             f"(only {', '.join(A_DERIVABLE)} with slope >= 0 may share it)")
        for name, arr in arrays.items():
            if arr is None:
                if name in ("bias", "s1b", "s2b", "s1w", "s2w", "grad_z"):
                    continue
                raise ValueError(f"layers[{i}]['{name}'] is missing")
            _checks.out_array(arr, f"layers[{i}]['{name}']", shapes[name], dtype)
        for slot in slots(hyper):
            key = "s" + slot[-1]
            if arrays[key + "w"] is None or (d["bias"] is not None and arrays[key + "b"] is None):
                raise ValueError(f"layers[{i}] lacks the optimizer state {slot}")
        code, slope = _activation(d["activation"], d["slope"])
        prepared.append(dict(n_in=n_in, n_out=n_out, act=code, activation=d["activation"],
                             slope=slope, w=arrays["weight"], b=arrays["bias"],
                             gw=arrays["grad_weight"], gb=arrays["grad_bias"], z=arrays["z"],
                             a=arrays["a"], gz=arrays["grad_z"], gx=arrays["grad_x"],
                             s1w=s1w, s1b=s1b, s2w=s2w, s2b=s2b))
    if backend == "numpy":
        return reference.StepPlan(prepared, loss=loss, optimizer=optimizer, hyper=hyper,
                                  weight_decay=weight_decay, l2=l2, batch_max=batch_max)
    from nncore._kernels import train as _train
    n_in, k = layers[0]["n_in"], layers[-1]["n_out"]
    buffers = dict(x=np.empty((batch_max, n_in), dtype), t=np.empty((batch_max, k), dtype),
                   y=np.empty(batch_max, np.intp), w=np.empty(batch_max),
                   scale=np.empty(batch_max), grad_out=np.empty((batch_max, k), dtype))
    return _train.StepPlan(prepared, dtype == np.float64, batch_max, _codes.LOSSES[loss],
                           _codes.OPTIMIZERS[optimizer], hyper, weight_decay, l2, buffers,
                           loss != "mse")


# ---- checks -------------------------------------------------------------------

_FINITE_KERNELS = _by_dtype(_finite.all_finite)


def all_finite(x: npt.ArrayLike, *, backend: str = "compiled",
               n_threads: int | None = None) -> bool:
    """True when x (any shape, float32 or float64) holds no NaN and no inf.

    The compiled kernel reads x once without a temporary (np.isfinite(x).all()
    would build a boolean copy of x); a non-contiguous x is checked in blocks.
    """
    if backend == "compiled" and type(x) is np.ndarray and x.flags.c_contiguous:
        kernel = _FINITE_KERNELS.get(x.dtype)          # the usual call, checked inline
        if kernel is not None:
            return bool(kernel(x.reshape(-1), resolve_num_threads(n_threads)))
    _checks.backend(backend)
    x = _checks.float_array(x, "x")
    if backend == "numpy":
        return reference.all_finite(x)
    n_threads = resolve_num_threads(n_threads)
    if x.flags.c_contiguous:
        return bool(_FINITE_KERNELS[x.dtype](x.reshape(-1), n_threads))
    return _checks.all_finite(x)


def max_abs(x: npt.ArrayLike, *, backend: str = "compiled") -> float:
    """max |x_i| over x (any shape, float32 or float64; 0 when empty), or inf when x
    holds a NaN or an inf: the gradient check of the fused training step."""
    _checks.backend(backend)
    x = _checks.float_array(x, "x")
    if backend == "numpy":
        return reference.max_abs(x)
    return float(_typed(_finite.max_abs, x.dtype)(np.ascontiguousarray(x).reshape(-1)))
