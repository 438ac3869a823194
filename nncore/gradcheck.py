"""Gradient checking: central finite differences of the training loss against
the gradients backpropagation computes (Sequential.backward).

    L(theta) = loss(forward(X; theta), y) + 1/2 l2 sum_l ||W_l||^2
    num_i    = (L(theta + h e_i) - L(theta - h e_i)) / (2 h)
    ana_i    = dL/dtheta_i from model.backward (+ l2 W_i for weights)
    err(P)   = max_i |num_i - ana_i| / max(||num||_inf + ||ana||_inf, tiny)
               over the entries i of one parameter array P
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nncore import functional as F
from nncore.layers import Dense

if TYPE_CHECKING:
    import numpy.typing as npt

    from nncore.losses import Loss
    from nncore.model import Sequential

TINY = np.finfo(np.float64).tiny


def _float64_twin(model):
    """A float64 Sequential with the model's layers (rebuilt from their config()),
    l2 and backend, holding the model's weights converted exactly to float64."""
    from nncore.model import Sequential
    layers = [Dense(**dict(layer.config(), init="small")) for layer in model.layers]
    twin = Sequential(layers, seed=0, dtype="float64", l2=model.l2, backend=model.backend)
    for src, dst in zip(model.layers, twin.layers):
        for p_src, p_dst in zip(src.parameters(), dst.parameters()):
            p_dst[...] = p_src
    return twin


def _named_parameters(model):
    """[("layers.0.weight", W_1), ("layers.0.bias", b_1), ...], as model.parameters()."""
    names = []
    for i, layer in enumerate(model.layers):
        names.append(f"layers.{i}.weight")
        if layer.use_bias:
            names.append(f"layers.{i}.bias")
    return list(zip(names, model.parameters()))


def _objective(model, X, y, loss, sample_weight):
    """L(theta): the batch loss plus the model's l2 penalty, in double."""
    value, _ = loss(model._forward(X), y, sample_weight=sample_weight, backend=model.backend)
    return value + model._penalty()


def _analytic(model, X, y, loss, sample_weight):
    """dL/dtheta for every parameter: model.backward, plus l2 W on the weights
    (added by the kernel the training step uses)."""
    out = model.forward(X)
    _, grad_out = loss(out, y, sample_weight=sample_weight, backend=model.backend)
    model.backward(grad_out)
    grads = []
    for layer in model.layers:
        gw = layer.grad_weight.copy()
        if model.l2:
            F.l2_penalty(layer.weight, model.l2, gw, backend=model.backend)
        grads.append(gw)
        if layer.use_bias:
            grads.append(layer.grad_bias.copy())
    return grads


def _relative_error(num, ana):
    """max |num - ana| / max(||num||_inf + ||ana||_inf, tiny)."""
    if num.size == 0:
        return 0.0
    scale = np.max(np.abs(num)) + np.max(np.abs(ana))
    return float(np.max(np.abs(num - ana)) / max(scale, TINY))


def gradcheck(model: Sequential, X: npt.ArrayLike, y: npt.ArrayLike, loss: str | Loss, *,
              eps: float = 1e-6, sample_weight: npt.ArrayLike | None = None,
              ) -> dict[str, float]:
    """Worst error of the backpropagated gradient of each parameter array,
    relative to that gradient's size.

    For each entry theta_i of each parameter array P (every layer's weight and
    bias), with h = eps and L the loss the model trains on, l2 term included:

        L(theta) = loss(forward(X; theta), y) + 1/2 l2 sum_l ||W_l||^2
        num_i    = (L(theta + h e_i) - L(theta - h e_i)) / (2 h)   central difference
        ana_i    = dL/dtheta_i: model.backward, plus l2 W_i for weights
        err(P)   = max_i |num_i - ana_i| / max(||num||_inf + ||ana||_inf, tiny)

    with the max and the norms over the entries of P: the norm-wise relative
    error of P's gradient in the infinity norm (Higham, "Accuracy and
    Stability of Numerical Algorithms", sec. 1.2; the usual deep-learning
    gradient check is its 2-norm variant). The entry-wise
    |num_i - ana_i| / (|num_i| + |ana_i|) would read 1 wherever the true
    derivative is 0 or tiny (a hinge bias whose +-1/N terms cancel exactly,
    a vanishing gradient), since there the central difference returns only
    its rounding noise, about eps64 |L| / h. A wrong entry still shows:
    an entry off by d makes err(P) at least d / (2 ||num||_inf + d).
    tiny is the smallest normal float64, so an array whose derivatives are
    exactly 0 on both sides (the weights feeding a step unit, l2 = 0) has
    error 0.

    The central difference is off by about h^2 |L^(3)| / 6 (truncation)
    plus eps64 |L| / h (rounding). The default h = 1e-6 keeps both near
    1e-10 for an O(1) loss; h = 1e-5, near the optimum
    (3 eps64 |L| / |L^(3)|)^(1/3), rounds ten times less, which matters
    where gradients are small (deep sigmoid or softmax stacks).

    Everything runs in float64. A float64 model is evaluated itself: each
    entry is moved by +-h and written back, and every weight, bias and
    gradient buffer is restored bitwise before returning (also on error).
    A float32 model is never touched: a float64 copy of it is checked
    instead (the same layers rebuilt from their config(), the weights
    converted exactly, the same l2 and backend; X and y are read in
    float64), which checks the float64 path of the same code at the model's
    weights.

    Kinks (relu, leaky_relu and step at z = 0, hinge margins at 0) have no
    derivative: keep every pre-activation and margin farther from them than
    a step of h can move it, or the two sides legitimately differ.

    Parameters
    ----------
    model : Sequential
    X : array (n, n_inputs), n >= 1
    y : targets for `loss`: labels (n,) or floats (n, n_outputs)
    loss : name or nncore.losses.Loss; the last layer must suit it, as in fit
    eps : float > 0, the step h
    sample_weight : array (n,) >= 0, optional; weights the loss as in fit

    Returns
    -------
    errors : dict {"layers.<i>.weight" or "layers.<i>.bias": err(P)}, in the
        order of model.parameters()
    """
    from nncore.model import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be an nncore Sequential, got {type(model).__name__}")
    eps = float(eps)
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite float > 0, got {eps}")
    if model.dtype != np.float64:
        model = _float64_twin(model)
    loss = model._loss(loss)
    X = model._inputs(X)
    if X.shape[0] == 0:
        raise ValueError("X is an empty batch")
    y = loss.targets(y, X.shape[0], model.n_outputs, model.dtype)
    w = model._sample_weight(sample_weight, X.shape[0])

    params = _named_parameters(model)
    arrays = [p for _, p in params] + model.gradients()
    saved = [a.copy() for a in arrays]
    try:
        analytic = _analytic(model, X, y, loss, w)
        errors = {}
        for (name, p), ana in zip(params, analytic):
            flat = p.reshape(-1)                 # a view: parameters are C-contiguous
            num = np.empty(flat.size)
            for i in range(flat.size):
                orig = flat[i]
                flat[i] = up = orig + eps
                plus = _objective(model, X, y, loss, w)
                flat[i] = down = orig - eps
                minus = _objective(model, X, y, loss, w)
                flat[i] = orig
                num[i] = (plus - minus) / (up - down)     # the step as actually stored
            errors[name] = _relative_error(num, ana.reshape(-1))
    finally:
        for a, s in zip(arrays, saved):
            a[...] = s
    return errors
