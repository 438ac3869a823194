"""Training history and callbacks: early stopping, stop-on-NaN, user hooks, progress display.

A callback sees `on_train_begin(model)`, `on_epoch_end(model, epoch, logs)`,
`on_batch_end(model, batch, logs)` and `on_train_end(model)`; setting
`model.stop_training = True` ends training after the current step.
"""
import math
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

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={sorted(self.history)})"


class Callback:
    def on_train_begin(self, model):
        pass

    def on_epoch_end(self, model, epoch, logs):
        pass

    def on_batch_end(self, model, batch, logs):
        pass

    def on_train_end(self, model):
        pass


class LambdaCallback(Callback):
    """Callbacks from plain functions: LambdaCallback(on_epoch_end=lambda model, epoch, logs: ...)."""

    def __init__(self, on_train_begin=None, on_epoch_end=None, on_batch_end=None, on_train_end=None):
        for name, fn in (("on_train_begin", on_train_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_end", on_batch_end), ("on_train_end", on_train_end)):
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, fn)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs
    in a row (Keras's convention: patience 0 and 1 both stop at the first such epoch).

    mode "min" for losses, "max" for accuracy ("auto" picks from the name).
    restore_best_weights puts back the weights of the best epoch when training stops.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, float(min_delta)
        self.mode = mode if mode != "auto" else ("max" if "acc" in monitor else "min")
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, model):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_weights = None, 0, None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, model, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r} but the logs hold "
                             f"{sorted(logs)} (val_* needs validation_data or validation_split)")
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [p.copy() for p in model.parameters()]
        else:
            self.wait += 1
            if self.wait >= max(self.patience, 1):
                model.stop_training = True
                model.history.stopped_early = True

    def on_train_end(self, model):
        if self.restore_best_weights and self.best_weights is not None:
            for p, best in zip(model.parameters(), self.best_weights):
                p[...] = best


class TerminateOnNaN(Callback):
    """Stop quietly (no exception) when the loss becomes NaN or inf; the model
    keeps its last finite weights. Without it, fit raises TrainingDiverged."""
    quiet_on_nan = True


class ProgressDisplay(Callback):
    """A progress bar with loss and samples/s on a terminal; one line per epoch otherwise."""

    def __init__(self, epochs, n_batches, file=None, bar=None):
        self.file = file or sys.stdout
        self.epochs, self.n_batches = epochs, n_batches
        self.bar = self.file.isatty() if bar is None else bar

    def on_train_begin(self, model):
        self.t0 = time.perf_counter()
        self.seen = 0

    def on_batch_end(self, model, batch, logs):
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

    def on_epoch_end(self, model, epoch, logs):
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{k} {v:.4f}" for k, v in logs.items()]
        prefix = "\r" if self.bar else ""
        self.file.write(f"{prefix}epoch {epoch + 1}/{self.epochs}  " + "  ".join(parts)
                        + f"  {rate:,.0f} samples/s" + (" " * 10 if self.bar else "") + "\n")
        self.file.flush()
