"""Ctrl-C during fit, in a child process: the first SIGINT stops fit within a fraction
of a second whatever the size of an epoch (the plan hands control back every 50 ms),
with the model consistent and history.interrupted set; a second raises KeyboardInterrupt.

The bound asserted is 1 s (the target is ~0.2 s; the slack is for a loaded CI machine):
before the plan returned on a deadline, an epoch of 1M rows took ~90 s to stop."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import nncore as nn

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 4)).astype(np.float32)
    y = rng.integers(0, 2, 1_000_000)
    model = nn.MLP([4, 256, 256, 2], seed=0)          # ~0.1 ms a step: ~3 s an epoch
    mode = sys.argv[1]

    class Slow(nn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print("epoch-end", flush=True)
            time.sleep(3)

    callbacks = [Slow()] if mode == "twice" else []
    print("ready", flush=True)
    try:
        history = model.fit(X, y, loss="softmax_cross_entropy", epochs=3, batch_size=32,
                            callbacks=callbacks)
    except KeyboardInterrupt:
        print("keyboard-interrupt", time.monotonic(), flush=True)
        sys.exit(0)
    finite = all(np.isfinite(p).all() for p in model.parameters())
    print("returned", time.monotonic(), history.interrupted, len(history.epoch),
          model.optimizer.t, finite, flush=True)
""")


def start(mode):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)                          # well inside the first epoch (31,250 steps)
    return proc


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child needs POSIX signals")
def test_ctrl_c_stops_fit_promptly_and_cleanly():
    proc = start("once")
    try:
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    word, returned, interrupted, epochs, steps, finite = out.split()
    assert word == "returned" and interrupted == "True" and finite == "True"
    # the partial epoch is logged; the optimizer counted the steps that ran
    assert epochs == "1" and 0 < int(steps) < 1_000_000 // 32
    assert float(returned) - sent < 1.0


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child needs POSIX signals")
def test_second_ctrl_c_raises_keyboard_interrupt():
    proc = start("twice")
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "epoch-end"     # the stop path runs
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    word, raised = out.split()
    assert word == "keyboard-interrupt" and float(raised) - sent < 1.0
