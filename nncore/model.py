"""Sequential models: a stack of Dense layers, trained by minibatch gradient descent.

    forward:   a_0 = X,  a_l = f_l(a_{l-1} @ W_l.T + b_l)
    loss:      L = loss(a_L, y) + 1/2 l2 sum_l ||W_l||^2
    backward:  the chain rule from the output back, layer by layer
    update:    each parameter by the optimizer, from its gradient
"""
import math
import numbers
import signal
import threading

import numpy as np

from nncore import _checks, losses as losses_mod, optim as optim_mod
from nncore import functional as F
from nncore.callbacks import Callback, History, ProgressDisplay
from nncore.layers import Dense, positive_int
from nncore._threads import get_num_threads

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


class TrainingDiverged(FloatingPointError):
    """The loss, a gradient, or a weight or optimizer state after the update would be
    NaN or inf; the step that found it changed nothing, so the model (and its
    optimizer's state) are as after the last finite step."""


def _dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dt.name}")
    return dt


class Sequential:
    """A stack of layers trained together.

    Parameters
    ----------
    layers : list of Dense; each layer's n_in is the previous layer's n_out.
    seed : int or None. Seeds the weights and the shuffling: the same seed
        gives bitwise the same trained weights, whatever the thread count.
    dtype : "float32" (default) or "float64"
    l2 : float >= 0. Adds 1/2 l2 sum ||W||^2 to the loss (weights, not biases).
    backend : "compiled" (default) or "numpy": run every step through the
        NumPy twins instead, to check the compiled run step by step.
    """

    def __init__(self, layers, *, seed=None, dtype="float32", l2=0.0, backend="compiled"):
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a Dense layer, got {type(layer).__name__}")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(f"layers[{i}] takes {layers[i].n_in} inputs but layers[{i - 1}] "
                                 f"gives {layers[i - 1].n_out} outputs")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or seed < 0):
            raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
        self.layers = layers
        self.dtype = _dtype(dtype)
        self.l2 = _checks.real_scalar(l2, "l2", nonnegative=True)
        self.backend = _checks.backend(backend)
        self.seed = seed
        rng = np.random.default_rng(seed)
        for layer in layers:
            layer.build(rng, self.dtype)
        self._shuffle_rng = np.random.default_rng(rng.integers(2**63))
        self.loss = None
        self.optimizer = None
        self._init_runtime()

    def _init_runtime(self):
        """State that lives only in this process (not saved, not pickled)."""
        self.history = None
        self.stop_training = False
        self._fused = True        # compiled backend: one nncore._train call per step
        self._plan_cache = None

    # ---- structure -------------------------------------------------------

    @property
    def n_inputs(self):
        return self.layers[0].n_in

    @property
    def n_outputs(self):
        return self.layers[-1].n_out

    def __repr__(self):
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], dtype={self.dtype.name})"

    # ---- saving ----------------------------------------------------------

    def save(self, path):
        """Write the model (weights, loss, optimizer state, shuffling) to the .npz
        file `path`, atomically; nncore.load(path) reads it back. Format: nncore.io."""
        from nncore import io
        io.save(self, path)

    def __getstate__(self):
        """Pickle the state a file holds (nncore.io.get_state), not the workspaces."""
        from nncore import io
        config, arrays = io.get_state(self)
        return {"config": config, "arrays": arrays}

    def __setstate__(self, state):
        from nncore import io
        io.set_state(self, state["config"], state["arrays"])

    def parameters(self):
        """[W_1, b_1, W_2, b_2, ...]: the arrays themselves (updated in place)."""
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        """[dL/dW_1, dL/db_1, ...], filled by backward."""
        return [g for layer in self.layers for g in layer.gradients()]

    def _decay_mask(self):
        """Weight decay applies to weights (first of each layer's parameters), not biases."""
        return [i == 0 for layer in self.layers for i in range(len(layer.parameters()))]

    def n_parameters(self):
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for g in self.gradients():
            g.fill(0)

    # ---- checks ------------------------------------------------------------

    def _inputs(self, X, name="X"):
        """X as a C-contiguous (n, n_inputs) array of the model's dtype, all finite."""
        if not isinstance(X, np.ndarray):
            X = np.asarray(X)
        if X.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.shape[1] != self.n_inputs:
            raise ValueError(f"{name} has {X.shape[1]} features but the first layer takes "
                             f"{self.n_inputs}")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not F.all_finite(X):
            raise ValueError(f"{name} contains NaN or inf")
        return X

    def _loss(self, loss):
        loss = losses_mod.get(loss if loss is not None else self.loss)
        last = self.layers[-1].activation
        if loss.name != "mse" and last != "identity":
            raise ValueError(f"{loss.name} takes the last layer's raw outputs (logits): make "
                             f"its activation 'identity', not {last!r}")
        return loss

    def _sample_weight(self, sample_weight, n):
        if sample_weight is None:
            return None
        w = np.asarray(sample_weight, dtype=np.float64)
        _checks.shape(w, "sample_weight", (n,))
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("sample_weight must be finite and >= 0")
        if n and not (w > 0).any():
            raise ValueError("sample_weight is zero everywhere")
        return w

    # ---- forward and backward -------------------------------------------

    def _forward(self, x):
        for layer in self.layers:
            x = layer.forward(x, backend=self.backend)
        return x

    def _backward(self, grad_output, need_grad_x=False):
        g = grad_output
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_grad_x=need_grad_x or i > 0,
                                        backend=self.backend)
        return g

    def forward(self, X):
        """The network's output a_L (n, n_outputs) for X (n, n_inputs), a new array."""
        return self._forward(self._inputs(X)).copy()

    def backward(self, grad_output):
        """Backpropagate dL/d output (n, n_outputs) of the last forward: fills each
        layer's grad_weight, grad_bias and returns dL/dX (n, n_inputs)."""
        if self.layers[-1]._x is None:
            raise RuntimeError("backward called before forward")
        n = self.layers[0]._x.shape[0]
        g = _checks.float_array(grad_output, "grad_output", 2)
        _checks.shape(g, "grad_output", (n, self.n_outputs))
        g = np.ascontiguousarray(g, dtype=self.dtype)
        return self._backward(g, need_grad_x=True).copy()

    # ---- one step --------------------------------------------------------

    def _penalty(self):
        if not self.l2:
            return 0.0
        return sum(F.l2_penalty(layer.weight, self.l2, backend=self.backend)
                   for layer in self.layers)

    def _plan(self, loss, optimizer, batch_max):
        """The compiled whole-step plan for this loss, optimizer and batch size,
        rebuilt only when one of them (or an array it points into) changed."""
        params = self.parameters()
        optimizer._ensure_state(params)
        state = [optimizer.state.get(name) for name in ("velocity", "m", "v")]
        key = (loss.name, id(optimizer), optimizer.plan_key(), batch_max, self.l2,
               tuple(id(p) for p in params),
               tuple(id(a) for arrays in state if arrays for a in arrays))
        cached = self._plan_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        s1 = state[0] or state[1]
        s2 = state[2]
        specs, i = [], 0
        for layer in self.layers:
            # z is a where f' follows from a (one batch of activations per layer);
            # grad_z is formed in place of dL/da
            z, a, _, gx = layer._workspace(batch_max)
            b = i + 1 if layer.use_bias else None
            specs.append(dict(
                n_in=layer.n_in, n_out=layer.n_out, activation=layer.activation,
                slope=layer.slope, weight=layer.weight, bias=layer.bias,
                grad_weight=layer.grad_weight, grad_bias=layer.grad_bias,
                z=z, a=a, grad_z=None, grad_x=gx,
                state1=(s1[i], s1[b] if b else None) if s1 else None,
                state2=(s2[i], s2[b] if b else None) if s2 else None))
            i += len(layer.parameters())
        if isinstance(optimizer, optim_mod.Adam):
            hyper = dict(optimizer="adam", betas=optimizer.betas, eps=optimizer.eps)
        else:
            hyper = dict(optimizer="sgd", momentum=optimizer.momentum,
                         nesterov=optimizer.nesterov)
        plan = F.train_plan(specs, loss=loss.name, batch_max=batch_max, l2=self.l2,
                            weight_decay=optimizer.weight_decay, **hyper)
        self._plan_cache = (key, plan)
        return plan

    def _step(self, xb, yb, wb, loss, optimizer, grad_buf, saved, plan=None):
        """Forward, loss, backward, update on one prepared batch. Returns (loss value,
        accuracy of the batch (0 for mse), ok). The update is all or nothing: ok is
        False, and no parameter or optimizer state has changed, when the value or a
        gradient is NaN or inf, or the update made a parameter or a state NaN or inf
        (it is undone from `saved`, a list this step fills with copies; the compiled
        plan needs none)."""
        if self.backend == "compiled" and self._fused:
            return self._compiled_step(xb, yb, wb, loss, optimizer, grad_buf, plan)
        out = self._forward(xb)
        value, grad = loss(out, yb, grad_buf, sample_weight=wb, backend=self.backend)
        value += self._penalty()
        if not math.isfinite(value):
            return value, 0.0, False
        self._backward(grad)
        if self.l2:
            for layer in self.layers:
                F.l2_penalty(layer.weight, self.l2, layer.grad_weight, backend=self.backend)
        params, grads = self.parameters(), self.gradients()
        if not all(F.all_finite(g, backend=self.backend) for g in grads):
            return value, 0.0, False
        optimizer._ensure_state(params)
        kept = params + [a for arrays in optimizer.state.values() for a in arrays]
        if len(saved) != len(kept):
            saved[:] = [np.empty_like(a) for a in kept]
        for s, a in zip(saved, kept):
            np.copyto(s, a)
        t = getattr(optimizer, "t", None)
        optimizer.step(params, grads, self._decay_mask(), backend=self.backend)
        if all(F.all_finite(a, backend=self.backend) for a in kept):
            return value, _accuracy(loss, out, yb) if loss.classification else 0.0, True
        for a, s in zip(kept, saved):
            np.copyto(a, s)
        if t is not None:
            optimizer.t = t
        return value, 0.0, False

    def _compiled_step(self, xb, yb, wb, loss, optimizer, grad_buf, plan=None):
        """_step in one compiled call (nncore._train): the same kernels, same order.
        `plan` (from _plan) saves looking it up again on every step of a fit."""
        if plan is None:
            plan = self._plan(loss, optimizer, grad_buf.shape[0] if grad_buf is not None
                              else xb.shape[0])
        adam = isinstance(optimizer, optim_mod.Adam)
        labels = yb.ndim == 1
        status, value, acc, t = plan.step(xb, None if labels else yb, yb if labels else None,
                                          wb, optimizer.current_lr(), optimizer.t if adam else 0,
                                          get_num_threads())
        if adam:
            optimizer.t = t
        return value, acc, status in (0, 3)

    def train_step(self, X, y, loss=None, optimizer=None, *, sample_weight=None):
        """One gradient step on the batch (X, y); returns the batch loss (before the update).
        Raises TrainingDiverged, leaving the weights and the optimizer state unchanged,
        when the loss or a gradient is NaN or inf, or the update would make a weight or a
        state NaN or inf."""
        loss = self._loss(loss)
        optimizer = self._optimizer(optimizer)
        X = self._inputs(X)
        y = loss.targets(y, X.shape[0], self.n_outputs, self.dtype)
        w = self._sample_weight(sample_weight, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("X is an empty batch")
        value, _, ok = self._step(X, y, w, loss, optimizer, None, [])
        if not ok:
            raise TrainingDiverged(f"{_divergence(value)}: the weights are unchanged")
        self.loss, self.optimizer = loss, optimizer
        return value

    def _optimizer(self, optimizer):
        if optimizer is None:
            optimizer = self.optimizer if self.optimizer is not None else optim_mod.SGD(lr=0.01)
        if isinstance(optimizer, str):
            raise TypeError(f"optimizer must be an nncore.optim optimizer object, e.g. "
                            f"nncore.optim.Adam(lr=0.001), not the name {optimizer!r}")
        if not isinstance(optimizer, optim_mod.Optimizer):
            raise TypeError(f"optimizer must be an nncore.optim optimizer (SGD, Adam), "
                            f"got {type(optimizer).__name__}")
        return optimizer

    # ---- training --------------------------------------------------------

    def fit(self, X, y, *, loss=None, optimizer=None, epochs=1, batch_size=32,
            validation_data=None, validation_split=0.0, callbacks=(), verbose=0,
            shuffle=True, sample_weight=None):
        """Train by minibatch gradient descent; returns a History.

        Parameters
        ----------
        X : array (n, n_inputs); y : targets for `loss` (class labels (n,) for
            softmax_cross_entropy and hinge; (n, n_outputs) floats for mse and
            binary_cross_entropy)
        loss : name or nncore.losses.Loss (default: the last one used)
        optimizer : nncore.optim optimizer (default: the last one used, else SGD(lr=0.01));
            its state carries over between calls, so training can resume
        epochs : int >= 1
        batch_size : int >= 1, or None for the whole set (batch gradient descent);
            1 is stochastic gradient descent
        validation_data : (X_val, y_val), or validation_split in [0, 1): the last
            fraction of (X, y), taken before shuffling
        callbacks : list of nncore.callbacks.Callback, or None
        verbose : 0 silent, 1 progress bar on a terminal (else a line per epoch), 2 a line per epoch
        shuffle : reshuffle every epoch with the model's seed
        sample_weight : array (n,) >= 0; the loss becomes sum w_i l_i / sum w_i per batch

        A NaN or inf loss, or an update that makes a weight NaN or inf, stops training
        with TrainingDiverged (or quietly with callbacks.TerminateOnNaN, setting
        history.stopped_early); the model keeps its last finite weights. Ctrl-C stops
        after the current step, ends the epoch there and returns the History with
        history.interrupted set; a second Ctrl-C raises KeyboardInterrupt.
        """
        loss = self._loss(loss)
        optimizer = self._optimizer(optimizer)
        epochs = positive_int(epochs, "epochs")
        X = self._inputs(X)
        n = X.shape[0]
        y = loss.targets(y, n, self.n_outputs, self.dtype)
        w = self._sample_weight(sample_weight, n)
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
        if validation_data is not None and validation_split:
            raise ValueError("pass validation_data or validation_split, not both")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            Xv = self._inputs(validation_data[0], "validation_data[0]")
            yv = loss.targets(validation_data[1], Xv.shape[0], self.n_outputs, self.dtype)
        elif validation_split:
            split = _checks.real_scalar(validation_split, "validation_split", nonnegative=True)
            if not split < 1:
                raise ValueError(f"validation_split must lie in [0, 1), got {split}")
            n_val = int(round(n * split))
            if n_val == 0 or n_val == n:
                raise ValueError(f"validation_split={split} leaves {n - n_val} training "
                                 f"and {n_val} validation samples")
            Xv, yv = X[n - n_val:], y[n - n_val:]
            X, y = X[:n - n_val], y[:n - n_val]
            w = None if w is None else w[:n - n_val]
            n -= n_val
        else:
            Xv = yv = None
        if n == 0:
            raise ValueError("X holds no samples")
        if batch_size is None:
            batch_size = n
        batch_size = min(positive_int(batch_size, "batch_size"), n)
        if not isinstance(callbacks, (list, tuple, type(None))):
            raise TypeError(f"callbacks must be a list of nncore.callbacks.Callback objects, "
                            f"got {type(callbacks).__name__}")
        callbacks = list(callbacks or ())
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be nncore.callbacks.Callback objects, got {cb!r}")
        n_batches = -(-n // batch_size)
        if verbose:
            callbacks.append(ProgressDisplay(epochs, n_batches, bar=None if verbose == 1 else False))
        quiet_nan = any(getattr(cb, "quiet_on_nan", False) for cb in callbacks)

        self.loss, self.optimizer = loss, optimizer
        self.history = History()
        self.stop_training = False
        plan = (self._plan(loss, optimizer, batch_size)
                if self.backend == "compiled" and self._fused else None)
        fast = plan is not None and not callbacks and Xv is None
        if not fast:                   # the per-batch loop's buffers, once per fit
            gbuf = np.empty((batch_size, self.n_outputs), self.dtype)
            saved = []                 # _step's copies
            if shuffle:
                xbuf = np.empty((batch_size, X.shape[1]), self.dtype)
                ybuf = np.empty((batch_size,) + y.shape[1:], y.dtype)
                wbuf = np.empty(batch_size) if w is not None else None
        with _InterruptFlag() as interrupted:
            for cb in callbacks:
                cb.on_train_begin(self)
            if fast:
                self._fit_epochs_compiled(plan, X, y, w, loss, optimizer, epochs, batch_size,
                                          shuffle, quiet_nan, interrupted)
            for epoch in range(0 if fast else epochs):
                if shuffle:                 # a fresh permutation: fit(2) + fit(2) == fit(4)
                    order = self._shuffle_rng.permutation(n)
                total = correct = seen = 0.0
                diverged = None
                for b in range(n_batches):
                    rows = slice(b * batch_size, (b + 1) * batch_size)
                    if shuffle:                 # gather into the preallocated batch
                        idx = order[rows]
                        nb = idx.shape[0]
                        xb = np.take(X, idx, axis=0, out=xbuf[:nb])
                        yb = np.take(y, idx, axis=0, out=ybuf[:nb])
                        wb = None if w is None else np.take(w, idx, out=wbuf[:nb])
                    else:                       # in order: contiguous views, no copy
                        xb, yb = X[rows], y[rows]
                        wb = None if w is None else w[rows]
                        nb = xb.shape[0]
                    if wb is not None and not wb.any():
                        continue                    # nothing to learn from this batch
                    value, acc, ok = self._step(xb, yb, wb, loss, optimizer, gbuf[:nb], saved,
                                                plan)
                    if not ok:
                        diverged = (value, b)
                        break
                    total += value * nb
                    seen += nb
                    correct += acc * nb
                    for cb in callbacks:
                        cb.on_batch_end(self, b, dict(epoch=epoch, loss=value, size=nb))
                    if self.stop_training or interrupted():
                        break
                if diverged is not None:
                    if self._diverged(*diverged, epoch, quiet_nan):
                        break
                logs = self._end_epoch(epoch, total, seen, correct, loss, optimizer,
                                       None if Xv is None else (Xv, yv))
                for cb in callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if interrupted():
                    self.history.interrupted = True
                    if verbose:
                        print("interrupted: training stopped after a complete step")
                    break
                if self.stop_training:
                    break
            for cb in callbacks:
                cb.on_train_end(self)
        return self.history

    def _end_epoch(self, epoch, total, seen, correct, loss, optimizer, validation=None):
        """Log an epoch in the History (with the validation metrics, given (X, y))
        and advance the optimizer's schedule; returns the logs."""
        seen = max(float(seen), 1.0)
        logs = {"loss": float(total) / seen}
        if loss.classification:
            logs["accuracy"] = float(correct) / seen
        if validation is not None:
            logs.update({f"val_{k}": v for k, v in self._evaluate(*validation, loss).items()})
        optimizer.epoch += 1
        self.history.append(epoch, logs)
        return logs

    def _diverged(self, value, batch, epoch, quiet):
        """A step diverged (the weights are as before it): stop quietly (True) or raise."""
        if quiet:
            self.history.stopped_early = True
            return True
        raise TrainingDiverged(
            f"{_divergence(value)} at epoch {epoch + 1}, batch {batch + 1}: training "
            f"stopped and the model keeps its last finite weights (try a smaller lr)")

    def _fit_epochs_compiled(self, plan, X, y, w, loss, optimizer, epochs, batch_size,
                             shuffle, quiet_nan, interrupted):
        """Whole epochs per compiled call (rows gathered and stepped in C), when no
        callback, progress display or validation needs Python between steps. The
        same steps as the per-batch loop: bitwise the same weights and History.
        Ctrl-C takes effect between two calls (at most ~65k samples apart)."""
        n = X.shape[0]
        labels = y.ndim == 1
        adam = isinstance(optimizer, optim_mod.Adam)
        epoch = 0
        while epoch < epochs:
            chunk = min(epochs - epoch, max(1, (1 << 16) // n))
            orders = (np.stack([self._shuffle_rng.permutation(n) for _ in range(chunk)])
                      if shuffle else None)
            lrs = np.empty(chunk)
            for i in range(chunk):
                lrs[i] = optimizer.lr * (optimizer.schedule(optimizer.epoch + i)
                                         if optimizer.schedule else 1.0)
            done, totals, seen, correct, stop, t = plan.run_epochs(
                X, None if labels else y, y if labels else None, w, orders, batch_size, lrs,
                optimizer.t if adam else 0, get_num_threads())
            if adam:
                optimizer.t = t
            for i in range(done):
                self._end_epoch(epoch + i, totals[i], seen[i], correct[i], loss, optimizer)
            epoch += done
            if stop is not None:
                self._diverged(stop[3], stop[1], epoch, quiet_nan)
                return
            if interrupted():
                self.history.interrupted = True
                return

    def partial_fit(self, X, y, *, loss=None, optimizer=None, batch_size=32, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer
        state (for data that arrives in chunks). Returns the History of that epoch."""
        return self.fit(X, y, loss=loss, optimizer=optimizer, epochs=1,
                        batch_size=batch_size, sample_weight=sample_weight)

    # ---- using a trained model -------------------------------------------

    def output(self, X, batch_size=4096):
        """The network's raw outputs a_L (n, n_outputs) for X, computed in blocks of
        batch_size rows (the workspaces stay one block large)."""
        X = self._inputs(X)
        batch_size = positive_int(batch_size, "batch_size")
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        for start in range(0, X.shape[0], batch_size):
            out[start:start + batch_size] = self._forward(X[start:start + batch_size])
        return out

    def _trained_loss(self):
        if self.loss is None:
            raise RuntimeError("the model does not know its loss yet: fit it first "
                               "(or set model.loss = 'softmax_cross_entropy', ...)")
        return losses_mod.get(self.loss)

    def predict(self, X):
        """Class labels for classification losses, raw outputs for mse."""
        return self._trained_loss().predict(self.output(X))

    def predict_proba(self, X):
        """Class probabilities: softmax of the logits (softmax_cross_entropy) or
        sigmoid (binary_cross_entropy)."""
        return self._trained_loss().predict_proba(self.output(X))

    def _evaluate(self, X, y, loss, sample_weight=None):
        out = self.output(X)
        value, _ = loss(out, y, sample_weight=sample_weight, backend=self.backend)
        result = {"loss": value + self._penalty()}
        if loss.classification:
            result["accuracy"] = _accuracy(loss, out, y)
        return result

    def evaluate(self, X, y, *, loss=None, sample_weight=None):
        """{'loss': ..., 'accuracy': ...} (accuracy for classification losses)."""
        loss = self._loss(loss) if loss is not None else self._trained_loss()
        X = self._inputs(X)
        y = loss.targets(y, X.shape[0], self.n_outputs, self.dtype)
        return self._evaluate(X, y, loss, self._sample_weight(sample_weight, X.shape[0]))


def _divergence(value):
    """What went wrong in a step that _step reported as diverged."""
    if not math.isfinite(value):
        return f"the loss became {value}"
    return f"a gradient or the update would be NaN or inf (the loss was {value:.3g})"


def _accuracy(loss, out, y):
    pred = loss.predict(out)
    if pred.ndim == 1 and y.ndim == 2:
        y = y[:, 0]
    return int(np.count_nonzero(pred == y)) / pred.size


def MLP(sizes, activation="relu", output_activation="identity", *, init=None, seed=None,
        dtype="float32", l2=0.0, backend="compiled"):
    """Sequential Dense layers of the given sizes, e.g. MLP([784, 16, 16, 10]):
    hidden layers use `activation`, the last one `output_activation` (linear)."""
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least the inputs and outputs, got {sizes}")
    _checks.choice(activation, "activation", F.ACTIVATIONS)       # even with no hidden layer
    layers = [Dense(sizes[i], sizes[i + 1],
                    activation if i < len(sizes) - 2 else output_activation, init=init)
              for i in range(len(sizes) - 1)]
    return Sequential(layers, seed=seed, dtype=dtype, l2=l2, backend=backend)


class _InterruptFlag:
    """Turns Ctrl-C during fit into a flag checked between steps. It takes over SIGINT
    only from Python's default handler (which raises KeyboardInterrupt), in the main
    thread, and puts that handler back: a handler set by the user or from C, or SIGINT
    ignored, is left alone."""

    def __enter__(self):
        self.hit = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self.installed:
            signal.signal(signal.SIGINT, self._handler)
        return lambda: self.hit

    def _handler(self, signum, frame):
        if self.hit:                      # a second Ctrl-C: stop right away
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self.installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return False
