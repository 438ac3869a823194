"""Training history and callbacks, with Keras' hooks and signatures.

A callback's `model` is the model being trained (set before on_train_begin). fit calls

    on_train_begin(logs)                 once
    on_epoch_begin(epoch, logs)          epoch from 0 on, every fit call counting from 0
    on_train_batch_begin(batch, logs)    logs: epoch, size (rows of the batch)
    on_train_batch_end(batch, logs)      logs: epoch, size, loss (before the update)
    on_epoch_end(epoch, logs)            logs: loss, accuracy, val_loss, ... of the epoch
    on_train_end(logs)                   logs: the last epoch's

Setting `self.model.stop_training = True` ends training after the current step.

Where the compiled plan hands control back follows from the hooks a callback
defines: a callback with batch hooks gets every batch (one return to Python per
batch); one with only epoch or train hooks one return per epoch; the batch loop stays
in C between. Whatever the callbacks, the weights are bitwise the same.
"""
import csv
import math
import os
import sys
import time


class History:
    """Per-epoch metrics: history['loss'], history['val_loss'], history['accuracy'], ..."""

    def __init__(self):
        self.epoch = []
        self.history = {}
        self.stopped_early = False
        self.interrupted = False

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def extend(self, epochs, metrics):
        """Append several epochs at once: metrics {key: [value per epoch]}."""
        epochs = list(epochs)
        self.epoch.extend(epochs)
        for key, values in metrics.items():
            self.history.setdefault(key, []).extend(values)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={sorted(self.history)})"


BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class: override the hooks you need (Keras' names and signatures)."""
    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    @property
    def batch_events(self):
        """True when the callback defines a batch hook (fit then returns per batch)."""
        return any(name in vars(self) or getattr(type(self), name) is not getattr(Callback, name)
                   for name in BATCH_HOOKS)


class LambdaCallback(Callback):
    """Callbacks from plain functions, as Keras' LambdaCallback:
    LambdaCallback(on_epoch_end=lambda epoch, logs: ...). on_batch_begin/on_batch_end
    are taken as on_train_batch_begin/end."""
    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_train_batch_begin", "on_train_batch_end")

    def __init__(self, on_train_begin=None, on_train_end=None, on_epoch_begin=None,
                 on_epoch_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 on_batch_begin=None, on_batch_end=None):
        given = dict(on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_batch_begin=on_train_batch_begin or on_batch_begin,
                     on_train_batch_end=on_train_batch_end or on_batch_end)
        for name, fn in given.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, fn)


def _monitor_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    return mode if mode != "auto" else ("max" if "acc" in monitor else "min")


