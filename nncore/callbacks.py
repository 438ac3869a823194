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
from __future__ import annotations

import csv
import math
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    import numpy as np

    from nncore.datasets import PathLike
    from nncore.model import Sequential
    from nncore.optim import Optimizer


class History:
    """Per-epoch metrics: history['loss'], history['val_loss'], history['accuracy'], ...

    A fit without callbacks hands its epochs over as arrays (extend); they become the
    lists of `epoch` and `history` when either is first read, so a long run of tiny
    epochs pays no Python object per epoch unless its History is read."""

    stopped_early: bool
    interrupted: bool

    def __init__(self) -> None:
        self._epoch: list[int] = []
        self._history: dict[str, list[float]] = {}
        self._pending: list[tuple[range | list[int], dict[str, Any]]] = []   # (extend)
        self.stopped_early = False
        self.interrupted = False

    @property
    def epoch(self) -> list[int]:
        self._flush()
        return self._epoch

    @property
    def history(self) -> dict[str, list[float]]:
        self._flush()
        return self._history

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for epochs, metrics in pending:
            self._epoch.extend(epochs)
            for key, values in metrics.items():
                self._history.setdefault(key, []).extend(
                    values.tolist() if hasattr(values, "tolist") else values)

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        self._flush()
        self._epoch.append(epoch)
        for key, value in logs.items():
            self._history.setdefault(key, []).append(value)

    def extend(self, epochs: Iterable[int], metrics: Mapping[str, Iterable[float]]) -> None:
        """Append several epochs at once: metrics {key: values per epoch (a list or a
        1-D array, kept until the History is read)}."""
        self._pending.append((epochs if isinstance(epochs, range) else list(epochs),
                              {k: v.copy() if hasattr(v, "tolist") else list(v)
                               for k, v in metrics.items()}))

    def __getstate__(self) -> dict[str, Any]:
        self._flush()
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("epoch", "history"):            # (pickled before the lazy lists)
            if name in state:
                state["_" + name] = state.pop(name)
        state.setdefault("_pending", [])
        self.__dict__.update(state)

    def __getitem__(self, key: str) -> list[float]:
        return self.history[key]

    def __len__(self) -> int:
        """The epochs logged (without making their lists)."""
        return len(self._epoch) + sum(len(epochs) for epochs, _ in self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, metrics={sorted(self.history)})"


BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end")


class Callback:
    """Base class: override the hooks you need (Keras' names and signatures)."""
    # the model being trained: set (set_model) before any hook runs, so a hook may use
    # self.model as a Sequential, as in Keras
    model: Sequential = None  # type: ignore[assignment]

    def set_model(self, model: Sequential) -> None:
        self.model = model

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    @property
    def batch_events(self) -> bool:
        """True when the callback defines a batch hook (fit then returns per batch)."""
        return any(name in vars(self) or getattr(type(self), name) is not getattr(Callback, name)
                   for name in BATCH_HOOKS)


class LambdaCallback(Callback):
    """Callbacks from plain functions, as Keras' LambdaCallback:
    LambdaCallback(on_epoch_end=lambda epoch, logs: ...). on_batch_begin/on_batch_end
    are taken as on_train_batch_begin/end (giving both names of one hook is an error)."""
    HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
             "on_train_batch_begin", "on_train_batch_end")

    def __init__(self, on_train_begin: Callable[[dict[str, Any]], object] | None = None,
                 on_train_end: Callable[[dict[str, Any]], object] | None = None,
                 on_epoch_begin: Callable[[int, dict[str, Any]], object] | None = None,
                 on_epoch_end: Callable[[int, dict[str, Any]], object] | None = None,
                 on_train_batch_begin: Callable[[int, dict[str, Any]], object] | None = None,
                 on_train_batch_end: Callable[[int, dict[str, Any]], object] | None = None,
                 on_batch_begin: Callable[[int, dict[str, Any]], object] | None = None,
                 on_batch_end: Callable[[int, dict[str, Any]], object] | None = None) -> None:
        for alias, name, a, b in (("on_batch_begin", "on_train_batch_begin", on_batch_begin,
                                   on_train_batch_begin),
                                  ("on_batch_end", "on_train_batch_end", on_batch_end,
                                   on_train_batch_end)):
            if a is not None and b is not None:
                raise ValueError(f"LambdaCallback: {alias} is another name for {name}; "
                                 f"give one of them, not both")
        given = dict(on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_batch_begin=on_train_batch_begin or on_batch_begin,
                     on_train_batch_end=on_train_batch_end or on_batch_end)
        for name, fn in given.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {fn!r}")
                setattr(self, name, fn)


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'; got {mode!r}")
    return mode if mode != "auto" else ("max" if "acc" in monitor else "min")


