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
from nncore import functional as F
from nncore.callbacks import Callback, History, ProgressDisplay
from nncore.layers import positive_int
from nncore._kernels.finite import PARALLEL_MIN as FINITE_PARALLEL_MIN
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
# A fit with nothing to run between epochs checks a large X for NaN and inf in its first
# epoch, each batch just before its step reads the rows (X read from memory once, not
# twice), when X has at least DEFERRED_CHECK_BYTES and DEFERRED_CHECK_RATIO times the
# bytes copied to undo that epoch's steps if a row is bad (_Undo); else before training.
DEFERRED_CHECK_BYTES = 1 << 22
DEFERRED_CHECK_RATIO = 8


def epoch_orders(rng: np.random.Generator, n: int, epochs: int) -> np.ndarray:
    """(epochs, n) intp: row e is rng.permutation(n) of the e-th call in a row, drawn
    in one call (Generator.permuted shuffles each row as permutation and shuffle do)."""
    if epochs == 1:                      # (the same draw, ~1 us less)
        order = np.arange(n, dtype=np.intp)
        rng.shuffle(order)
        return order.reshape(1, n)
    orders = np.empty((epochs, n), dtype=np.intp)
    orders[:] = np.arange(n, dtype=np.intp)
    return rng.permuted(orders, axis=1, out=orders)


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