def _monitored(logs, monitor, who):
    if monitor not in logs:
        raise ValueError(f"{who} monitors {monitor!r} but the logs hold {sorted(logs)} "
                         f"(val_* needs validation_data or validation_split)")
    return logs[monitor]


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs
    in a row (Keras's convention: patience 0 and 1 both stop at the first such epoch).

    mode "min" for losses, "max" for accuracy ("auto" picks from the name).
    restore_best_weights puts back the weights of the best epoch when training stops.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.monitor = monitor
        self.patience = _count(patience, "patience")
        self.min_delta = _nonnegative(min_delta, "min_delta")
        self.mode = _monitor_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_weights = None, 0, None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [p.copy() for p in self.model.parameters()]
        else:
            self.wait += 1
            if self.wait >= max(self.patience, 1):
                self.model.stop_training = True
                self.model.history.stopped_early = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            for p, best in zip(self.model.parameters(), self.best_weights):
                p[...] = best


class TerminateOnNaN(Callback):
    """Stop quietly (no exception) when the loss becomes NaN or inf; the model
    keeps its last finite weights. Without it, fit raises TrainingDiverged."""
    quiet_on_nan = True


class ModelCheckpoint(Callback):
    """Save the model at the end of each epoch (or, with save_best_only, of each epoch
    whose `monitor` improved), atomically (Sequential.save): an interrupted run never
    leaves a damaged checkpoint. filepath may hold Keras-style fields filled from the
    epoch (1-based) and the logs, e.g. "ckpt-{epoch:03d}-{val_loss:.3f}.npz"."""

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto"):
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or os.PathLike, got "
                            f"{type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        self.model.save(self.filepath.format(epoch=epoch + 1, **logs))


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's lr by `factor` when `monitor` has not improved by more
    than min_delta for `patience` epochs, then wait `cooldown` epochs; never below
    min_lr (Keras' ReduceLROnPlateau)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or \
                not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        self.monitor, self.factor = monitor, float(factor)
        self.patience = _count(patience, "patience")
        self.cooldown = _count(cooldown, "cooldown")
        self.min_delta = _nonnegative(min_delta, "min_delta")
        self.min_lr = _nonnegative(min_lr, "min_lr")
        self.mode = _monitor_mode(monitor, mode)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, epoch, logs=None):
        value = _monitored(logs or {}, self.monitor, "ReduceLROnPlateau")
        improved = (value < self.best - self.min_delta if self.mode == "min"
                    else value > self.best + self.min_delta)
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if improved:
            self.best, self.wait = value, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= max(self.patience, 1):
                optimizer = self.model.optimizer
                optimizer.lr = max(optimizer.lr * self.factor, self.min_lr) or optimizer.lr
                self.cooldown_left, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the optimizer's lr to schedule(epoch, lr) at the start of each epoch (Keras'
    LearningRateScheduler; epoch from 0 in each fit call)."""

    def __init__(self, schedule):
        if not callable(schedule):
            raise TypeError(f"schedule must be callable (epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = self.schedule(epoch, optimizer.lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
                math.isfinite(lr) and lr > 0):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, {optimizer.lr}) "
                             f"returned {lr!r}, not a finite number > 0")
        optimizer.lr = float(lr)


class CSVLogger(Callback):
    """One CSV row per epoch: epoch, then the logs' keys in sorted order (Keras'
    CSVLogger); append=True continues an existing file."""

    def __init__(self, filename, separator=",", append=False):
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and \
            os.path.getsize(self.filename) > 0
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer, self.keys, self.header = None, None, not exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.writer is None:
            self.keys = sorted(logs)
            self.writer = csv.writer(self.file, delimiter=self.separator)
            if self.header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [logs.get(k, "NA") for k in self.keys])
        self.file.flush()

    def on_train_end(self, logs=None):
        self.file.close()


class ProgressDisplay(Callback):
    """A progress bar with loss and samples/s on a terminal; one line per epoch otherwise."""

    def __init__(self, epochs, n_batches, n_samples, file=None, bar=None):
        self.file = file or sys.stdout
        self.epochs, self.n_batches, self.n_samples = epochs, n_batches, n_samples
        self.bar = self.file.isatty() if bar is None else bar

    @property
    def batch_events(self):
        return self.bar

    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += logs["size"]
        if self.bar and (batch % max(1, self.n_batches // 50) == 0 or batch == self.n_batches - 1):
            done = (batch + 1) / self.n_batches
            width = 30
            filled = int(width * done)
            rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
            self.file.write(f"\repoch {logs['epoch'] + 1}/{self.epochs} "
                            f"[{'=' * filled}{'.' * (width - filled)}] "
                            f"loss {logs['loss']:.4f}  {rate:,.0f} samples/s")
            self.file.flush()

    def on_epoch_end(self, epoch, logs=None):
        if not self.bar:
            self.seen += self.n_samples
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{k} {v:.4f}" for k, v in logs.items()]
        prefix = "\r" if self.bar else ""
        self.file.write(f"{prefix}epoch {epoch + 1}/{self.epochs}  " + "  ".join(parts)
                        + f"  {rate:,.0f} samples/s" + (" " * 10 if self.bar else "") + "\n")
        self.file.flush()
