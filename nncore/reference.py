"""The NumPy twins of nncore's compiled kernels: the specification.

Same names, arguments and `out=` behaviour as nncore.functional (less
`backend` and `n_threads`). Plain NumPy written for clarity; no validation
(functional checks before it calls either backend).

Names follow the maths: x (n_samples, n_in), w (n_out, n_in) one row per
neuron, b (n_out,), z = x @ w.T + b, a = f(z); gradients grad_*.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterator, cast

import numpy as np


def _into(out: np.ndarray | None, value: Any) -> np.ndarray:
    """Write value into out (allocating when out is None); return out."""
    if out is None:
        return np.ascontiguousarray(value)
    out[...] = value
    return out


# ---- gemm -------------------------------------------------------------------

def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, *, trans_a: bool = False,
         trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
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

ACTIVATIONS: tuple[str, ...] = ("identity", "step", "sigmoid", "tanh", "relu", "leaky_relu",
               "softplus", "softmax")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) through exp(-|z|), which never overflows."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def activation_forward(name: str, z: np.ndarray, out: np.ndarray | None = None, *,
                       slope: float = 0.01) -> np.ndarray:
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


def activation_backward(name: str, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray,
                        out: np.ndarray | None = None, *, slope: float = 0.01) -> np.ndarray:
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

def dense_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, activation: str,
                  *, z_out: np.ndarray | None = None, a_out: np.ndarray | None = None,
                  slope: float = 0.01, finite_x: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """z = x @ weight.T + bias, a = f(z).

    x (n, n_in), weight (n_out, n_in), bias (n_out,) or None -> z, a (n, n_out);
    finite_x: ValueError when x holds NaN or inf.
    """
    if finite_x and not np.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    z = x @ weight.T
    if bias is not None:
        z = z + bias
    z = _into(z_out, z)
    a = activation_forward(activation, z, a_out, slope=slope)
    return z, a


def dense_backward(x: np.ndarray, weight: np.ndarray, z: np.ndarray, a: np.ndarray,
                   grad_a: np.ndarray, activation: str, *, grad_x: np.ndarray | None = None,
                   grad_weight: np.ndarray | None = None, grad_bias: np.ndarray | None = None,
                   grad_z: np.ndarray | None = None, need_grad_x: bool = True,
                   slope: float = 0.01) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The chain rule through one dense layer.

    grad_z = grad_a * f'(z); grad_weight = grad_z.T @ x; grad_bias = grad_z.sum(0);
    grad_x = grad_z @ weight (None when need_grad_x is False).
    """
    gz = activation_backward(activation, z, a, grad_a, grad_z, slope=slope)
    gw = _into(grad_weight, gz.T @ x)
    gb = _into(grad_bias, gz.sum(axis=0))
    gx = _into(grad_x, gz @ weight) if need_grad_x else None
    return gx, gw, gb

# ---- losses -----------------------------------------------------------------

LOSSES: tuple[str, ...] = ("mse", "softmax_cross_entropy", "binary_cross_entropy", "hinge")


def _row_scale(n: int, sample_weight: np.ndarray | None) -> np.ndarray:
    """s_i = 1/N, or w_i / sum(w): L = sum_i s_i l_i, grad_i = s_i dl_i/do_i."""
    if sample_weight is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(sample_weight, dtype=np.float64)
    return w / w.sum()


