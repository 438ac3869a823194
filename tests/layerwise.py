"""Training layer by layer: what the tests compare the training plans with.

Each step calls Dense.forward, the loss, Dense.backward, the l2 gradient and
Optimizer.step one by one, through nncore.functional -- the same kernels the
compiled plan runs in one call, in the same order, so the weights must agree
bitwise -- and makes the update all or nothing with copies of the weights.
The batch schedule is written out here again, on purpose, from the
documentation of Sequential.fit: the plans hold the only other copy.
"""
import math

import numpy as np

import nncore
from nncore import functional as F
from nncore.callbacks import History


def step(model, xb, yb, wb, loss, optimizer):
    """One step on a prepared batch: (loss value, accuracy, ok). Nothing changes
    unless ok."""
    out = xb
    for layer in model.layers:
        out = layer.forward(out, backend=model.backend)
    value, grad = loss(out, yb, sample_weight=wb, backend=model.backend)
    if model.l2:
        value += sum(F.l2_penalty(layer.weight, model.l2, backend=model.backend)
                     for layer in model.layers)
    if not math.isfinite(value):
        return value, 0.0, False
    for i in range(len(model.layers) - 1, -1, -1):
        grad = model.layers[i].backward(grad, need_grad_x=i > 0, backend=model.backend)
    if model.l2:
        for layer in model.layers:
            F.l2_penalty(layer.weight, model.l2, layer.grad_weight, backend=model.backend)
    params, grads = model.parameters(), model.gradients()
    if not all(F.all_finite(g) for g in grads):
        return value, 0.0, False
    optimizer._ensure_state(params)
    kept = params + [a for arrays in optimizer.state.values() for a in arrays]
    saved = [a.copy() for a in kept]
    t = optimizer.t
    optimizer.step(params, grads, model.decay_mask(), backend=model.backend)
    if all(F.all_finite(a) for a in kept):
        acc = 0.0
        if loss.classification:
            pred = loss.predict(out)
            acc = int(np.count_nonzero(pred == (yb[:, 0] if pred.ndim == 1 and yb.ndim == 2
                                                else yb))) / pred.size
        return value, acc, True
    for a, s in zip(kept, saved):
        np.copyto(a, s)
    optimizer.t = t
    return value, 0.0, False


def train_step(model, X, y, loss, optimizer):
    """Sequential.train_step, layer by layer."""
    loss = nncore.losses.get(loss)
    X = model._inputs(X)
    y = loss.targets(y, X.shape[0], model.n_outputs, model.dtype)
    value, _, ok = step(model, X, y, None, loss, optimizer)
    if not ok:
        raise nncore.TrainingDiverged(f"{nncore.training.divergence(value)}: "
                                      f"the weights are unchanged")
    model.loss, model.optimizer = loss, optimizer
    return value


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True,
        sample_weight=None):
    """Sequential.fit without callbacks or validation, layer by layer: epoch e draws
    a permutation from the model's shuffling generator, visits the rows in batches
    of batch_size (the last one partial), skips a batch whose weights are all 0, and
    steps at optimizer.current_lr(); the epoch's loss is the row-weighted mean of
    its steps' losses. Raises TrainingDiverged as fit does."""
    loss = nncore.losses.get(loss)
    X = model._inputs(X)
    n = X.shape[0]
    y = loss.targets(y, n, model.n_outputs, model.dtype)
    w = model._sample_weight(sample_weight, n)
    batch_size = min(batch_size or n, n)
    history = History()
    model.loss, model.optimizer = loss, optimizer
    for epoch in range(epochs):
        order = model._shuffle_rng.permutation(n) if shuffle else np.arange(n)
        total = seen = correct = 0.0
        for b in range(-(-n // batch_size)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            wb = None if w is None else w[idx]
            if wb is not None and not wb.any():
                continue
            value, acc, ok = step(model, X[idx], y[idx], wb, loss, optimizer)
            if not ok:
                raise nncore.TrainingDiverged(f"{nncore.training.divergence(value)} at "
                                              f"epoch {epoch + 1}, batch {b + 1}")
            total += value * len(idx)
            seen += len(idx)
            correct += acc * len(idx)
        seen = max(seen, 1.0)
        logs = {"loss": total / seen}
        if loss.classification:
            logs["accuracy"] = correct / seen
        optimizer.epoch += 1
        history.append(epoch, logs)
    return history
