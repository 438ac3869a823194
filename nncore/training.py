"""The fit driver: one epoch loop for every backend and every way of calling fit.

A fit runs on the model's training plan (nncore._kernels.train.StepPlan, or its NumPy twin
nncore.reference.StepPlan with backend="numpy"), which holds the batch schedule:
order, partial last batch, sample-weight scales, learning rate per epoch, the
optimizer's step count. This module owns what lies around it -- checking the
data, shuffling, callbacks, validation, Ctrl-C and the History -- and decides
where the plan hands control back to Python:

    per batch   when a callback has batch hooks (on_train_batch_begin/end)
    per epoch   when a callback, validation or the progress display needs epoch ends
    otherwise   only every CHECK_SECONDS, to see whether Ctrl-C was pressed

Where control returns changes nothing else: the same steps run in the same
order, so every way gives bitwise the same weights and History.
"""
from __future__ import annotations

import math
import signal
import threading
import time
import zlib
from typing import TYPE_CHECKING, Any

try:                    # the signal module's C functions, without its enum conversions
    import _signal as _signals                                    # (~10 us a fit)
except ImportError:     # not CPython
    _signals = signal
SIGINT = int(signal.SIGINT)

import numpy as np

from nncore import _checks, _sharded
from nncore.callbacks import Callback, History, ProgressDisplay
from nncore.layers import positive_int
from nncore._kernels.train import FLOPS_PER_THREAD as STEP_FLOPS_PER_THREAD
from nncore._threads import Tuner, get_num_threads

if TYPE_CHECKING:
    import numpy.typing as npt

    from nncore.losses import Loss
    from nncore.model import Sequential
    from nncore.optim import Optimizer

    Validation = tuple[np.ndarray, np.ndarray]          # (X_val, targets)

# The plan hands control back at least this often (seconds) to let Ctrl-C stop a fit.
CHECK_SECONDS = 0.05
# Shuffled epochs planned per call: their permutations hold about this many rows.
ORDER_ROWS = 1 << 16


class TrainingDiverged(FloatingPointError):
    """The loss, a gradient, or a weight or optimizer state after the update would be
    NaN or inf; the step that found it changed nothing, so the model (and its
    optimizer's state) are as after the last finite step."""


def divergence(value: float) -> str:
    """What went wrong in a step the plan reported as diverged."""
    if not math.isfinite(value):
        return f"the loss became {value}"
    return f"a gradient or the update would be NaN or inf (the loss was {value:.3g})"


def _validation(model: Sequential, loss: Loss, X: np.ndarray, y: np.ndarray,
                w: np.ndarray | None,
                validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None,
                validation_split: float,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Validation | None]:
    """(X, y, w) to train on and (X_val, y_val) or None."""
    if validation_data is not None and validation_split:
        raise ValueError("pass validation_data or validation_split, not both")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, y_val)")
        Xv = model._inputs(validation_data[0], "validation_data[0]")
        yv = loss.targets(validation_data[1], Xv.shape[0], model.n_outputs, model.dtype)
        return X, y, w, (Xv, yv)
    if not validation_split:
        return X, y, w, None
    n = X.shape[0]
    split = _checks.real_scalar(validation_split, "validation_split", nonnegative=True)
    if not split < 1:
        raise ValueError(f"validation_split must lie in [0, 1), got {split}")
    n_val = int(round(n * split))
    if n_val == 0 or n_val == n:
        raise ValueError(f"validation_split={split} leaves {n - n_val} training "
                         f"and {n_val} validation samples")
    k = n - n_val
    return X[:k], y[:k], None if w is None else w[:k], (X[k:], y[k:])