def _mse_rows(o: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """l_i = 1/2 sum_j (o_ij - t_ij)^2;  dl_i/do_ij = o_ij - t_ij."""
    d = o - t
    return 0.5 * np.sum(d * d, axis=1), d


def _softmax_cross_entropy_rows(o: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """l_i = logsumexp(o_i) - o_i[y_i];  dl_i/do_i = softmax(o_i) - onehot(y_i).

    logsumexp(o_i) = m_i + log sum_j exp(o_ij - m_i) with m_i = max_j o_ij, so
    every exp is of a number <= 0: no overflow (exp of a large negative number
    underflows to 0, which is the right limit)."""
    rows = np.arange(len(o))
    m = o.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(o - m)
    total = e.sum(axis=1, keepdims=True)
    loss = (m[:, 0] + np.log(total[:, 0])) - o[rows, y]
    grad = e / total
    grad[rows, y] -= 1.0
    return loss, grad


def _binary_cross_entropy_rows(o: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """l_i = sum_j max(o_ij, 0) - o_ij t_ij + log1p(exp(-|o_ij|));
    dl_i/do_ij = sigmoid(o_ij) - t_ij.

    The first form is -t log(sigmoid(o)) - (1 - t) log(1 - sigmoid(o)) written
    so exp sees -|o| <= 0 only; sigmoid(o) = 1 / (1 + e) for o >= 0 and
    e / (1 + e) for o < 0, e = exp(-|o|)."""
    with np.errstate(under="ignore"):
        e = np.exp(-np.abs(o))
    loss = np.sum((np.maximum(o, 0.0) - o * t) + np.log1p(e), axis=1)
    sigmoid = np.where(o >= 0, 1.0, e) / (1.0 + e)
    return loss, sigmoid - t


def _hinge_rows(o: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weston-Watkins multiclass hinge (cs231n), margin 1, m_ij = o_ij - o_i[y_i] + 1:
    l_i = sum_{j != y_i} max(0, m_ij);
    dl_i/do_ij = [m_ij > 0] for j != y_i, dl_i/do_i[y_i] = -#{j != y_i : m_ij > 0}.
    A margin of exactly 0 is inactive: it adds 0 to the loss and 0 to the
    gradient. A NaN margin goes into l_i, dl_i/do_ij and dl_i/do_i[y_i]."""
    rows = np.arange(len(o))
    margin = (o - o[rows, y][:, None]) + 1.0
    margin[rows, y] = 0.0                    # j = y is not a term
    active = margin > 0
    nan = np.isnan(margin)
    loss = np.sum(np.where(active | nan, margin, 0.0), axis=1)
    grad = np.where(nan, np.nan, active.astype(np.float64))
    grad[rows, y] = -active.sum(axis=1) + np.where(nan.any(axis=1), np.nan, 0.0)
    return loss, grad


_LOSS_ROWS = {
    "mse": _mse_rows,
    "softmax_cross_entropy": _softmax_cross_entropy_rows,
    "binary_cross_entropy": _binary_cross_entropy_rows,
    "hinge": _hinge_rows,
}


def loss_forward_backward(name: str, output: np.ndarray, target: np.ndarray,
                          grad_out: np.ndarray | None = None, *,
                          sample_weight: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """L = sum_i s_i l_i and grad_out = dL/d output, s_i = 1/N or w_i / sum(w).

    l_i per loss (o = output row i, K classes):
      mse                    1/2 sum_j (o_j - t_j)^2                grad o - t
      softmax_cross_entropy  logsumexp(o) - o[y]                    softmax(o) - onehot(y)
      binary_cross_entropy   sum_j max(o_j,0) - o_j t_j + log1p(exp(-|o_j|))
                                                                    sigmoid(o) - t
      hinge                  sum_{j != y} max(0, o_j - o[y] + 1)    1[margin > 0], -count at y
    times s_i. Everything is computed in float64 and the gradient rounded once
    to output's dtype. target: (N, K) floats (mse, binary_cross_entropy) or
    (N,) intp labels in [0, K) (softmax_cross_entropy, hinge).

    Returns
    -------
    value : float
    grad_out : ndarray (N, K), output's dtype
    """
    o = output.astype(np.float64)
    t = target if target.ndim == 1 else target.astype(np.float64)
    loss, grad = _LOSS_ROWS[name](o, t)
    s = _row_scale(len(o), sample_weight)
    value = float(np.sum(s * loss))
    grad = grad * s[:, None]
    if grad_out is None:
        grad_out = np.empty(output.shape, dtype=output.dtype)
    grad_out[...] = grad
    return value, grad_out


def l2_penalty(weight: np.ndarray, lam: float, grad_weight: np.ndarray | None = None) -> float:
    """value = 1/2 lam sum(W^2); grad_weight += lam W (in place) when given.

    Computed in float64; grad_weight is rounded once to its dtype.
    """
    w = weight.astype(np.float64)
    if grad_weight is not None:
        grad_weight[...] = grad_weight + lam * w
    return float(0.5 * lam * np.sum(w * w))

# ---- optimizer updates --------------------------------------------------------

def sgd_step(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray | None = None, *,
             lr: float, momentum: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0) -> None:
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
    velocity = cast(np.ndarray, velocity)            # given when momentum > 0
    velocity[...] = momentum * velocity + g
    if nesterov:
        param -= lr * (g + momentum * velocity)
    else:
        param -= lr * velocity
    return None


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, *,
              step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999,
              eps: float = 1e-8, weight_decay: float = 0.0) -> None:
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


def rmsprop_step(param: np.ndarray, grad: np.ndarray, v: np.ndarray,
                 buf: np.ndarray | None = None, *, lr: float, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
    """RMSprop, PyTorch's torch.optim.RMSprop (not centered), in place:

        g = grad + weight_decay * param
        v = alpha * v + (1 - alpha) * g * g
        d = g / (sqrt(v) + eps)
        momentum == 0:  param -= lr * d
        else:           buf = momentum * buf + d;  param -= lr * buf

    v and buf start at zeros. A zero weight_decay is skipped.
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    v[...] = alpha * v + (1 - alpha) * g * g
    d = g / (np.sqrt(v) + eps)
    if momentum == 0:
        param -= lr * d
        return None
    buf = cast(np.ndarray, buf)                      # given when momentum > 0
    buf[...] = momentum * buf + d
    param -= lr * buf
    return None


# ---- checks -------------------------------------------------------------------

def all_finite(x: np.ndarray) -> bool:
    """True when x holds no NaN and no inf."""
    return bool(np.isfinite(x).all())


def max_abs(x: np.ndarray) -> float:
    """max |x_i| (0 for no element), or inf when some x_i is NaN or inf."""
    if not np.isfinite(x).all():
        return float("inf")
    return float(np.abs(x).max()) if x.size else 0.0


# ---- the training plan --------------------------------------------------------

_UPDATES = {
    "sgd": lambda p, g, s1, s2, lr, wd, h, step: sgd_step(
        p, g, s1, lr=lr, momentum=h["momentum"], nesterov=h["nesterov"], weight_decay=wd),
    "adam": lambda p, g, s1, s2, lr, wd, h, step: adam_step(
        p, g, s1, s2, step=step, lr=lr, beta1=h["beta1"], beta2=h["beta2"], eps=h["eps"],
        weight_decay=wd),
    "rmsprop": lambda p, g, s1, s2, lr, wd, h, step: rmsprop_step(
        p, g, s1, s2, lr=lr, alpha=h["alpha"], eps=h["eps"], momentum=h["momentum"],
        weight_decay=wd),
}


class StepPlan:
    """The NumPy twin of nncore._kernels.train.StepPlan (same methods, arguments and
    results): the specification of a training step and of the batch schedule.

    gradients: s_i = w_i / sum(w) (or 1/n); a_0 = X, a_l = f_l(a_{l-1} @ W_l.T + b_l);
        L = sum_i s_i l_i(a_L, y) + 1/2 l2 sum_l ||W_l||^2; backward l = L..1;
        grad_W_l += l2 W_l. gradients(..., scale=s) takes the row scales s_i given
        (a shard of a larger batch), l2=False leaves the l2 term out (both as the
        compiled plan).
    apply: every parameter updated by the optimizer (weight decay on weights only),
        all or nothing: nothing changes when a gradient, a parameter or a state
        would not be finite.
    run: epoch e visits X[orders[e]] (or X) in batches of batch_size, the last one
        partial, skipping a batch of zero weights, at learning rate lrs[e]; in
        epochs e < check_epochs a batch with a NaN or inf in X stops it (status 4).
    shard_gradients, apply_from: a sharded step's two calls (nncore._sharded): the
        gradients of several shards into the rows of a flat buffer and their tree
        additions; apply with the gradients read from a flat vector.

    layers: the dicts nncore.functional.train_plan prepares (activation, slope and
    the arrays w, b, gw, gb, s1w, s1b, s2w, s2b; the workspaces are not used).
    """

    def __init__(self, layers: list[dict[str, Any]], *, loss: str, optimizer: str,
                 hyper: dict[str, Any], weight_decay: float, l2: float,
                 batch_max: int) -> None:
        self.layers = layers
        self.loss, self.optimizer, self.hyper = loss, optimizer, hyper
        self.weight_decay, self.l2 = weight_decay, l2
        self.batch_max = batch_max
        self.n_inputs, self.n_outputs = layers[0]["n_in"], layers[-1]["n_out"]
        self.accuracy = loss != "mse"

    def _params(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                        np.ndarray | None, float]]:
        """(param, grad, state1, state2, weight decay) of each parameter, in order."""
        for d in self.layers:
            yield d["w"], d["gw"], d["s1w"], d["s2w"], self.weight_decay
            if d["b"] is not None:
                yield d["b"], d["gb"], d["s1b"], d["s2b"], 0.0

    def gradients(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
                  w: np.ndarray | None, n_threads: int = 1, scale: np.ndarray | None = None,
                  l2: bool = True) -> tuple[int, float, float]:
        """scale: row scales s_i given (w ignored, never skipped); l2=False: no l2 term."""
        if scale is None and w is not None and not w.sum() > 0:
            return 3, 0.0, 0.0
        lam = self.l2 if l2 else 0.0
        target = cast(np.ndarray, y if y is not None else t)      # one of them is given
        inputs, zs, outs = [], [], []
        a = X
        for d in self.layers:
            inputs.append(a)
            z, a = dense_forward(a, d["w"], d["b"], d["activation"], slope=d["slope"])
            zs.append(z)
            outs.append(a)
        if scale is None:
            value, g = loss_forward_backward(self.loss, a, target, sample_weight=w)
        else:
            value, g = _scaled_loss(self.loss, a, target, scale)
        value += sum(0.5 * lam * float(np.sum(d["w"].astype(np.float64) ** 2))
                     for d in self.layers) if lam else 0.0
        if not math.isfinite(value):
            return 1, value, 0.0
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i]
            gx, _, _ = dense_backward(inputs[i], d["w"], zs[i], outs[i], g, d["activation"],
                                      grad_weight=d["gw"],
                                      grad_bias=d["gb"] if d["b"] is not None else None,
                                      need_grad_x=i > 0, slope=d["slope"])
            g = cast(np.ndarray, gx)                 # None after the first layer only
            if lam:
                d["gw"][...] = d["gw"] + lam * d["w"].astype(np.float64)
        return 0, value, _accuracy(a, t, y) if self.accuracy else 0.0

    def apply(self, lr: float, step: int, n_threads: int = 1) -> tuple[int, int]:
        params = list(self._params())
        if not all(np.isfinite(g).all() for _, g, _, _, _ in params):
            return 2, step
        trial = [(p.copy(), g, None if s1 is None else s1.copy(),
                  None if s2 is None else s2.copy(), wd) for p, g, s1, s2, wd in params]
        for p, g, s1, s2, wd in trial:
            _UPDATES[self.optimizer](p, g, s1, s2, lr, wd, self.hyper, step + 1)
        if not all(np.isfinite(a).all() for item in trial for a in (item[0], item[2], item[3])
                   if a is not None):
            return 2, step
        for (p, _, s1, s2, _), (p2, _, t1, t2, _) in zip(params, trial):
            p[...] = p2
            for s, new in ((s1, t1), (s2, t2)):
                if s is not None:
                    s[...] = new
        return 0, step + 1

    def step(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
             w: np.ndarray | None, lr: float, step: int,
             n_threads: int = 1) -> tuple[int, float, float, int]:
        status, value, acc = self.gradients(X, t, y, w, n_threads)
        if status == 0:
            status, step = self.apply(lr, step, n_threads)
        return status, value, acc if status == 0 else 0.0, step

    def threads(self, rows: int, n_threads: int) -> int:
        """1: the twin's steps run on the calling thread (NumPy's BLAS keeps its own)."""
        return 1

    def run(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
            w: np.ndarray | None, orders: np.ndarray | None, batch_size: int,
            lrs: np.ndarray, sums: np.ndarray, epoch: int, batch: int, max_batches: int,
            seconds: float, step: int, n_threads: int = 1,
            check_epochs: int = 0) -> tuple[int, int, int, float, float, int]:
        n = X.shape[0]
        n_batches = -(-n // batch_size)
        start = time.perf_counter()
        done, status, value, acc = 0, 0, 0.0, 0.0
        while epoch < len(lrs):
            if (max_batches > 0 and done >= max_batches) or (
                    seconds > 0 and done and time.perf_counter() - start >= seconds):
                break
            rows = slice(batch * batch_size, (batch + 1) * batch_size)
            idx = orders[epoch][rows] if orders is not None else np.arange(n)[rows]
            if epoch < check_epochs and not np.isfinite(X[idx]).all():
                status = 4                          # a row holds NaN or inf: not consumed
                break
            status, value, acc, step = self.step(
                X[idx], None if t is None else t[idx], None if y is None else y[idx],
                None if w is None else w[idx], lrs[epoch], step, n_threads)
            if status not in (0, 3):
                break
            if status == 0:
                nb = len(idx)
                sums[epoch] += (value * nb, nb, acc * nb)
            done += 1
            batch += 1
            if batch == n_batches:
                epoch, batch = epoch + 1, 0
        return epoch, batch, status, value, acc, step


    # ---- sharded steps (nncore._sharded) ----

    def _on_flat(self, flat: np.ndarray) -> StepPlan:
        """This plan with grad_W, grad_b of every layer views of the flat gradient
        (grad_W1, grad_b1, grad_W2, ...)."""
        layers, off = [], 0
        for d in self.layers:
            d = dict(d)
            size = d["n_in"] * d["n_out"]
            d["gw"] = flat[off:off + size].reshape(d["n_out"], d["n_in"])
            off += size
            if d["b"] is not None:
                d["gb"] = flat[off:off + d["n_out"]]
                off += d["n_out"]
            layers.append(d)
        plan = copy.copy(self)
        plan.layers = layers
        return plan

    def shard_gradients(self, X: np.ndarray, t: np.ndarray | None, y: np.ndarray | None,
                        order: np.ndarray, scale: np.ndarray, shards: Any, leaves: np.ndarray,
                        adds: Any, results: list[Any], n_threads: int = 1) -> int:
        """Shard s: gradients(rows order[start:start + count], scale=..., l2=False) into
        leaves[s]; then leaves[a] += leaves[b] for (a, b) in adds when every loss was
        finite. results[s] = (status, loss, accuracy). Returns 0, or 1 (a loss not
        finite: no additions)."""
        bad = False
        for s, (start, count) in enumerate(shards):
            if count == 0:
                results[s] = 0.0
                continue
            idx = order[start:start + count]
            status, value, acc = self._on_flat(leaves[s]).gradients(
                X[idx], None if t is None else t[idx], None if y is None else y[idx], None,
                n_threads, scale=scale[start:start + count], l2=False)
            results[s] = (status, value, acc)
            bad = bad or status != 0
        if bad:
            return 1
        for a, b in adds:
            leaves[a] += leaves[b]
        return 0

    def add_l2(self, grad: np.ndarray, lo: int, hi: int) -> None:
        """grad[i] += l2 W[i] (in float64) for the weights' elements among grad[lo:hi]."""
        if not self.l2:
            return
        off = 0
        for d in self.layers:
            size = d["n_in"] * d["n_out"]
            a, b = max(lo, off), min(hi, off + size)
            if b > a:
                w = d["w"].reshape(-1)[a - off:b - off].astype(np.float64)
                grad[a:b] = grad[a:b] + self.l2 * w
            off += size + (d["n_out"] if d["b"] is not None else 0)

    def apply_from(self, grad: np.ndarray, lr: float, step: int, l2: bool, keep_bounds: bool,
                   n_threads: int = 1) -> tuple[int, int]:
        """apply with the gradients in the flat grad; l2: grad_W += l2 W there first."""
        plan = self._on_flat(grad)
        if l2 and self.l2:
            for d in plan.layers:
                d["gw"][...] = d["gw"] + self.l2 * d["w"].astype(np.float64)
        return plan.apply(lr, step, n_threads)


def _scaled_loss(name: str, output: np.ndarray, target: np.ndarray,
                 scale: np.ndarray) -> tuple[float, np.ndarray]:
    """loss_forward_backward with the row scales s_i given: L = sum_i s_i l_i."""
    o = output.astype(np.float64)
    t = target if target.ndim == 1 else target.astype(np.float64)
    loss, grad = _LOSS_ROWS[name](o, t)
    value = float(np.sum(scale * loss))
    return value, (grad * scale[:, None]).astype(output.dtype)


def _accuracy(o: np.ndarray, t: np.ndarray | None, y: np.ndarray | None) -> float:
    """The fraction right: argmax(o_i) == y_i, or (o_ij > 0) == t_ij."""
    if y is not None:
        return float(np.mean(np.argmax(o, axis=1) == y))
    return float(np.mean((o > 0) == t))
