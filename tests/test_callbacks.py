"""History and callbacks during fit: hooks, stop_training, EarlyStopping, divergence
(TrainingDiverged, TerminateOnNaN), Ctrl-C, and the progress display."""
import io
import signal

import numpy as np
import pytest

import nncore as nn
from nncore import MLP, Dense, Sequential, TrainingDiverged
from nncore.callbacks import (Callback, EarlyStopping, History, LambdaCallback,
                              ProgressDisplay, TerminateOnNaN)
from nncore.optim import SGD
from conftest import assert_weights_equal, weights


def blobs(n=48, seed=0):
    """Three classes, a cloud of std 0.5 around 2 e_c each."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = 0.5 * rng.standard_normal((n, 3))
    X[np.arange(n), y] += 2.0
    return X, y


def regression(n=32, seed=0):
    """y = X @ [1, 2, 3], no noise."""
    X = np.random.default_rng(seed).standard_normal((n, 3))
    return X, X @ np.array([[1.0], [2.0], [3.0]])


class Recorder(Callback):
    """Every hook call, in order, with the weights at each epoch and batch end."""

    def __init__(self):
        self.calls, self.epoch_weights, self.batch_weights = [], [], []

    def on_train_begin(self, logs=None):
        self.calls.append(("begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch-begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(("batch-begin", logs["epoch"], batch, logs["size"]))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch", logs["epoch"], batch, logs["size"]))
        self.batch_weights.append(weights(self.model))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch", epoch, tuple(sorted(logs))))
        self.epoch_weights.append(weights(self.model))

    def on_train_end(self, logs=None):
        self.calls.append(("end",))


# ---- History and hooks ----------------------------------------------------------------

def test_history():
    h = History()
    h.append(0, {"loss": 2.0, "accuracy": 0.5})
    h.append(1, {"loss": 1.0, "accuracy": 0.75})
    assert h.epoch == [0, 1] and h["loss"] == [2.0, 1.0] and h["accuracy"] == [0.5, 0.75]
    assert "loss" in h and "val_loss" not in h
    assert not h.stopped_early and not h.interrupted
    assert repr(h) == "History(epochs=2, metrics=['accuracy', 'loss'])"


def test_history_keeps_extended_arrays_until_read():
    """extend() keeps copies of the arrays (a fit's epochs) and turns them into Python
    floats in order, between append()s, when the History is read or pickled."""
    import pickle
    h = History()
    h.append(0, {"loss": 3.0})
    values = np.array([2.0, 1.5])
    h.extend(range(1, 3), {"loss": values})
    values[:] = -1                                  # the caller's array changes: not h
    h.extend([3], {"loss": [1.0]})
    assert len(h) == 4 and len(h._pending) == 2     # (counted without the lists)
    h2 = pickle.loads(pickle.dumps(h))
    h.append(4, {"loss": 0.5})
    assert h.epoch == [0, 1, 2, 3, 4] and h["loss"] == [3.0, 2.0, 1.5, 1.0, 0.5]
    assert all(type(v) is float for v in h["loss"])
    assert h2.epoch == [0, 1, 2, 3] and h2.history == {"loss": [3.0, 2.0, 1.5, 1.0]}
    old = History.__new__(History)                  # the state pickled by 0.1.0 before
    old.__setstate__({"epoch": [0], "history": {"loss": [1.0]}, "stopped_early": False,
                      "interrupted": True})
    assert old.epoch == [0] and old["loss"] == [1.0] and old.interrupted


def test_a_fit_without_callbacks_logs_what_one_with_an_epoch_callback_does():
    X, y = blobs()
    fast, slow = (MLP([X.shape[1], 8, 3], seed=0) for _ in range(2))
    kw = dict(loss="softmax_cross_entropy", epochs=30, batch_size=16)
    h1 = fast.fit(X, y, **kw)
    h2 = slow.fit(X, y, callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: None)], **kw)
    assert h1.epoch == h2.epoch == list(range(30)) and h1.history == h2.history


def test_hooks_are_called_with_epoch_and_batch_counts():
    X, y = blobs(n=10)
    rec = Recorder()
    MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=2, batch_size=4,
                               validation_data=(X, y), callbacks=[rec])
    keys = ("accuracy", "loss", "val_accuracy", "val_loss")
    expected = [("begin",)]
    for epoch in range(2):
        expected.append(("epoch-begin", epoch))
        for batch, size in enumerate((4, 4, 2)):
            expected += [("batch-begin", epoch, batch, size), ("batch", epoch, batch, size)]
        expected.append(("epoch", epoch, keys))
    assert rec.calls == expected + [("end",)]
    assert rec.model is not None and len(rec.batch_weights) == 6


def test_lambda_callback():
    X, y = blobs(n=10)
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                        on_batch_end=lambda b, logs: calls.append(("batch", logs["epoch"], b)),
                        on_epoch_end=lambda e, logs: calls.append(("epoch", e, logs["loss"])),
                        on_train_end=lambda logs: calls.append("end"))
    history = MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=2,
                                         batch_size=5, callbacks=[cb])
    assert calls == ["begin", ("batch", 0, 0), ("batch", 0, 1), ("epoch", 0, history["loss"][0]),
                     ("batch", 1, 0), ("batch", 1, 1), ("epoch", 1, history["loss"][1]), "end"]
    only_epochs = LambdaCallback(on_epoch_end=lambda e, logs: None)
    assert only_epochs.on_train_batch_end(0, {}) is None          # the others do nothing
    assert not only_epochs.batch_events and cb.batch_events
    with pytest.raises(TypeError, match="on_epoch_end must be callable"):
        LambdaCallback(on_epoch_end="print")
    with pytest.raises(ValueError, match="on_batch_end is another name for on_train_batch_end"):
        LambdaCallback(on_batch_end=print, on_train_batch_end=print)    # (one was dropped)


def test_callbacks_none_and_tuple():
    X, y = blobs(n=10)
    model = MLP([3, 4, 3], seed=0)
    assert model.fit(X, y, loss="softmax_cross_entropy", callbacks=None).epoch == [0]
    assert model.fit(X, y, callbacks=(Recorder(),)).epoch == [0]


def test_stop_training_in_on_batch_end():
    X, y = blobs(n=10)
    rec = Recorder()

    def stop(batch, logs):
        if logs["epoch"] == 1 and batch == 1:
            model.stop_training = True

    model = MLP([3, 4, 3], seed=0)
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=5, batch_size=2,
                        callbacks=[LambdaCallback(on_batch_end=stop), rec])
    assert history.epoch == [0, 1]
    assert [c[1:3] for c in rec.calls if c[0] == "batch"][-1] == (1, 1)
    assert rec.calls[-1] == ("end",)
    assert not history.interrupted
    # the next fit starts afresh
    assert model.fit(X, y, epochs=2).epoch == [0, 1]


def test_stop_training_in_on_epoch_end():
    X, y = blobs(n=10)
    model = MLP([3, 4, 3], seed=0)
    stop = LambdaCallback(on_epoch_end=lambda e, logs: setattr(model, "stop_training", e == 2))
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=10, callbacks=[stop])
    assert history.epoch == [0, 1, 2]


# ---- EarlyStopping ---------------------------------------------------------------------

def stopped_at(es, values, key="val_loss"):
    """Feed es one value per epoch; the epoch at which it stops training, or None."""
    model = MLP([1, 1], seed=0)
    model.history = History()
    es.set_model(model)
    es.on_train_begin()
    for epoch, value in enumerate(values):
        es.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            assert model.history.stopped_early
            return epoch
    return None


@pytest.mark.parametrize("patience, values, expected", [
    # best 2.0 at epoch 1; then 2.5 (1 without improvement) ...
    (0, [3.0, 2.0, 2.5, 1.0], 2),
    (1, [3.0, 2.0, 2.5, 1.0], 2),
    (2, [3.0, 2.0, 2.5, 2.1, 1.0], 3),                # 2.5, 2.1: 2 epochs without improvement
    (2, [3.0, 2.0, 2.5, 1.9, 2.0, 2.0], 5),           # 1.9 resets the count
    (3, [3.0, 2.0, 2.5, 2.1, 1.0], None),
    (1, [3.0, 3.0], 1),                               # equal is not better
])
def test_early_stopping_patience(patience, values, expected):
    assert stopped_at(EarlyStopping(patience=patience), values) == expected


@pytest.mark.parametrize("min_delta, expected", [(0.5, 1), (0.3, None)])
def test_early_stopping_min_delta(min_delta, expected):
    # improvements of 0.4 each: better than 0.3, not better than 0.5
    assert stopped_at(EarlyStopping(min_delta=min_delta, patience=1),
                      [3.0, 2.6, 2.2, 1.8]) == expected


def test_early_stopping_mode():
    accuracy = [0.5, 0.7, 0.6]
    assert EarlyStopping("val_accuracy").mode == "max"
    assert EarlyStopping("loss").mode == "min"
    assert stopped_at(EarlyStopping("val_accuracy", patience=1), accuracy, "val_accuracy") == 2
    assert stopped_at(EarlyStopping("val_accuracy", patience=1, mode="min"), accuracy,
                      "val_accuracy") == 1
    assert stopped_at(EarlyStopping("loss", patience=1, mode="max"), [1.0, 2.0, 1.5], "loss") == 2


def test_early_stopping_monitor_missing():
    X, y = blobs(n=10)
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val_loss' but the logs hold "
                                         r"\['accuracy', 'loss'\]"):
        MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy",
                                   callbacks=[EarlyStopping()])


@pytest.mark.parametrize("kwargs, message", [
    (dict(patience=-1), "patience must be an int >= 0"),
    (dict(patience=1.5), "patience must be an int >= 0"),
    (dict(min_delta=-0.1), "min_delta must be a number >= 0"),
    (dict(mode="up"), "mode must be 'auto', 'min' or 'max'"),
])
def test_early_stopping_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**kwargs)


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_restore_best_weights(restore):
    """A linear model fit to y = X w starts at 0 and approaches X w; validation
    targets y / 2 are passed halfway, so val_loss falls, then rises."""
    X, y = regression()
    rec = Recorder()
    es = EarlyStopping(patience=2, restore_best_weights=restore)
    model = Sequential([Dense(3, 1)], seed=0, dtype="float64")
    for p in model.parameters():
        p[...] = 0
    history = model.fit(X, y, loss="mse", optimizer=SGD(lr=0.1), epochs=50, batch_size=None,
                        validation_data=(X, y / 2), callbacks=[rec, es])
    best = int(np.argmin(history["val_loss"]))
    assert history.stopped_early and 0 < best < len(history.epoch) - 1
    assert len(history.epoch) == best + 3                   # patience 2
    assert es.best_epoch == best
    expected = rec.epoch_weights[best] if restore else rec.epoch_weights[-1]
    assert_weights_equal(weights(model), expected)


# ---- divergence ---------------------------------------------------------------------

def diverging_fit(dtype, lr, callbacks=()):
    """A regression fit whose loss blows up in its second epoch (4 batches per epoch)."""
    X, y = regression()
    model = MLP([3, 8, 1], seed=0, dtype=dtype)
    rec = Recorder()
    try:
        model.fit(X, y, loss="mse", optimizer=SGD(lr=lr), epochs=20, batch_size=8,
                  callbacks=[rec, *callbacks])
        return model, rec, None
    except TrainingDiverged as exc:
        return model, rec, exc


# The first configuration diverges by a step whose update overflows the float32 weights,
# the second by a step whose loss is inf, both after at least one full epoch (on this
# build; the tests below hold wherever the divergence happens).
DIVERGING = [("float32", 2.0), ("float64", 0.8)]


@pytest.mark.parametrize("dtype, lr", DIVERGING)
def test_training_diverged(dtype, lr):
    model, rec, exc = diverging_fit(dtype, lr)
    assert exc is not None
    assert isinstance(exc, FloatingPointError)
    # the step after the last completed one diverged
    epoch, batch = [c[1:3] for c in rec.calls if c[0] == "batch"][-1]
    epoch, batch = (epoch, batch + 1) if batch < 3 else (epoch + 1, 0)
    assert f"at epoch {epoch + 1}, batch {batch + 1}" in str(exc)
    assert "keeps its last finite weights" in str(exc)
    assert all(np.isfinite(p).all() for p in model.parameters())
    assert_weights_equal(weights(model), rec.batch_weights[-1])
    assert ("end",) not in rec.calls                        # an error: no on_train_end
    assert np.isfinite(model.predict(np.zeros((1, 3)))).all()


@pytest.mark.parametrize("dtype, lr", DIVERGING)
def test_terminate_on_nan(dtype, lr):
    model, rec, exc = diverging_fit(dtype, lr, callbacks=[TerminateOnNaN()])
    assert exc is None
    assert model.history.stopped_early
    assert len(model.history.epoch) == sum(c[0] == "epoch" for c in rec.calls) < 20
    assert rec.calls[-1] == ("end",)
    assert_weights_equal(weights(model), rec.batch_weights[-1])


def one_weight_model(weight, bias=0.0):
    model = Sequential([Dense(1, 1)], dtype="float32")
    model.layers[0].weight[...] = weight
    model.layers[0].bias[...] = bias
    return model


def test_train_step_diverged_loss():
    # out = 1e30 * 1e10 = 1e40 overflows float32: the loss is inf, nothing is updated
    model = one_weight_model(1e30)
    with pytest.raises(TrainingDiverged, match="the loss became inf: the weights are unchanged"):
        model.train_step([[1e10]], [[0.0]], "mse", SGD(lr=0.1))
    assert model.layers[0].weight[0, 0] == np.float32(1e30)


def test_train_step_diverged_update():
    # out = 3e38 (finite), loss = 1/2 (3e38)^2 = 4.5e76 (finite in double);
    # dw = db = 3e38, so w - 3 dw = -6e38 overflows float32: nothing is updated
    model = one_weight_model(3e38)
    before = weights(model)
    with pytest.raises(TrainingDiverged, match=r"a gradient or the update would be NaN or inf "
                                               r"\(the loss was 4.5e\+76\)"):
        model.train_step([[1.0]], [[0.0]], "mse", SGD(lr=3.0))
    assert_weights_equal(weights(model), before)
    history = model.fit([[1.0]], [[0.0]], loss="mse", optimizer=SGD(lr=3.0), epochs=3,
                        callbacks=[TerminateOnNaN()])
    assert history.stopped_early and history.epoch == []
    assert_weights_equal(weights(model), before)


# ---- Ctrl-C ----------------------------------------------------------------------------

def interrupt_at(epoch, batch, times=1):
    def hook(b, logs):
        if (logs["epoch"], b) == (epoch, batch):
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
    return LambdaCallback(on_batch_end=hook)


def fit_with_sigint(model, callbacks, **kwargs):
    X, y = blobs()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    try:
        return model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(lr=0.1), epochs=5,
                         batch_size=8, callbacks=callbacks, **kwargs)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped fit")


def test_ctrl_c_stops_after_the_step():
    model = MLP([3, 8, 3], seed=0)
    rec = Recorder()
    history = fit_with_sigint(model, [interrupt_at(1, 2), rec])
    assert history.interrupted and not history.stopped_early
    assert history.epoch == [0, 1]                        # epoch 1 ends at the interrupted step
    assert [c[1:3] for c in rec.calls if c[0] == "batch"][-1] == (1, 2)
    assert rec.calls[-2:] == [("epoch", 1, ("accuracy", "loss")), ("end",)]
    assert_weights_equal(weights(model), rec.batch_weights[-1])
    X, _ = blobs(n=6)
    assert np.isfinite(model.predict_proba(X)).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the model trains on, and the next fit is not interrupted
    assert not model.fit(*blobs(), epochs=2).interrupted


def test_ctrl_c_message_with_verbose(capsys):
    fit_with_sigint(MLP([3, 8, 3], seed=0), [interrupt_at(0, 1)], verbose=2)
    assert capsys.readouterr().out.splitlines()[-1] == \
        "interrupted: training stopped after a complete step"


def test_second_ctrl_c_raises_keyboard_interrupt():
    X, y = blobs()
    with pytest.raises(KeyboardInterrupt):
        MLP([3, 8, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=3,
                                   callbacks=[interrupt_at(0, 0, times=2)])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_users_sigint_handler_is_left_alone():
    caught = []

    def handler(signum, frame):
        caught.append(signum)

    signal.signal(signal.SIGINT, handler)
    try:
        X, y = blobs()
        history = MLP([3, 8, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=3,
                                             callbacks=[interrupt_at(1, 0)])
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert caught == [signal.SIGINT]
    assert history.epoch == [0, 1, 2] and not history.interrupted


def test_sigint_handler_restored_after_an_error():
    X, y = blobs(n=10)
    with pytest.raises(ValueError, match="monitors 'val_loss'"):
        MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy",
                                   callbacks=[EarlyStopping()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- progress display ---------------------------------------------------------------

def fit_verbose(verbose, epochs=3):
    X, y = blobs(n=20)
    MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=epochs, batch_size=4,
                               validation_split=0.2, verbose=verbose)


@pytest.mark.parametrize("verbose", [1, 2])     # 1: a bar on a terminal, lines otherwise
def test_verbose_prints_a_line_per_epoch(capsys, verbose):
    fit_verbose(verbose)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert len(lines) == 3 and "\r" not in out
    for i, line in enumerate(lines):
        assert line.startswith(f"epoch {i + 1}/3  loss ")
        assert "accuracy" in line and "val_loss" in line and "samples/s" in line


def test_verbose_0_prints_nothing(capsys):
    fit_verbose(0)
    assert capsys.readouterr() == ("", "")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_terminal():
    X, y = blobs(n=20)
    out = Terminal()
    display = ProgressDisplay(epochs=2, n_batches=5, n_samples=20, file=out)
    assert display.bar
    MLP([3, 4, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", epochs=2, batch_size=4,
                               callbacks=[display])
    text = out.getvalue()
    lines = text.split("\n")
    assert len(lines) == 3 and lines[-1] == ""             # one line per epoch ...
    assert lines[0].count("\r") == 6                       # ... redrawn after each batch
    assert "[" + "=" * 30 + "]" in lines[0] and "epoch 1/2" in lines[0]
    assert not ProgressDisplay(2, 5, 20, file=io.StringIO()).bar


# ---- Keras' callbacks -------------------------------------------------------------------

class CountingPlan:
    """The model's plan, counting the calls of run (where control returns to Python)."""

    def __init__(self, plan):
        self.plan, self.runs = plan, 0

    def run(self, *args):
        self.runs += 1
        return self.plan.run(*args)

    def __getattr__(self, name):
        return getattr(self.plan, name)


def counted_fit(model, callbacks, monkeypatch, **kw):
    made = []
    real = model._plan
    monkeypatch.setattr(model, "_plan", lambda *a: made.append(CountingPlan(real(*a))) or made[-1])
    X, y = blobs(n=40)
    history = model.fit(X, y, loss="softmax_cross_entropy", epochs=3, batch_size=4,
                        validation_data=(X, y), callbacks=callbacks, **kw)
    return history, made[0].runs


def test_epoch_only_callbacks_return_once_per_epoch(tmp_path, monkeypatch):
    """10 batches an epoch: epoch hooks cost one return an epoch, batch hooks one a batch."""
    epoch_only = [EarlyStopping(patience=5), nn.callbacks.CSVLogger(tmp_path / "log.csv"),
                  nn.callbacks.ModelCheckpoint(tmp_path / "m.npz"),
                  nn.callbacks.ReduceLROnPlateau(patience=5),
                  nn.callbacks.LearningRateScheduler(lambda epoch, lr: lr)]
    _, runs = counted_fit(MLP([3, 4, 3], seed=0), epoch_only, monkeypatch)
    assert runs == 3
    _, runs = counted_fit(MLP([3, 4, 3], seed=0), [Recorder()], monkeypatch)
    assert runs == 30


def test_model_checkpoint_best_only(tmp_path):
    X, y = blobs(n=40)
    Xv, yv = blobs(n=20, seed=3)
    seen = []
    model = MLP([3, 8, 3], seed=0)
    ckpt = nn.callbacks.ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", save_best_only=True)
    record = LambdaCallback(on_epoch_end=lambda e, logs: seen.append(logs["val_loss"]))
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=SGD(lr=0.5), epochs=8,
              validation_data=(Xv, yv), callbacks=[ckpt, record])
    best = [i + 1 for i, v in enumerate(seen) if v == min(seen[:i + 1])]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"best-{e:02d}.npz" for e in best]
    # the last file saved holds the best epoch's weights: its val_loss is the minimum
    last = nn.load(tmp_path / f"best-{best[-1]:02d}.npz")
    assert last.evaluate(Xv, yv)["loss"] == pytest.approx(min(seen), rel=1e-6)
    with pytest.raises(ValueError, match="ModelCheckpoint monitors 'val_loss'"):
        MLP([3, 8, 3], seed=0).fit(X, y, loss="softmax_cross_entropy", callbacks=[
            nn.callbacks.ModelCheckpoint(tmp_path / "x.npz", save_best_only=True)])