def _step_threads(model: Sequential, X: Any, batch_size: int | None) -> int:
    """The threads the plan's steps will use (StepPlan's rule: one per
    STEP_FLOPS_PER_THREAD of a step of min(batch_size, n) rows, at most
    get_num_threads()), for the kernels a fit runs before them (the check of X). When
    the steps run on one thread, nothing of the fit opens a parallel region, whose
    idle threads would spin beside the step on a busy machine."""
    n = get_num_threads()
    try:
        rows = len(X) if batch_size is None else min(int(batch_size), len(X))
    except (TypeError, ValueError):      # not a sequence, or a bad batch_size: checked later
        return n
    flops = sum(2 * rows * layer.n_in * layer.n_out * (3 if i else 2)
                for i, layer in enumerate(model.layers))
    quanta = -(-flops // STEP_FLOPS_PER_THREAD)
    return 1 if quanta < 2 else min(n, quanta)


def _callbacks(callbacks: list[Callback] | tuple[Callback, ...] | None) -> list[Callback]:
    if not isinstance(callbacks, (list, tuple, type(None))):
        raise TypeError(f"callbacks must be a list of nncore.callbacks.Callback objects, "
                        f"got {type(callbacks).__name__}")
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be nncore.callbacks.Callback objects, got {cb!r}")
    return callbacks


def fit(model: Sequential, X: npt.ArrayLike, y: npt.ArrayLike, *,
        loss: str | Loss | None = None, optimizer: Optimizer | None = None, epochs: int = 1,
        batch_size: int | None = 32,
        validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        validation_split: float = 0.0,
        callbacks: list[Callback] | tuple[Callback, ...] | None = None, verbose: int = 0,
        shuffle: bool = True, sample_weight: npt.ArrayLike | None = None,
        grad_shards: int = 1) -> History:
    """Train `model` (see Sequential.fit for the arguments); returns its History."""
    grad_shards = positive_int(grad_shards, "grad_shards")
    exchange = None
    if grad_shards > 1:
        exchange = _sharded.LocalExchange(grad_shards)
    return _fit(model, X, y, loss=loss, optimizer=optimizer, epochs=epochs,
                batch_size=batch_size, validation_data=validation_data,
                validation_split=validation_split, callbacks=callbacks, verbose=verbose,
                shuffle=shuffle, sample_weight=sample_weight, grad_shards=grad_shards,
                exchange=exchange)


def _fit(model, X, y, *, loss, optimizer, epochs, batch_size, validation_data,
         validation_split, callbacks, verbose, shuffle, sample_weight, grad_shards,
         exchange, n_threads=None):
    """fit, in one process (exchange None: the plan's own schedule; else the sharded
    one of nncore._sharded) or as one process of nncore.distributed.fit."""
    loss = model._loss(loss)
    optimizer = model._optimizer(optimizer)
    epochs = positive_int(epochs, "epochs")
    X = model._inputs(X, n_threads=_step_threads(model, X, batch_size))
    y = loss.targets(y, X.shape[0], model.n_outputs, model.dtype)
    w = model._sample_weight(sample_weight, X.shape[0])
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2; got {verbose!r}")
    X, y, w, validation = _validation(model, loss, X, y, w, validation_data, validation_split)
    n = X.shape[0]
    if exchange is None and n == 0:
        raise ValueError("X holds no samples")
    if exchange is not None:
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
            if batch_size % grad_shards:
                raise ValueError(f"batch_size ({batch_size}) must be a multiple of "
                                 f"grad_shards ({grad_shards})")
        crc = 0
        for p in model.parameters():
            crc = zlib.crc32(np.ascontiguousarray(p).view(np.uint8), crc)
        sizes = exchange.setup(n, crc)
        if sum(sizes) == 0:
            raise ValueError("X holds no samples")
        if batch_size is not None:
            batch_size = min(batch_size // grad_shards, max(sizes)) * grad_shards
        n_batches = max(-(-m // (batch_size // grad_shards if batch_size else max(sizes)))
                        for m in sizes)
    else:
        batch_size = n if batch_size is None else min(positive_int(batch_size, "batch_size"), n)
        n_batches = -(-n // batch_size)
    callbacks = _callbacks(callbacks)
    if verbose:
        callbacks.append(ProgressDisplay(epochs, n_batches, n, bar=None if verbose == 1 else False))

    with model._usage.training("fit"), _InterruptFlag() as interrupted:
        model.loss, model.optimizer = loss, optimizer
        model.history = history = History()
        model.stop_training = False
        if exchange is None:
            run = _Run(model, model._plan(loss, optimizer, batch_size), loss, optimizer, X, y,
                       w, batch_size, shuffle, validation, callbacks)
        else:
            run = _ShardedRun(model, loss, optimizer, X, y, w, batch_size, shuffle, validation,
                             callbacks, grad_shards, exchange, sizes,
                             get_num_threads() if n_threads is None else n_threads)
        for cb in callbacks:
            cb.set_model(model)
        for cb in callbacks:
            cb.on_train_begin({})
        run.epochs(epochs, interrupted, verbose)
        for cb in callbacks:
            cb.on_train_end(dict(run.last_logs))
    return history


class _Run:
    """One fit's loop: the plan's calls, and the bookkeeping between them."""

    def __init__(self, model, plan, loss, optimizer, X, y, w, batch_size, shuffle,
                 validation, callbacks):
        self.model, self.plan, self.loss, self.optimizer = model, plan, loss, optimizer
        self.X, self.w = X, w
        self.t, self.y = (None, y) if y.ndim == 1 else (y, None)
        self.n, self.batch_size, self.shuffle = X.shape[0], batch_size, shuffle
        self.n_batches = -(-self.n // batch_size)
        self.validation, self.callbacks = validation, callbacks
        self.batch_events = any(cb.batch_events for cb in callbacks)
        self.epoch_events = bool(callbacks) or validation is not None
        self.last_logs = {}
        self.quiet_nan = any(getattr(cb, "quiet_on_nan", False) for cb in callbacks)
        self.tuner = Tuner.for_fit()

    def epochs(self, epochs, interrupted, verbose):
        model, plan, optimizer = self.model, self.plan, self.optimizer
        done = 0
        while done < epochs:
            chunk = 1 if self.epoch_events else min(epochs - done,
                                                    max(1, ORDER_ROWS // self.n))
            for cb in self.callbacks:                # (chunk is 1 when there are callbacks)
                cb.on_epoch_begin(done, {})
            orders = (np.stack([model._shuffle_rng.permutation(self.n) for _ in range(chunk)])
                      if self.shuffle else None)
            lrs = optimizer.learning_rates(chunk)
            sums = np.zeros((chunk, 3))
            e = b = 0
            stop = False
            while e < chunk and not stop:
                if self.batch_events:
                    size = min(self.batch_size, self.n - b * self.batch_size)
                    for cb in self.callbacks:
                        cb.on_train_batch_begin(b, dict(epoch=done + e, size=size))
                nt, seconds = self.tuner.next(CHECK_SECONDS)
                t0 = time.perf_counter()
                e2, b2, status, value, acc, step = plan.run(
                    self.X, self.t, self.y, self.w, orders, self.batch_size, lrs, sums, e, b,
                    1 if self.batch_events else 0, seconds, optimizer.t, nt)
                self.tuner.record(nt, (e2 - e) * self.n_batches + b2 - b,
                                  time.perf_counter() - t0)
                optimizer.advance(steps=step - optimizer.t)
                if status in (1, 2):                 # (e2, b2): the batch that diverged
                    self._end_epochs(done + e, sums[e:e2])
                    self._diverged(value, b2, done + e2)
                    return
                if self.batch_events:
                    logs = dict(epoch=done + e, size=size, loss=value if status == 0 else math.nan)
                    if status == 3:
                        logs["skipped"] = True           # every sample weight 0
                    for cb in self.callbacks:
                        cb.on_train_batch_end(b, logs)
                stop = model.stop_training or interrupted()
                if stop and b2 != 0:                 # end the epoch where the step stopped
                    e2, b2 = e2 + 1, 0
                self._end_epochs(done + e, sums[e:e2])
                e, b = e2, b2
            done += e
            if interrupted():
                model.history.interrupted = True
                if verbose:
                    print("interrupted: training stopped after a complete step")
                return
            if model.stop_training:
                return

    def _end_epochs(self, first, sums):
        """Log each epoch of sums (rows: loss * rows, rows, accuracy * rows) in the
        History, with the validation metrics, advance the optimizer's schedule and
        tell the callbacks. Without validation or callbacks, all of them at once."""
        if len(sums) == 0:
            return
        seen = np.maximum(sums[:, 1], 1.0)
        metrics = {"loss": (sums[:, 0] / seen).tolist()}
        if self.loss.classification:
            metrics["accuracy"] = (sums[:, 2] / seen).tolist()
        model = self.model
        if self.validation is None and not self.callbacks:
            model.history.extend(range(first, first + len(sums)), metrics)
            self.optimizer.advance(epochs=len(sums))
            self.last_logs = {k: v[-1] for k, v in metrics.items()}
            return
        for i in range(len(sums)):
            logs = {k: v[i] for k, v in metrics.items()}
            if self.validation is not None:
                logs.update({f"val_{k}": v for k, v in
                             model._evaluate(*self.validation, self.loss).items()})
            self.optimizer.advance(epochs=1)
            model.history.append(first + i, logs)
            self.last_logs = logs
            for cb in self.callbacks:
                cb.on_epoch_end(first + i, dict(logs))

    def _diverged(self, value, batch, epoch):
        """A step diverged (the weights are as before it): stop quietly or raise."""
        if self.quiet_nan:
            self.model.history.stopped_early = True
            return
        raise TrainingDiverged(
            f"{divergence(value)} at epoch {epoch + 1}, batch {batch + 1}: training "
            f"stopped and the model keeps its last finite weights (try a smaller lr)")


class _ShardedRun(_Run):
    """fit's loop for grad_shards = G > 1 (or under MPI): Python per step, the compiled
    gradient and apply phases inside (the schedule: nncore._sharded's docstring)."""

    def __init__(self, model, loss, optimizer, X, y, w, batch_size, shuffle, validation,
                 callbacks, grad_shards, exchange, sizes, n_threads):
        G = grad_shards
        self.G, self.ex, self.tree = G, exchange, _sharded.Tree(G)
        self.sizes = sizes
        self.bs = max(sizes) if batch_size is None else batch_size // G
        self.n_threads = n_threads
        ex = exchange
        self.starts = np.concatenate([[0], np.cumsum(sizes[ex.lo:ex.hi])]).astype(np.intp)
        plan = model._plan(loss, optimizer, self.bs)
        super().__init__(model, plan, loss, optimizer, X, y, w, self.bs * G, shuffle,
                         validation, callbacks)
        self.n_batches = max(-(-m // self.bs) for m in sizes)
        self.grads = model.gradients()
        self.offsets = np.concatenate([[0], np.cumsum([g.size for g in self.grads])])
        self.N = int(self.offsets[-1])

    def _rows(self, g, b):
        """Rows (into the whole shard) of local shard g's batch b."""
        m = self.sizes[g]
        return min(b * self.bs, m), min((b + 1) * self.bs, m)

    def _batch_rows(self, b):
        return sum(self._rows(g, b)[1] - self._rows(g, b)[0] for g in range(self.G))

    def epochs(self, epochs, interrupted, verbose):
        model, optimizer, ex = self.model, self.optimizer, self.ex
        lo, hi = ex.lo, ex.hi
        for epoch in range(epochs):
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch, {})
            perms = ([model._shuffle_rng.permutation(m) for m in self.sizes]
                     if self.shuffle else None)
            local = [self.starts[g - lo] + (perms[g] if perms is not None
                                             else np.arange(self.sizes[g]))
                     for g in range(lo, hi)]
            scales = self._scales(local)
            lr = optimizer.learning_rates(1)[0]
            sums = np.zeros((1, 3))
            for b in range(self.n_batches):
                status, value = self._step(epoch, b, local, scales[b], lr, interrupted)
                if status == "stop":
                    if b > 0:                     # end the epoch where the steps stopped
                        self._end_epochs(epoch, sums)
                    return self._stopped(interrupted, verbose)
                if status == "diverged":
                    self._diverged(value, b, epoch)
                    return
                if status == "skipped":
                    continue
                nb, frac = value[1], value[2]
                sums[0] += (value[0] * nb, nb, frac * nb)
            self._end_epochs(epoch, sums)
            stop = self._agree_stop(interrupted)
            if stop:
                return self._stopped(interrupted, verbose)

    def _stopped(self, interrupted, verbose):
        if interrupted():
            self.model.history.interrupted = True
            if verbose:
                print("interrupted: training stopped after a complete step")

    def _agree_stop(self, interrupted):
        """Every process stops when one was asked to (Ctrl-C, a callback)."""
        want = 1.0 if (self.model.stop_training or interrupted()) else 0.0
        flags = self.ex.gather(np.array([want]), "stop")
        return bool(flags[:, 0].max())

    def _scales(self, local):
        """Per batch, the row scales of each local shard (None: no rows), or None for a
        batch whose sample weights sum to 0 (skipped)."""
        ex, G, tree = self.ex, self.G, self.tree
        nbat = self.n_batches
        if self.w is None:
            out = []
            for b in range(nbat):
                B = self._batch_rows(b)
                out.append([np.full(r1 - r0, 1.0 / B) if r1 > r0 else None
                            for r0, r1 in (self._rows(g, b) for g in range(ex.lo, ex.hi))])
            return out
        per = ex.hi - ex.lo
        msg = np.zeros(nbat * per)
        for i, g in enumerate(range(ex.lo, ex.hi)):
            for b in range(nbat):
                r0, r1 = self._rows(g, b)
                msg[b * per + i] = float(np.sum(self.w[local[i][r0:r1]]))
        allw = self.ex.gather(msg, "sample weights")
        leaf = allw.reshape(ex.size, nbat, per).transpose(1, 0, 2).reshape(nbat, G)
        out = []
        for b in range(nbat):
            known = {(0, g): (float(leaf[b, g]) if self._rows(g, b)[1] > self._rows(g, b)[0]
                              else None) for g in range(G)}
            W = tree.root(known)
            if not W:
                out.append(None)
                continue
            row = []
            for i, g in enumerate(range(ex.lo, ex.hi)):
                r0, r1 = self._rows(g, b)
                row.append(self.w[local[i][r0:r1]] / W if r1 > r0 else None)
            out.append(row)
        return out

    def _step(self, epoch, b, local, scales, lr, interrupted):
        """Global batch b. Returns (status, (loss, rows, accuracy) | loss): status
        "ok", "skipped" (sample weights 0), "diverged" or "stop"."""
        model, ex, tree, plan = self.model, self.ex, self.tree, self.plan
        per = ex.hi - ex.lo
        stop = model.stop_training or interrupted()
        if self.batch_events:
            for cb in self.callbacks:
                cb.on_train_batch_begin(b, dict(epoch=epoch, size=self._batch_rows(b)))
        msg = np.zeros(2 + per)
        msg[1] = 1.0 if stop else 0.0
        leaves = {}
        count = 0
        if scales is not None and not stop:
            for i, g in enumerate(range(ex.lo, ex.hi)):
                r0, r1 = self._rows(g, b)
                if r1 == r0:
                    leaves[(0, g)] = None
                    continue
                idx = local[i][r0:r1]
                X = np.ascontiguousarray(self.X[idx])
                t = None if self.t is None else np.ascontiguousarray(self.t[idx])
                y = None if self.y is None else np.ascontiguousarray(self.y[idx])
                s = np.ascontiguousarray(scales[i])
                status, value, acc = plan.gradients(X, t, y, None, self.n_threads,
                                                    scale=s, l2=False)
                msg[2 + i] = value
                count += round(acc * (r1 - r0) * (1 if self.y is not None else self.t.shape[1]))
                if status == 0:
                    leaf = np.empty(self.N, dtype=self.X.dtype)
                    for k, grad in enumerate(self.grads):
                        leaf[self.offsets[k]:self.offsets[k + 1]] = grad.reshape(-1)
                    leaves[(0, g)] = leaf
                else:
                    leaves[(0, g)] = None         # the loss is not finite: stops below
        msg[0] = float(count)
        allmsg = ex.gather(msg, "loss")
        if allmsg[:, 1].max():
            return "stop", None
        if scales is None:
            return "skipped", None
        nb = self._batch_rows(b)
        known = {}
        for r in range(ex.size):
            for i in range(per):
                g = r * per + i
                r0, r1 = self._rows(g, b)
                known[(0, g)] = float(allmsg[r, 2 + i]) if r1 > r0 else None
        penalty = self._penalty()
        value = tree.root(known) + penalty
        if not math.isfinite(value):
            return "diverged", value
        frontier = tree.frontier(ex.lo, ex.hi)
        values = [tree.node(k, j, leaves) for k, j in frontier]
        empty = {g for g in range(self.G) if self._rows(g, b)[1] == self._rows(g, b)[0]}
        root = ex.reduce(tree, values, self.N, self.X.dtype, empty)
        for k, grad in enumerate(self.grads):
            grad.reshape(-1)[...] = root[self.offsets[k]:self.offsets[k + 1]]
        if model.l2:
            for layer in model.layers:
                layer.grad_weight[...] = (layer.grad_weight
                                          + model.l2 * layer.weight.astype(np.float64))
        status, step = plan.apply(lr, self.optimizer.t, self.n_threads)
        if status != 0:
            return "diverged", value
        self.optimizer.advance(steps=step - self.optimizer.t)
        frac = (allmsg[:, 0].sum() / (nb if self.y is not None else nb * model.n_outputs)
                if self.loss.classification else 0.0)
        if self.batch_events:
            for cb in self.callbacks:
                cb.on_train_batch_end(b, dict(epoch=epoch, size=nb, loss=value))
        return "ok", (value, nb, frac)

    def _penalty(self):
        """1/2 l2 sum ||W||^2, computed as reference.StepPlan does."""
        l2 = self.model.l2
        if not l2:
            return 0.0
        return sum(0.5 * l2 * float(np.sum(layer.weight.astype(np.float64) ** 2))
                   for layer in self.model.layers)


class _InterruptFlag:
    """Turns Ctrl-C during fit into a flag checked between calls of the plan. It takes
    over SIGINT only from Python's default handler (which raises KeyboardInterrupt),
    in the main thread, and puts that handler back: a handler set by the user or from
    C, or SIGINT ignored, is left alone. A second Ctrl-C raises KeyboardInterrupt."""

    def __enter__(self):
        self.hit = False
        self.installed = (threading.current_thread() is threading.main_thread()
                          and _signals.getsignal(SIGINT) is signal.default_int_handler)
        if self.installed:
            _signals.signal(SIGINT, self._handler)
        return lambda: self.hit

    def _handler(self, signum, frame):
        if self.hit:                      # a second Ctrl-C: stop right away
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self.installed:
            _signals.signal(SIGINT, signal.default_int_handler)
        return False