def _monitored(logs: Mapping[str, float], monitor: str, who: str) -> float:
    if monitor not in logs:
        raise ValueError(f"{who} monitors {monitor!r} but the logs hold {sorted(logs)} "
                         f"(val_* needs validation_data or validation_split)")
    return logs[monitor]


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def _nonnegative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than min_delta for `patience` epochs
    in a row (Keras's convention: patience 0 and 1 both stop at the first such epoch).

    mode "min" for losses, "max" for accuracy ("auto" picks from the name).
    restore_best_weights puts back the weights of the best epoch when training stops.
    """

    best: float
    best_epoch: int | None
    wait: int
    best_weights: list[np.ndarray] | None

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False) -> None:
        self.monitor = monitor
        self.patience = _count(patience, "patience")
        self.min_delta = _nonnegative(min_delta, "min_delta")
        self.mode = _monitor_mode(monitor, mode)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_weights = None, 0, None

    def _improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        model: Sequential = self.model              # type: ignore[assignment]  # set by fit
        value = _monitored(logs or {}, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [p.copy() for p in model.parameters()]
        else:
            self.wait += 1
            if self.wait >= max(self.patience, 1):
                model.stop_training = True
                model.history.stopped_early = True          # type: ignore[union-attr]

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            model: Sequential = self.model          # type: ignore[assignment]  # set by fit
            for p, best in zip(model.parameters(), self.best_weights):
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

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto") -> None:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath must be a str or os.PathLike, got "
                            f"{type(filepath).__name__}")
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        model: Sequential = self.model              # type: ignore[assignment]  # set by fit
        model.save(self.filepath.format(epoch=epoch + 1, **logs))


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's lr by `factor` when `monitor` has not improved by more
    than min_delta for `patience` epochs, then wait `cooldown` epochs; never below
    min_lr (Keras' ReduceLROnPlateau)."""

    best: float
    wait: int
    cooldown_left: int

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0) -> None:
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or \
                not 0 < factor < 1:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        self.monitor, self.factor = monitor, float(factor)
        self.patience = _count(patience, "patience")
        self.cooldown = _count(cooldown, "cooldown")
        self.min_delta = _nonnegative(min_delta, "min_delta")
        self.min_lr = _nonnegative(min_lr, "min_lr")
        self.mode = _monitor_mode(monitor, mode)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = self.cooldown_left = 0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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
                optimizer: Optimizer = self.model.optimizer  # type: ignore[union-attr,assignment]
                optimizer.lr = max(optimizer.lr * self.factor, self.min_lr) or optimizer.lr
                self.cooldown_left, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the optimizer's lr to schedule(epoch, lr) at the start of each epoch (Keras'
    LearningRateScheduler; epoch from 0 in each fit call)."""

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable (epoch, lr) -> lr, got {schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer: Optimizer = self.model.optimizer   # type: ignore[union-attr,assignment]
        lr = self.schedule(epoch, optimizer.lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
                math.isfinite(lr) and lr > 0):
            raise ValueError(f"LearningRateScheduler: schedule({epoch}, {optimizer.lr}) "
                             f"returned {lr!r}, not a finite number > 0")
        optimizer.lr = float(lr)


class CSVLogger(Callback):
    """One CSV row per epoch: epoch, then the logs' keys in sorted order (Keras'
    CSVLogger); append=True continues an existing file."""

    file: IO[str]
    writer: Any                        # a csv writer, made at the first epoch's end
    keys: list[str] | None
    header: bool

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",",
                 append: bool = False) -> None:
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        exists = self.append and os.path.exists(self.filename) and \
            os.path.getsize(self.filename) > 0
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer, self.keys, self.header = None, None, not exists

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.writer is None:
            self.keys = sorted(logs)
            self.writer = csv.writer(self.file, delimiter=self.separator)
            if self.header:
                self.writer.writerow(["epoch"] + self.keys)
        keys: list[str] = self.keys                   # type: ignore[assignment]  # set above
        self.writer.writerow([epoch] + [logs.get(k, "NA") for k in keys])
        self.file.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.file.close()


class ProgressDisplay(Callback):
    """A progress bar with loss and samples/s on a terminal; one line per epoch otherwise."""

    t0: float
    seen: int

    def __init__(self, epochs: int, n_batches: int, n_samples: int, file: IO[str] | None = None,
                 bar: bool | None = None) -> None:
        self.file = file or sys.stdout
        self.epochs, self.n_batches, self.n_samples = epochs, n_batches, n_samples
        self.bar = self.file.isatty() if bar is None else bar

    @property
    def batch_events(self) -> bool:
        return self.bar

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.t0 = time.perf_counter()
        self.seen = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.seen += logs["size"]                   # type: ignore[index]  # fit passes logs
        if self.bar and (batch % max(1, self.n_batches // 50) == 0 or batch == self.n_batches - 1):
            done = (batch + 1) / self.n_batches
            width = 30
            filled = int(width * done)
            rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
            epoch, loss = logs["epoch"], logs["loss"]   # type: ignore[index]
            self.file.write(f"\repoch {epoch + 1}/{self.epochs} "
                            f"[{'=' * filled}{'.' * (width - filled)}] "
                            f"loss {loss:.4f}  {rate:,.0f} samples/s")
            self.file.flush()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.bar:
            self.seen += self.n_samples
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        parts = [f"{k} {v:.4f}" for k, v in logs.items()]  # type: ignore[union-attr]
        prefix = "\r" if self.bar else ""
        self.file.write(f"{prefix}epoch {epoch + 1}/{self.epochs}  " + "  ".join(parts)
                        + f"  {rate:,.0f} samples/s" + (" " * 10 if self.bar else "") + "\n")
        self.file.flush()