def test_reduce_lr_on_plateau_and_scheduler():
    X, y = blobs(n=40)
    model = MLP([3, 4, 3], seed=0)
    opt = SGD(lr=0.1)
    lrs = []
    # a monitored value that never improves after epoch 0: patience 2, cooldown 1
    plateau = nn.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2,
                                             cooldown=1, min_lr=0.02)
    record = LambdaCallback(on_epoch_begin=lambda e, logs: lrs.append(opt.lr))
    model.fit(X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=9,
              validation_data=(X[:8] * 0, y[:8]), callbacks=[record, plateau])
    # val_loss of zero inputs is constant. Keras' counting: epochs 1, 2 fail -> halve after
    # epoch 2; epoch 3 ends the cooldown (and counts as the first failure after it), 4
    # fails -> halve after 4; likewise after 6 (0.0125, floored to min_lr 0.02) and 8
    assert lrs == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02]
    assert opt.lr == 0.02
    sched = nn.callbacks.LearningRateScheduler(lambda epoch, lr: 0.2 / (epoch + 1))
    seen = []
    record = LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(opt.lr))
    model.fit(X, y, epochs=3, batch_size=20, callbacks=[sched, record])
    assert seen == [0.2, 0.2, 0.1, 0.1, 0.2 / 3, 0.2 / 3]
    with pytest.raises(ValueError, match="returned -1, not a finite number > 0"):
        model.fit(X, y, callbacks=[nn.callbacks.LearningRateScheduler(lambda e, lr: -1)])


def test_csv_logger(tmp_path):
    X, y = blobs(n=40)
    path = tmp_path / "log.csv"
    model = MLP([3, 4, 3], seed=0)
    h = model.fit(X, y, loss="softmax_cross_entropy", epochs=2,
                  callbacks=[nn.callbacks.CSVLogger(path)])
    model.fit(X, y, epochs=1, callbacks=[nn.callbacks.CSVLogger(path, append=True)])
    rows = path.read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss" and len(rows) == 4
    assert rows[1] == f"0,{h['accuracy'][0]},{h['loss'][0]}"
    assert rows[3].startswith("0,")                    # the appended run, epochs from 0