def _step_threads(model: Sequential, rows: int) -> int:
    """The threads the plan's steps of `rows` rows will use (StepPlan's rule: one per
    STEP_FLOPS_PER_THREAD of a step, at most get_num_threads())."""
    n = get_num_threads()
    flops = sum(2 * rows * layer.n_in * layer.n_out * (3 if i else 2)
                for i, layer in enumerate(model.layers))
    quanta = -(-flops // STEP_FLOPS_PER_THREAD)
    return 1 if quanta < 2 else min(n, quanta)


def _check_threads(model: Sequential, X: np.ndarray, batch_size: Any) -> int:
    """The threads of the check of X: those of the steps (min(batch_size, n) rows), so
    that a fit whose steps run on one thread opens no parallel region, whose idle
    threads would spin beside the steps on a busy machine."""
    if X.size < FINITE_PARALLEL_MIN:     # (the check runs on one thread anyway)
        return 1
    try:
        rows = len(X) if batch_size is None else min(int(batch_size), len(X))
    except (TypeError, ValueError):      # a bad batch_size: checked later
        return get_num_threads()
    return _step_threads(model, rows)


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
    given = X
    X = model._inputs(X, finite=False)
    threads = _check_threads(model, X, batch_size)
    defer = (exchange is None and not callbacks and not verbose and validation_data is None
             and not validation_split
             and X.nbytes >= DEFERRED_CHECK_BYTES
             and X.nbytes >= DEFERRED_CHECK_RATIO * _Undo.nbytes(model, optimizer))
    if not defer and not F.all_finite(X, n_threads=threads):
        _refuse(model, given)
    y = loss.targets(y, X.shape[0], model.n_outputs, model.dtype)
    # (with an exchange, "not all zero" holds of every process's weights together: setup)
    w = model._sample_weight(sample_weight, X.shape[0], nonzero=exchange is None)
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
        sizes = exchange.setup(n, crc, None if w is None else bool(np.any(w > 0)))
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
        undo = _Undo(model, optimizer) if defer else None   # (before the fit changes it)
        model.loss, model.optimizer = loss, optimizer
        model.history = history = History()
        model.stop_training = False
        if exchange is None:
            run = _Run(model, model._plan(loss, optimizer, batch_size), loss, optimizer, X, y,
                       w, batch_size, shuffle, validation, callbacks, undo)
            undo = None                                  # (the run drops it after epoch 1)
        else:
            run = _ShardedRun(model, loss, optimizer, X, y, w, batch_size, shuffle, validation,
                             callbacks, grad_shards, exchange, sizes,
                             get_num_threads() if n_threads is None else n_threads)
        for cb in callbacks:
            cb.set_model(model)
        for cb in callbacks:
            cb.on_train_begin({})
        try:
            run.epochs(epochs, interrupted, verbose)
        except _BadRow:                                  # (the run has undone its steps)
            _refuse(model, given)
        for cb in callbacks:
            cb.on_train_end(dict(run.last_logs))
    return history


class _Run:
    """One fit's loop: the plan's calls, and the bookkeeping between them."""

    def __init__(self, model, plan, loss, optimizer, X, y, w, batch_size, shuffle,
                 validation, callbacks, undo=None):
        self.model, self.plan, self.loss, self.optimizer = model, plan, loss, optimizer
        self.undo = undo                    # set: check X's rows in the first epoch
        self.X, self.w = X, w
        self.t, self.y = (None, y) if y.ndim == 1 else (y, None)
        self.n, self.batch_size, self.shuffle = X.shape[0], batch_size, shuffle
        self.n_batches = -(-self.n // batch_size)
        self.validation, self.callbacks = validation, callbacks
        self.batch_events = bool(callbacks) and any(cb.batch_events for cb in callbacks)
        self.epoch_events = bool(callbacks) or validation is not None
        self.last_logs = {}
        self.quiet_nan = bool(callbacks) and any(getattr(cb, "quiet_on_nan", False)
                                                 for cb in callbacks)
        self.tuner = Tuner.for_fit(plan.threads(min(batch_size, self.n),
                                                get_num_threads()) > 1)

    def epochs(self, epochs, interrupted, verbose):
        model, plan, optimizer = self.model, self.plan, self.optimizer
        done = 0
        while done < epochs:
            chunk = 1 if self.epoch_events else min(epochs - done,
                                                    max(1, ORDER_ROWS // self.n))
            for cb in self.callbacks:                # (chunk is 1 when there are callbacks)
                cb.on_epoch_begin(done, {})
            orders = epoch_orders(model._shuffle_rng, self.n, chunk) if self.shuffle else None
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
                    1 if self.batch_events else 0, seconds, optimizer.t, nt,
                    1 if self.undo is not None else 0)
                if status == 4:                      # a row of X holds NaN or inf
                    self.undo.restore()
                    raise _BadRow
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
            self.undo = None                         # every row was checked (or none used)
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
        if len(sums) == 1:          # (the same division, on floats: ~2 us less an epoch)
            total, rows, right = sums[0].tolist()
            rows = max(rows, 1.0)
            means = [total / rows], [right / rows]
        else:
            means = (sums[:, ::2] / np.maximum(sums[:, 1:2], 1.0)).T    # (2, E)
        metrics = {"loss": means[0]}
        if self.loss.classification:
            metrics["accuracy"] = means[1]
        model = self.model
        if self.validation is None and not self.callbacks:
            # (the History keeps copies of the arrays until it is read; nothing reads
            # last_logs without callbacks)
            model.history.extend(range(first, first + len(sums)), metrics)
            self.optimizer.advance(epochs=len(sums))
            return
        metrics = {k: v if isinstance(v, list) else v.tolist() for k, v in metrics.items()}
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


def _refuse(model, X):
    """Raise the ValueError of model._inputs for an X that holds NaN or inf."""
    model._inputs(X)                        # names what is wrong (NaN/inf, float range)
    raise ValueError("X contains NaN or inf")           # (X changed since it was read)


class _BadRow(Exception):
    """The plan found a NaN or inf in a row of X (status 4) before that batch's step."""


class _Undo:
    """What a fit changes before its first epoch ends, copied when it starts: put back,
    the model is as if the fit had refused X before training (its parameters, gradients,
    optimizer state and step count, loss, optimizer, History and shuffling stream)."""

    @staticmethod
    def nbytes(model, optimizer):
        """The bytes the copies take: parameters, gradients and each optimizer state."""
        itemsize = np.dtype(model.dtype).itemsize
        return model.n_parameters() * itemsize * (2 + len(optimizer.active_states()))

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.copies = [(a, a.copy()) for a in model.parameters() + model.gradients()]
        self.copies += [(a, a.copy()) for arrays in optimizer.state.values() for a in arrays]
        self.state = {name: list(arrays) for name, arrays in optimizer.state.items()}
        self.t, self.epoch = optimizer.t, optimizer.epoch
        self.fields = (model.loss, model.optimizer, model.history, model.stop_training)
        self.rng = model._shuffle_rng.bit_generator.state

    def restore(self):
        for a, copy in self.copies:
            np.copyto(a, copy)
        self.optimizer.state.clear()
        self.optimizer.state.update(self.state)
        self.optimizer.t, self.optimizer.epoch = self.t, self.epoch
        model = self.model
        model.loss, model.optimizer, model.history, model.stop_training = self.fields
        model._shuffle_rng.bit_generator.state = self.rng


class _ShardedRun(_sharded.ShardedSteps, _Run):
    """fit's loop for grad_shards = G > 1 (or under MPI): the sharded steps of
    nncore._sharded (two compiled calls a step) on this module's bookkeeping."""


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
